"""The whole ``sepzoo eval --estimates`` process against museval's own command on the same tracks.

A user who has estimates on disk pays for the whole process: starting Python, importing the
libraries, reading the WAV files, scoring and writing the results. This script writes two
synthetic 30-second tracks of four stereo sources in the MUSDB18-HQ layout (16-bit stems from
the toy set's synthesiser, the mixture their sum) and estimates of them (each stem plus white
noise, 16-bit), then runs, each in a fresh interpreter,

* ``sepzoo eval --estimates EST --root ROOT -o OUT`` (BSSEval v4, nSDR, SI-SDR, SD-SDR), and
* ``museval EST -o OUT --musdb ROOT --is-wav``, museval's command (musdb reads the tracks,
  ``museval.eval_mus_track`` scores each one: BSSEval v4 only),

and prints each process's wall time and peak resident memory, their ratio against the goal
(museval / sepzoo >= 5), and the largest difference between the two on each BSSEval metric.
Both processes get this process's environment, so the same thread settings; ``--threads N``
sets them for both. With ``--repeats N`` each side runs N times and the fastest run counts
(the others were slowed by other work on the machine, not by the program).

    .venv/bin/python benchmarks/eval_process_speed.py [--seconds 30] [--tracks 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bsseval_speed import METRICS, _largest_differences

GOAL = 5.0
"""museval's time over sepzoo's asked for, for the whole process."""

SOURCES = ("vocals", "drums", "bass", "other")
NOISE_DBFS = -40.0
"""Level of the white noise added to each stem to make its estimate."""


def write_tracks(root: Path, estimates: Path, seconds: float, count: int) -> None:
    """``root/test/<track>/{mixture,vocals,drums,bass,other}.wav`` and
    ``estimates/test/<track>/<source>.wav``, 16-bit stereo at 44.1 kHz (``root/train`` is empty)."""
    import numpy as np
    import soundfile as sf

    from sepzoo.data.toy import SAMPLE_RATE, synthesize_track, track_name

    (root / "train").mkdir(parents=True)
    for index in range(count):
        rng = np.random.default_rng([0, index])
        stems = synthesize_track(seconds, rng)  # int16 [T, 2] each
        name = track_name("test", index)
        for folder in (root, estimates):
            (folder / "test" / name).mkdir(parents=True)
        for source, stem in stems.items():
            sf.write(root / "test" / name / f"{source}.wav", stem, SAMPLE_RATE, subtype="PCM_16")
            noise = 32768 * 10 ** (NOISE_DBFS / 20) * rng.standard_normal(stem.shape)
            estimate = np.clip(np.round(stem + noise), -32768, 32767).astype(np.int16)
            sf.write(estimates / "test" / name / f"{source}.wav", estimate, SAMPLE_RATE, subtype="PCM_16")
        mixture = sum(stem.astype(np.int32) for stem in stems.values()).astype(np.int16)
        sf.write(root / "test" / name / "mixture.wav", mixture, SAMPLE_RATE, subtype="PCM_16")


def commands(root: Path, estimates: Path, out: Path) -> dict[str, list[str]]:
    """Each side's command line, writing its per-track JSON files under ``out/<side>``."""
    museval_cli = "import sys; from museval.cli import museval; museval(sys.argv[1:])"
    return {
        "museval": [
            sys.executable,
            "-c",
            museval_cli,
            str(estimates),
            "-o",
            str(out / "museval"),
            "--musdb",
            str(root),
            "--is-wav",
        ],
        "sepzoo": [
            sys.executable,
            "-m",
            "sepzoo.cli.main",
            "eval",
            "--estimates",
            str(estimates),
            "--root",
            str(root),
            "-o",
            str(out / "sepzoo"),
            "--force",
        ],
    }


def run_timed(command: list[str], log: Path, env: dict[str, str]) -> dict[str, float]:
    """Run a command to its end; its wall time and peak resident memory (of that process alone,
    as ``wait4`` reports it, where ``RUSAGE_CHILDREN`` would keep the largest of all children)."""
    with open(log, "w") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} ... exited with {process.returncode}; see {log}:\n{log.read_text()}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def frame_scores(folder: Path) -> dict[str, list[list[float]]]:
    """``{metric: [source][frame]}`` from the museval-format JSON files of one side, tracks in
    name order, sources in :data:`SOURCES` order."""
    scores: dict[str, list[list[float]]] = {metric: [] for metric in METRICS}
    for path in sorted(folder.glob("test/*.json")):
        targets = {target["name"]: target["frames"] for target in json.loads(path.read_text())["targets"]}
        for metric in METRICS:
            for source in SOURCES:
                scores[metric].append(
                    [
                        math.nan if f["metrics"][metric] is None else f["metrics"][metric]
                        for f in targets[source]
                    ]
                )
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each track (default: 30)")
    parser.add_argument("--tracks", type=int, default=2, help="number of tracks (default: 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side; the fastest counts")
    parser.add_argument("--threads", type=int, default=None, help="threads of both (default: as set)")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(args.threads)
    threads = f"{args.threads} thread(s)" if args.threads else "threads as set"
    print(f"{args.tracks} tracks of {args.seconds:g} s, 4 stereo sources, 44.1 kHz, 16-bit WAV; {threads}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        root, estimates, out = Path(folder) / "data", Path(folder) / "estimates", Path(folder) / "out"
        write_tracks(root, estimates, args.seconds, args.tracks)
        runs: dict[str, list[dict[str, float]]] = {"museval": [], "sepzoo": []}
        for _ in range(args.repeats):
            for side, command in commands(root, estimates, out).items():
                runs[side].append(run_timed(command, Path(folder) / f"{side}.log", env))
        differences = _largest_differences(frame_scores(out / "museval"), frame_scores(out / "sepzoo"))
    best = {side: min(measured, key=lambda run: run["seconds"]) for side, measured in runs.items()}
    for side, label in (("museval", "museval (its command)"), ("sepzoo", "sepzoo eval --estimates")):
        every = ", ".join(f"{run['seconds']:.1f}" for run in runs[side])
        seconds, peak = best[side]["seconds"], best[side]["peak_mb"]
        print(f"{label:>24}: {seconds:6.2f} s ({peak:.0f} MB peak); runs: {every} s")
    ratio = best["museval"]["seconds"] / best["sepzoo"]["seconds"]
    print(
        f"museval / sepzoo = {ratio:.1f}x (goal {GOAL:g}x: {'met' if ratio >= GOAL else 'MISSED'}); "
        f"largest differences (dB): {differences}"
    )
    # Other work on the machine slows both sides, a process whose threads outnumber the free
    # cores most: the load says whether the numbers are worth keeping.
    print(
        f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
