"""Separation speed of a BS-RoFormer converted from MSST: ``sepzoo separate`` against the reference
class run over the same chunks with Music-Source-Separation-Training's overlap-add.

The reference is audio-separator's MSST-format ``BSRoformer``, built from MSST's MUSDB18 config
(``configs/config_musdb18_bs_roformer.yaml``: width 192, depth 6, the paper's 62 bands, one
vocals stem, chunks of 131584 samples) with random weights, saved as an MSST checkpoint and
converted with sepzoo's own converter, so both sides run the same weights on the same chunk size.
The work is the same: MSST's ``num_overlap: 2`` (a hop of half a chunk) against sepzoo's
``--overlap 0.5``, one chunk per forward pass on both sides (MSST's ``inference.batch_size: 1``;
``--batch-size`` changes both).

The reference side follows MSST's ``utils/model_utils.py: demix`` for these models: the track is
padded by reflection with a border of ``chunk_size - hop`` at each end, cut into chunks every
``hop`` samples (the last padded by reflection, or with zeros when shorter than half a chunk), each
chunk weighted by a window with linear fades of a tenth of a chunk (none at the track's ends),
overlap-added, divided by the summed window and cut back. Each side runs in its own subprocess and
is timed from building its model to the stems on disk (reading the WAV, separating, writing float
WAV stems); imports are not timed. The sides alternate, each run ``--repeat`` times, and each side's
fastest run is kept. The script prints both times, the chunk counts and the ratio (goal <= 1.0,
aim 0.8).

    .venv/bin/python benchmarks/msst_separate_speed.py [--seconds 30] [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE_RATE = 44100
CHUNK_SIZE = 131584
PAPER_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
MODEL = {
    "dim": 192,
    "depth": 6,
    "stereo": True,
    "num_stems": 1,
    "time_transformer_depth": 1,
    "freq_transformer_depth": 1,
    "linear_transformer_depth": 0,
    "freqs_per_bands": PAPER_BANDS,
    "dim_head": 64,
    "heads": 8,
    "attn_dropout": 0.1,
    "ff_dropout": 0.1,
    "flash_attn": True,
    "dim_freqs_in": 1025,
    "stft_n_fft": 2048,
    "stft_hop_length": 512,
    "stft_win_length": 2048,
    "stft_normalized": False,
    "mask_estimator_depth": 2,
    "mlp_expansion_factor": 4,
}
"""The ``model`` section of MSST's ``config_musdb18_bs_roformer.yaml`` (its loss settings left out)."""


def prepare(folder: Path, batch_size: int) -> tuple[Path, Path, Path]:
    """An MSST checkpoint and config with random weights, and sepzoo's conversion of them."""
    import torch
    import yaml
    from audio_separator.separator.uvr_lib_v5.roformer.bs_roformer import BSRoformer

    from sepzoo.convert.msst import convert_checkpoint
    from sepzoo.models.files import save_model_file

    torch.manual_seed(0)
    reference = BSRoformer(**MODEL)
    checkpoint, config = folder / "model_bs_roformer.ckpt", folder / "config_bs_roformer.yaml"
    torch.save(reference.state_dict(), checkpoint)
    content = {
        "audio": {"chunk_size": CHUNK_SIZE, "num_channels": 2, "sample_rate": SAMPLE_RATE},
        "model": {**MODEL, "freqs_per_bands": list(PAPER_BANDS)},
        "training": {"instruments": ["vocals", "bass", "drums", "other"], "target_instrument": "vocals"},
        "inference": {"batch_size": batch_size, "num_overlap": 2},
    }
    config.write_text(yaml.safe_dump(content, sort_keys=False))
    model, provenance = convert_checkpoint(checkpoint, config, "bs_roformer")
    converted = save_model_file(model, folder / "bs_roformer.sepzoo", metadata=provenance, force=True)
    return checkpoint, config, converted


