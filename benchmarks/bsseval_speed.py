"""BSSEval v4: sepzoo's :func:`~sepzoo.bsseval.bss_eval_v4` against ``museval.evaluate`` on the
same 4-source stereo tracks (16-bit synthetic stems with a noise floor, leaky noisy estimates).

Each measurement runs in its own subprocess with the same thread count; the script prints both
times, their ratio (goals: museval / sepzoo >= 10 on 3 minutes, >= 5 on 30 seconds), each
process's peak resident memory, and the largest SDR difference between the two.

    .venv/bin/python benchmarks/bsseval_speed.py [--seconds 30 180] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _tracks(seconds: float):
    import numpy as np

    rng = np.random.default_rng(0)
    length = int(seconds * 44100)
    references = 0.1 * rng.standard_normal((4, length, 2)) + 10 ** (-50 / 20) * rng.standard_normal(
        (4, length, 2)
    )
    references[:, :, 1] += 0.3 * references[:, :, 0]
    estimates = references + 0.05 * rng.standard_normal(references.shape) + 0.1 * references[[1, 2, 3, 0]]
    quantise = lambda x: np.round(np.clip(x, -1, 1) * 32767) / 32767  # noqa: E731
    return quantise(references), quantise(estimates)


def measure(side: str, seconds: float) -> dict:
    """Time one evaluation in this process; returns seconds, peak RSS and the SDRs."""
    references, estimates = _tracks(seconds)
    start = time.perf_counter()
    if side == "museval":
        import museval

        sdr = museval.evaluate(references, estimates)[0]
    else:
        import torch

        from sepzoo.bsseval import bss_eval_v4

        to_torch = lambda x: torch.from_numpy(x).permute(0, 2, 1)  # noqa: E731
        sdr = bss_eval_v4(to_torch(references), to_torch(estimates))["SDR"].numpy()
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": elapsed, "peak_mb": peak, "sdr": sdr.tolist()}


def _subprocess(side: str, seconds: float, threads: int) -> dict:
    env_threads = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    output = subprocess.run(
        [sys.executable, __file__, "--child", side, "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env_threads},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 180.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["museval", "sepzoo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.seconds[0])))
        return
    import numpy as np

    for seconds in args.seconds:
        peer = _subprocess("museval", seconds, args.threads)
        ours = _subprocess("sepzoo", seconds, args.threads)
        difference = float(np.nanmax(np.abs(np.array(peer["sdr"]) - np.array(ours["sdr"]))))
        print(
            f"{seconds:g} s, 4 stereo sources: museval {peer['seconds']:.1f} s ({peer['peak_mb']:.0f} MB), "
            f"sepzoo {ours['seconds']:.1f} s ({ours['peak_mb']:.0f} MB); "
            f"speed-up {peer['seconds'] / ours['seconds']:.1f}x; "
            f"largest SDR difference {difference:.2e} dB"
        )


if __name__ == "__main__":
    main()
