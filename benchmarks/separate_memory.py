"""Peak memory of ``sepzoo separate`` against the track's length: streaming keeps it flat.

Writes stereo 44.1 kHz test tracks (quiet noise under a few tones) of each length asked for
(60 s and 600 s by default) to a temporary folder, written block by block, and a model file
with random weights at the model's default settings (sepzoo's own model-file writer). Then
each measurement runs in its own subprocess, which reports its peak resident memory
(``ru_maxrss``) and wall time: ``sepzoo separate`` on each track (through its command-line
entry point, so with the transparent huge pages it asks torch for), and with ``--demucs`` also
``demucs.apply.apply_model`` on the same track with the same weights (the official model,
converted for sepzoo's side), reading the file whole and writing 16-bit stems as
``demucs.separate`` does. It prints each figure and the ratio of the longest track's peak to
the shortest's (goal: at most 1.1 for sepzoo).

    .venv/bin/python benchmarks/separate_memory.py [--seconds 60 600] [--model hdemucs] [--demucs]
        [--model-kwargs '{"dim": 32, "depth": 1}']
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = (
    "demucs",
    "hdemucs",
    "htdemucs",
    "conv_tasnet",
    "bs_roformer",
    "mel_band_roformer",
    "mdx23c",
    "scnet",
)
SAMPLE_RATE = 44100


def write_track(path: Path, seconds: float, block_seconds: float = 10.0) -> Path:
    """Quiet noise plus three tones, written in blocks so this process stays small too."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    frames = int(seconds * SAMPLE_RATE)
    block = int(block_seconds * SAMPLE_RATE)
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, 2, "PCM_16") as out:
        for start in range(0, frames, block):
            count = min(block, frames - start)
            time_s = (start + np.arange(count)) / SAMPLE_RATE
            tones = sum(0.1 * np.sin(2 * np.pi * f * time_s) for f in (110.0, 440.0, 1760.0))
            noise = 0.05 * rng.standard_normal((count, 2))
            out.write((noise + tones[:, None]).astype(np.float32))
    return path


def prepare_models(
    name: str, folder: Path, with_demucs: bool, kwargs: dict | None = None
) -> tuple[Path, Path | None]:
    """A sepzoo model file (and the official package it was converted from, with ``--demucs``)."""
    if with_demucs:
        sys.path.insert(0, str(Path(__file__).parent))
        from demucs_family_speed import prepare

        package, converted = prepare(name, folder)
        return converted, package
    import torch

    from sepzoo.models import create_model
    from sepzoo.models.files import save_model_file

    torch.manual_seed(0)
    return save_model_file(create_model(name, **(kwargs or {})), folder / f"{name}.sepzoo", force=True), None


def run_sepzoo(model: str, track: str, out: str, batch_size: int) -> dict:
    """``sepzoo separate`` itself (its threads come from ``OMP_NUM_THREADS``)."""
    from sepzoo.cli.main import main

    start = time.perf_counter()
    if main(["separate", track, "-n", model, "-o", out, "-b", str(batch_size), "--force"]) != 0:
        raise SystemExit("sepzoo separate failed")
    return {"seconds": time.perf_counter() - start}


def run_demucs(package: str, track: str, out: str, threads: int) -> dict:
    import soundfile as sf
    import torch
    from demucs.apply import apply_model
    from demucs.audio import save_audio
    from demucs.states import load_model

    torch.set_num_threads(threads)
    model = load_model(package).eval()
    start = time.perf_counter()
    data, _ = sf.read(track, dtype="float32", always_2d=True)
    wav = torch.from_numpy(data.T.copy())
    reference = wav.mean(0)
    mean, std = reference.mean(), reference.std() + 1e-8
    stems = apply_model(model, ((wav - mean) / std)[None], shifts=0, split=True, overlap=0.25)[0]
    stems = stems * std + mean
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, stem in zip(model.sources, stems):
        save_audio(stem, str(folder / f"{name}.wav"), samplerate=model.samplerate)
    return {"seconds": time.perf_counter() - start}


def measure(args: argparse.Namespace, side: str, model: Path, track: Path, out: Path) -> dict:
    command = [sys.executable, __file__, "--side", side, "--path", str(model), "--track", str(track),
               "--out", str(out), "--batch-size", str(args.batch_size),
               "--threads", str(args.threads)]  # fmt: skip
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{side} run on {track.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", nargs="+", type=float, default=[60.0, 600.0], help="track lengths")
    parser.add_argument(
        "--model", choices=MODELS, default="hdemucs", help="model, random weights (default: hdemucs)"
    )
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help="JSON init arguments overriding the model's defaults, e.g. a narrower network that keeps "
        'its segment and STFT: \'{"dim": 32, "depth": 1}\' (default: {})',
    )
    parser.add_argument("--demucs", action="store_true", help="also measure demucs's apply_model")
    parser.add_argument(
        "--batch-size", type=int, default=1, help="sepzoo chunks per forward pass (default: 1)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--side", choices=["sepzoo", "demucs"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--track", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        if args.side == "sepzoo":
            result = run_sepzoo(args.path, args.track, args.out, args.batch_size)
        else:
            result = run_demucs(args.path, args.track, args.out, args.threads)
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    lengths = sorted(args.seconds)
    if args.demucs and args.model == "conv_tasnet":
        raise SystemExit("--demucs compares the Demucs family only: choose demucs, hdemucs or htdemucs")
    if args.demucs and args.model_kwargs:
        raise SystemExit("--demucs converts the official model at its defaults; drop --model-kwargs")
    print(
        f"{args.model} {json.dumps(args.model_kwargs) if args.model_kwargs else ''}, random weights; "
        f"stereo 44.1 kHz; CPU, {args.threads} threads; sepzoo batch size {args.batch_size}"
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model, package = prepare_models(args.model, root, args.demucs, args.model_kwargs)
        sides = [("sepzoo", model)] + ([("demucs", package)] if package is not None else [])
        peaks: dict[str, list[float]] = {side: [] for side, _ in sides}
        for seconds in lengths:
            track = write_track(root / f"track_{seconds:g}s.wav", seconds)
            for side, path in sides:
                assert path is not None
                result = measure(args, side, path, track, root / f"out_{side}_{seconds:g}")
                peaks[side].append(result["peak_mb"])
                print(
                    f"  {side:6s} {seconds:6g} s of audio: peak RSS {result['peak_mb']:7.0f} MB, "
                    f"{result['seconds']:7.1f} s"
                )
            track.unlink()
        for side, values in peaks.items():
            if len(values) > 1:
                goal = " (goal <= 1.1)" if side == "sepzoo" else ""
                print(
                    f"  {side}: peak RSS at {lengths[-1]:g} s / at {lengths[0]:g} s = "
                    f"{values[-1]:.0f} / {values[0]:.0f} MB = {values[-1] / values[0]:.3f}{goal}"
                )


if __name__ == "__main__":
    main()