def write_track(path: Path, seconds: float) -> Path:
    """Quiet noise under three tones, stereo float WAV."""
    import numpy as np
    import soundfile as sf

    time_s = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tones = sum(0.1 * np.sin(2 * np.pi * f * time_s) for f in (110.0, 440.0, 1760.0))
    noise = 0.05 * np.random.default_rng(0).standard_normal((time_s.size, 2))
    sf.write(path, (noise + tones[:, None]).astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    return path


def fade_window(size: int, fade: int):  # noqa: ANN201
    """Ones with a linear fade-in over the first ``fade`` samples and a fade-out over the last."""
    import torch

    window = torch.ones(size)
    window[:fade] = torch.linspace(0, 1, fade)
    window[-fade:] = torch.linspace(1, 0, fade)
    return window


def msst_overlap_add(model, mix, chunk_size: int, num_overlap: int, batch_size: int):  # noqa: ANN001, ANN201
    """MSST's generic overlap-add of ``model`` over ``mix`` (``[C, T]``); the stems and the number
    of chunks."""
    import torch
    from torch.nn import functional as F

    fade = chunk_size // 10
    hop = chunk_size // num_overlap
    border = chunk_size - hop
    length = mix.shape[-1]
    padded = length > 2 * border and border > 0
    if padded:
        mix = F.pad(mix[None], (border, border), mode="reflect")[0]
    window = fade_window(chunk_size, fade)
    result = counter = None
    batch, places, chunks = [], [], 0
    start = 0
    while start < mix.shape[-1]:
        part = mix[:, start : start + chunk_size]
        size = part.shape[-1]
        mode = "reflect" if size > chunk_size // 2 else "constant"
        batch.append(F.pad(part[None], (0, chunk_size - size), mode=mode)[0])
        places.append((start, size))
        start += hop
        if len(batch) >= batch_size or start >= mix.shape[-1]:
            estimates = model(torch.stack(batch))  # N, [S,] C, chunk
            if estimates.dim() == 3:
                estimates = estimates[:, None]
            if result is None:
                result = torch.zeros(estimates.shape[1], *mix.shape)
                counter = torch.zeros_like(result)
            weights = window.clone()
            if start - hop == 0:
                weights[:fade] = 1
            elif start >= mix.shape[-1]:
                weights[-fade:] = 1
            for estimate, (offset, size) in zip(estimates, places):
                result[..., offset : offset + size] += estimate[..., :size] * weights[:size]
                counter[..., offset : offset + size] += weights[:size]
            chunks += len(batch)
            batch, places = [], []
    stems = torch.nan_to_num(result / counter)
    return (stems[..., border:-border] if padded else stems), chunks


def run_side(side: str, folder: Path, threads: int, batch_size: int) -> None:
    import torch

    torch.set_num_threads(threads)
    track = folder / "track.wav"
    out = folder / f"out-{side}"
    if side == "msst":
        import soundfile as sf
        from audio_separator.separator.uvr_lib_v5.roformer.bs_roformer import BSRoformer

        start = time.perf_counter()
        model = BSRoformer(**MODEL)
        model.load_state_dict(torch.load(folder / "model_bs_roformer.ckpt", map_location="cpu"))
        model.eval()
        audio, _ = sf.read(track, dtype="float32")
        with torch.inference_mode():
            stems, chunks = msst_overlap_add(
                model, torch.from_numpy(audio.T.copy()), CHUNK_SIZE, 2, batch_size
            )
        out.mkdir(exist_ok=True)
        sf.write(out / "vocals.wav", stems[0].numpy().T, SAMPLE_RATE, subtype="FLOAT")
        elapsed = time.perf_counter() - start
    else:
        from sepzoo.cli.main import main

        argv = ["-q", "separate", str(track), "-n", str(folder / "bs_roformer.sepzoo"), "-o", str(out),
                "--overlap", "0.5", "--shifts", "0", "-b", str(batch_size), "--float32",
                "--clip-mode", "none", "--force"]  # fmt: skip
        start = time.perf_counter()
        if main(argv) != 0:
            raise SystemExit("sepzoo separate failed")
        elapsed = time.perf_counter() - start
        from sepzoo.engine.chunks import plan_chunks

        chunks = len(plan_chunks(sf_frames(track), CHUNK_SIZE, 0.5))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb, "chunks": chunks}))


def sf_frames(path: Path) -> int:
    import soundfile as sf

    return sf.info(str(path)).frames


def measure(side: str, folder: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--side", side, "--folder", str(folder),
               "--threads", str(args.threads), "--batch-size", str(args.batch_size)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="stereo audio to separate (default: 30)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per side (default: 2)")
    parser.add_argument("--batch-size", type=int, default=1, help="chunks per forward pass (default: 1)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per side, the fastest kept (default: 2)")
    parser.add_argument("--side", choices=["msst", "sepzoo"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args.folder, args.threads, args.batch_size)
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        prepare(folder, args.batch_size)
        write_track(folder / "track.wav", args.seconds)
        runs = [(measure("msst", folder, args), measure("sepzoo", folder, args)) for _ in range(args.repeat)]
    theirs, ours = (min((run[i] for run in runs), key=lambda r: r["seconds"]) for i in range(2))
    print(
        f"BS-RoFormer (MSST's MUSDB18 config, random weights), {args.seconds:g} s of stereo 44.1 kHz audio, "
        f"CPU, {args.threads} threads, chunks of {CHUNK_SIZE} samples, batch {args.batch_size}"
    )
    print(
        f"  MSST overlap-add (num_overlap 2): {theirs['seconds']:7.1f} s, {theirs['chunks']} chunks, "
        f"peak RSS {theirs['peak_mb']:.0f} MB"
    )
    print(
        f"  sepzoo separate (--overlap 0.5):  {ours['seconds']:7.1f} s, {ours['chunks']} chunks, "
        f"peak RSS {ours['peak_mb']:.0f} MB"
    )
    print(f"  ratio sepzoo / MSST: {ours['seconds'] / theirs['seconds']:.2f} (goal <= 1.0, aim 0.8)")


if __name__ == "__main__":
    main()
