"""Separation speed and memory of the Demucs family: sepzoo's engine and models against
``demucs.apply.apply_model`` with the official models, the same weights, segment and overlap.

For each model, an official instance with random weights at its default settings is saved as
an official package and converted to a sepzoo model file; then each side separates the same
stereo signal (30 s by default) in its own subprocess, on the CPU, and reports its wall time
and peak resident memory; the sides alternate, twice by default, and each side's fastest run is
kept. The sides are ``demucs.apply.apply_model`` on the signal in memory, sepzoo's
``apply_model`` on the same tensor, and sepzoo's streamed separation (what ``sepzoo separate``
runs, :func:`sepzoo.engine.separate.separate_file`) from a float WAV file of the signal to 16-bit
stems on disk, reading, writing and the rescale pass included, so the last
ratio is the stricter one. The streamed side runs twice: with torch's default CPU allocator,
like the other sides, and with transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``), as
``sepzoo separate`` runs it. The script prints, per model, the times, the ratios to demucs (goal
<= 1.0, aim 0.8) and the peak memories. sepzoo runs one chunk at a time, as demucs does
(``--batch-size``).

    .venv/bin/python benchmarks/demucs_family_speed.py [--seconds 30] [--models demucs hdemucs htdemucs]
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

OFFICIAL = {
    "demucs": ("demucs.demucs", "Demucs"),
    "hdemucs": ("demucs.hdemucs", "HDemucs"),
    "htdemucs": ("demucs.htdemucs", "HTDemucs"),
}
SOURCES = ["drums", "bass", "other", "vocals"]


def prepare(name: str, folder: Path) -> tuple[Path, Path]:
    """Write an official package with random weights and its sepzoo conversion."""
    import importlib

    import torch
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    from sepzoo.convert.demucs import convert_file
    from sepzoo.models.files import save_model_file

    module, klass = OFFICIAL[name]
    torch.manual_seed(0)
    official = getattr(importlib.import_module(module), klass)(SOURCES)
    package = folder / f"{name}.th"
    torch.save(serialize_model(official, OmegaConf.create({}), half=False), package)
    converted = save_model_file(convert_file(package), folder / f"{name}.sepzoo", force=True)
    return package, converted


def signal(seconds: float) -> torch.Tensor:
    """The stereo test signal, ``[1, 2, T]``: the same for every side."""
    import torch

    return torch.randn(1, 2, int(seconds * 44100), generator=torch.Generator().manual_seed(1)) * 0.1


def run_side(
    side: str,
    path: str,
    seconds: float,
    segment: float | None,
    overlap: float,
    threads: int,
    batch_size: int = 1,
) -> None:
    import torch

    torch.set_num_threads(threads)
    mix = signal(seconds)
    if side == "stream":
        import soundfile as sf

        from sepzoo.engine.separate import separate_file
        from sepzoo.models.files import load_separator

        model = load_separator(path).eval()
        with tempfile.TemporaryDirectory() as folder:
            track = Path(folder) / "track.wav"
            sf.write(track, mix[0].numpy().T, 44100, subtype="FLOAT")
            start = time.perf_counter()
            separate_file(model, track, Path(folder), segment=segment, overlap=overlap, batch_size=batch_size)
            elapsed = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb}))
        return
    if side == "demucs":
        from demucs.apply import apply_model
        from demucs.states import load_model

        model = load_model(path).eval()
        start = time.perf_counter()
        apply_model(model, mix, shifts=0, split=True, overlap=overlap, segment=segment, progress=False)
    else:
        from sepzoo.engine.apply import apply_model
        from sepzoo.models.files import load_separator

        model = load_separator(path).eval()
        start = time.perf_counter()
        apply_model(model, mix, segment=segment, overlap=overlap, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb}))


def measure(side: str, path: Path, args: argparse.Namespace, huge_pages: bool = False) -> dict:
    """Run one side in its own subprocess; ``huge_pages`` sets ``THP_MEM_ALLOC_ENABLE`` to 1
    (as ``sepzoo separate`` does), else to 0."""
    command = [sys.executable, __file__, "--side", side, "--path", str(path), "--seconds", str(args.seconds),
               "--overlap", str(args.overlap), "--threads", str(args.threads),
               "--batch-size", str(args.batch_size)]  # fmt: skip
    if args.segment is not None:
        command += ["--segment", str(args.segment)]
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1" if huge_pages else "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{side} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(OFFICIAL), choices=list(OFFICIAL))
    parser.add_argument("--seconds", type=float, default=30.0, help="stereo audio to separate (default: 30)")
    parser.add_argument("--segment", type=float, default=None, help="chunk length (default: each model's)")
    parser.add_argument("--overlap", type=float, default=0.25, help="chunk overlap (default: 0.25)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per side (default: 2)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="chunks per forward pass on sepzoo's side (default: 1, as demucs)",
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per side, the fastest kept (default: 2)")
    parser.add_argument("--side", choices=["demucs", "sepzoo", "stream"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_side(
            args.side, args.path, args.seconds, args.segment, args.overlap, args.threads, args.batch_size
        )
        return
    from sepzoo.models import MODELS

    print(
        f"{args.seconds:g} s of stereo 44.1 kHz audio, CPU, {args.threads} threads, overlap {args.overlap}, "
        f"sepzoo batch size {args.batch_size}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            if name not in MODELS:
                print(f"  {name}: not registered in this sepzoo; skipped")
                continue
            package, converted = prepare(name, Path(folder))
            # Alternated and repeated, keeping each side's fastest run: the machine's speed drifts.
            runs = [
                (
                    measure("demucs", package, args),
                    measure("sepzoo", converted, args),
                    measure("stream", converted, args),
                    measure("stream", converted, args, huge_pages=True),
                )
                for _ in range(args.repeat)
            ]
            theirs, ours, streamed, huge = (
                min((run[i] for run in runs), key=lambda r: r["seconds"]) for i in range(4)
            )
            print(
                f"  {name:9s} demucs {theirs['seconds']:7.1f} s  sepzoo {ours['seconds']:7.1f} s  "
                f"ratio {ours['seconds'] / theirs['seconds']:.2f} (goal <= 1.0)   "
                f"peak RSS demucs {theirs['peak_mb']:6.0f} MB  sepzoo {ours['peak_mb']:6.0f} MB  "
                f"ratio {ours['peak_mb'] / theirs['peak_mb']:.2f}"
            )
            for label, result in [("streamed file to stems", streamed), ("  same, huge pages", huge)]:
                print(
                    f"  {'':9s} {label:22s} {result['seconds']:7.1f} s  "
                    f"ratio {result['seconds'] / theirs['seconds']:.2f} (goal <= 1.0)   "
                    f"peak RSS {result['peak_mb']:6.0f} MB  ratio {result['peak_mb'] / theirs['peak_mb']:.2f}"
                )


if __name__ == "__main__":
    main()
