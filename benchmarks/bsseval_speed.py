"""BSSEval v4: sepzoo's :func:`~sepzoo.evaluation.bsseval.bss_eval_v4` against ``museval.evaluate`` on the
same 4-source stereo tracks (16-bit synthetic stems with a noise floor, leaky noisy estimates).

The tracks are written once to ``.npy`` files; each measurement then runs in its own
subprocess with the same thread count, which loads them (so that its peak resident memory is
that of the evaluation, not of making the data) and times one evaluation, each
implementation taking the stems in its own layout: museval ``[S, T, C]`` arrays, sepzoo
``[S, C, T]`` tensors. The script prints both times, their ratio against the goals
(museval / sepzoo >= 5 on 30 seconds, >= 10 on 3 minutes), each process's peak resident
memory (the float64 stems alone take 1 GB on 3 minutes), and the largest difference between
the two on each metric.

One thread per process by default: on a machine whose cores other work also uses, more
threads than free cores made both sides several times slower, and by amounts that changed
from run to run; ``--threads 2`` measures them with two.

    .venv/bin/python benchmarks/bsseval_speed.py [--seconds 30 180] [--threads 1]
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

METRICS = ("SDR", "ISR", "SIR", "SAR")
GOALS = {30.0: 5.0, 180.0: 10.0}
"""Speed-up over museval asked for on a track of so many seconds."""


def write_tracks(seconds: float, folder: Path) -> None:
    """References and estimates ``[S, T, C]`` (museval's layout) as ``.npy`` files."""
    import numpy as np

    rng = np.random.default_rng(0)
    length = int(seconds * 44100)
    references = 0.1 * rng.standard_normal((4, length, 2)) + 10 ** (-50 / 20) * rng.standard_normal(
        (4, length, 2)
    )
    references[:, :, 1] += 0.3 * references[:, :, 0]
    estimates = references + 0.05 * rng.standard_normal(references.shape) + 0.1 * references[[1, 2, 3, 0]]
    quantise = lambda x: np.round(np.clip(x, -1, 1) * 32767) / 32767  # noqa: E731
    np.save(folder / "references.npy", quantise(references))
    np.save(folder / "estimates.npy", quantise(estimates))


def measure(side: str, folder: Path) -> dict:
    """Time one evaluation in this process; returns seconds, peak RSS and the scores."""
    import numpy as np

    references, estimates = np.load(folder / "references.npy"), np.load(folder / "estimates.npy")
    if side == "museval":
        import museval

        start = time.perf_counter()
        scores = dict(zip(METRICS, museval.evaluate(references, estimates)))
        elapsed = time.perf_counter() - start
    else:
        import torch

        from sepzoo.evaluation.bsseval import bss_eval_v4

        # One at a time, so that only one of the stems is held in both layouts at once.
        references = torch.from_numpy(references).permute(0, 2, 1).contiguous()
        estimates = torch.from_numpy(estimates).permute(0, 2, 1).contiguous()
        start = time.perf_counter()
        scores = bss_eval_v4(references, estimates)
        elapsed = time.perf_counter() - start
        scores = {name: value.numpy() for name, value in scores.items()}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": elapsed, "peak_mb": peak, "scores": {name: scores[name].tolist() for name in METRICS}}


def _subprocess(side: str, folder: Path, threads: int) -> dict:
    env_threads = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    output = subprocess.run(
        [sys.executable, __file__, "--child", side, "--folder", str(folder)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env_threads},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _largest_differences(first: dict, second: dict) -> str:
    import numpy as np

    parts = []
    for name in METRICS:
        difference = np.abs(np.array(first[name], dtype=float) - np.array(second[name], dtype=float))
        parts.append(f"{name} {np.nanmax(difference):.1e}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 180.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["museval", "sepzoo"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.folder)))
        return

    print(f"4 stereo sources, 44.1 kHz, {args.threads} thread(s) per process")
    for seconds in args.seconds:
        with tempfile.TemporaryDirectory() as folder:
            write_tracks(seconds, Path(folder))
            peer = _subprocess("museval", Path(folder), args.threads)
            ours = _subprocess("sepzoo", Path(folder), args.threads)
        ratio = peer["seconds"] / ours["seconds"]
        goal = GOALS.get(seconds)
        verdict = f" (goal {goal:g}x: {'met' if ratio >= goal else 'MISSED'})" if goal else ""
        print(
            f"{seconds:g} s: museval {peer['seconds']:.1f} s ({peer['peak_mb']:.0f} MB peak), "
            f"sepzoo {ours['seconds']:.2f} s ({ours['peak_mb']:.0f} MB peak); "
            f"museval / sepzoo = {ratio:.1f}x{verdict}; "
            f"largest differences (dB): {_largest_differences(peer['scores'], ours['scores'])}"
        )


if __name__ == "__main__":
    main()
