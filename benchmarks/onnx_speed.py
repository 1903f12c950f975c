"""onnxruntime against torch on the CPU: separation time and peak memory per architecture, the
cost of test-time augmentation, and what int8 quantisation saves in time and costs in nSDR.

Every measurement runs in its own subprocess, which reports its wall time and its peak resident
memory (``ru_maxrss``); torch runs with ``torch.set_num_threads(--threads)`` and onnxruntime with
as many intra-op threads (``load_exported(threads=...)``), both with ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` set to the same count. Loading a model (torch: reading the model file;
onnxruntime: checking the digests and starting the session) and reading the track are not timed;
loading is reported in its own column.

1. Speed (runs unless only ``--tta`` or ``--quantized`` is given; ``--speed`` adds it back).
   Per architecture (default: every trainable registered one), a model with random weights
   (``torch.manual_seed(0)``) at ``--size``: ``toy`` (default) is the model section of its toy
   recipe (``recipes/toy/<name>.yaml``, or that of the architecture it is a variant of, as in
   ``train_speed.py``: ``demucs_v2`` takes ``demucs.yaml``); ``default`` is the class's own
   defaults. ``--model-kwargs '{"bsrnn": {"feature_size": 32}}'`` overrides arguments per
   model. The model file is exported to fp32 ONNX (``export_onnx``, parity-checked) and a
   stereo 44.1 kHz track of ``--seconds`` (quiet noise under three tones) is separated by
   ``apply_model`` on the torch model and by ``load_exported(...).separate`` in a process that
   never imports torch (it checks), with the same overlap (0.25) and batch size. It prints per
   architecture the seconds of each, onnxruntime / torch (goal: at most 0.8), the peak RSS of
   each, and the largest absolute difference between the two outputs (a sanity check: chunks
   that end the track differ a little, as the runtime widens them with zeros to the graph's
   fixed length). An architecture without an export path is listed as such. The peaks include
   the interpreter and its libraries (torch alone is several hundred MB). The toy size is the
   default because it keeps the whole run well within 15 minutes on 2 cores (all eleven with
   2 s tracks: under a minute, exports included; 20 s tracks multiply the separation times by
   about ten); ``--size default`` takes far longer (the default RoFormers, MDX23C and HT Demucs
   are tens to hundreds of times larger) and is meant for a few chosen ``--models``.
2. ``--tta``: ``apply_model`` on the track with ``--tta-model`` (toy size, random weights)
   without augmentation, with ``tta=("flip", "polarity")`` (four passes), with ``shifts=2`` and
   with both (eight passes); prints each time and its ratio to the plain run, next to the
   number of passes (the expected ratio). ``tta`` is passed to ``apply_model`` only when
   augmenting (``apply_model(..., tta=("flip", "polarity"))``); a sepzoo whose engine lacks the
   argument shows those rows as failed.
3. ``--quantized RUN_OR_MODEL... --root DATA``: each trained model (a run directory, model file
   or checkpoint) is exported in fp32 and in int8 (``quantize="int8"``, onnxruntime's dynamic
   quantisation). Prints the graph sizes, the onnxruntime time of separating every mixture of
   ``DATA/<subset>`` with each (and the int8 speed-up), and ``evaluate`` of both exports on that
   subset: per source the median nSDR over tracks of fp32 and int8, their difference, and the
   median of the per-track differences (int8 - fp32, in dB).

    .venv/bin/python benchmarks/onnx_speed.py [--models conv_tasnet bsrnn] [--size toy|default]
        [--model-kwargs '{"bsrnn": {"feature_size": 32}}'] [--seconds 20] [--batch-size 4]
        [--threads 2] [--speed] [--tta] [--tta-model htdemucs]
        [--quantized runs/bench/conv_tasnet-7b00314d ... --root data/toy-musdb [--subset test]]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLE_RATE = 44100
OVERLAP = 0.25
TTA_RUNS = (((), 0), (("flip", "polarity"), 0), ((), 2), (("flip", "polarity"), 2))
"""The ``(tta, shifts)`` settings ``--tta`` times, the plain run first."""

sys.path.insert(0, str(Path(__file__).resolve().parent))


# ----------------------------------------------------------------------------------------------
# Workers: one measurement each, in a subprocess that prints one JSON line


def peak_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` where ``/proc`` has it, which starts
    afresh at ``exec``, else ``ru_maxrss`` (which Linux keeps across ``exec``, so that a worker
    would report its parent's peak when that was higher)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_track(path: str) -> Any:
    """A track as float32 ``[C, T]`` (NumPy; soundfile only)."""
    import numpy as np
    import soundfile as sf

    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T)


def torch_worker(args: argparse.Namespace) -> dict[str, Any]:
    """``apply_model`` on the torch model: load time, separation time, the stems saved to ``--out``."""
    import numpy as np
    import torch

    from sepzoo.engine.apply import apply_model
    from sepzoo.models.files import load_separator

    torch.set_num_threads(args.threads)
    mix = torch.from_numpy(_read_track(args.track))
    start = time.perf_counter()
    model = load_separator(args.path).eval()
    load = time.perf_counter() - start
    options: dict[str, Any] = {"shifts": args.shifts}
    if args.tta_names:  # passed only when asked, so the plain run needs no ``tta`` argument
        options["tta"] = tuple(args.tta_names.split(","))
    start = time.perf_counter()
    try:
        stems = apply_model(model, mix, overlap=OVERLAP, batch_size=args.batch_size, **options)
    except TypeError as exc:
        if "tta" not in str(exc):
            raise
        raise SystemExit("apply_model has no tta argument in this sepzoo") from None
    seconds = time.perf_counter() - start
    if args.out:
        np.save(args.out, stems.numpy())
    return {"load_s": load, "seconds": seconds}


def ort_worker(args: argparse.Namespace) -> dict[str, Any]:
    """``load_exported(...).separate`` on every track given, without torch: load time, total
    separation time, the stems of the first track saved to ``--out``."""
    import numpy as np

    from sepzoo.deploy.runtime import load_exported

    mixes = [_read_track(track) for track in args.track.split(os.pathsep)]
    start = time.perf_counter()
    model = load_exported(args.path, providers=["CPUExecutionProvider"], threads=args.threads)
    load = time.perf_counter() - start
    start = time.perf_counter()
    stems = [model.separate(mix, overlap=OVERLAP, batch_size=args.batch_size) for mix in mixes]
    seconds = time.perf_counter() - start
    if "torch" in sys.modules:
        raise SystemExit("the onnxruntime side imported torch; sepzoo.deploy must stay torch-free")
    if args.out:
        np.save(args.out, stems[0])
    return {"load_s": load, "seconds": seconds}


def run_worker(args: argparse.Namespace, side: str, path: Path, tracks: list[Path], out: Path | None = None,
               shifts: int = 0, tta: tuple[str, ...] = ()) -> dict[str, Any] | str:  # fmt: skip
    """One measurement in a fresh subprocess: its JSON result with ``peak_mb``, or why it failed.

    Args:
        args: The command line (threads, batch size, timeout).
        side: ``"torch"`` or ``"ort"``.
        path: A model file (torch) or an exported folder (ort).
        tracks: The track(s) to separate (torch takes one).
        out: Where the worker saves the stems of the first track. (Default: not saved)
        shifts: Random shifts (torch). (Default: ``0``)
        tta: Test-time augmentations (torch). (Default: none)
    """
    command = [
        sys.executable, __file__, "--worker", side, "--path", str(path),
        "--track", os.pathsep.join(str(track) for track in tracks), "--out", str(out or ""),
        "--batch-size", str(args.batch_size), "--threads", str(args.threads),
        "--shifts", str(shifts), "--tta-names", ",".join(tta),
    ]  # fmt: skip
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return f"over {args.timeout} s"
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return f"failed: {(lines or [str(done.returncode)])[-1][:150]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Models and tracks (in the parent process)


def write_track(path: Path, seconds: float) -> Path:
    """A stereo 44.1 kHz 16-bit track: quiet noise under three tones (as separate_memory.py)."""
    from separate_memory import write_track as write

    return write(path, seconds)


def model_kwargs(name: str, size: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The init arguments of ``name`` at ``size`` (``toy``: its toy recipe's model section, else
    the class's defaults), with ``overrides`` on top.

    Args:
        name: A registered model name.
        size: ``"toy"`` or ``"default"``.
        overrides: Arguments that replace the size's.
    """
    from train_speed import recipe_for, toy_recipes

    from sepzoo.training.recipe import load_recipe

    kwargs: dict[str, Any] = {}
    recipe = recipe_for(name, toy_recipes()) if size == "toy" else None
    if recipe is not None:
        kwargs = dict(load_recipe(recipe, [f"model.name={name}"]).model.kwargs)
    return {**kwargs, **overrides}


def random_model(name: str, kwargs: dict[str, Any], folder: Path) -> Path:
    """A model file of ``name`` with random weights (seed 0).

    Args:
        name: A registered model name.
        kwargs: Its init arguments.
        folder: Where to write ``<name>.sepzoo``.
    """
    import torch

    from sepzoo.models import create_model
    from sepzoo.models.files import save_model_file

    torch.manual_seed(0)
    return save_model_file(create_model(name, **kwargs), folder / f"{name}.sepzoo", force=True)


def export(spec: Path | str, out: Path, quantize: str | None = None) -> tuple[dict[str, Any] | str, float]:
    """Export ``spec`` to ``out``: its manifest (or why there is none) and the seconds it took.

    Args:
        spec: A model file, checkpoint or run directory.
        out: The folder to write.
        quantize: ``"int8"`` or ``None`` (fp32). (Default: ``None``)
    """
    from sepzoo.errors import SepzooError
    from sepzoo.export.onnx import export_onnx

    start = time.perf_counter()
    try:
        manifest = export_onnx(spec, out, quantize=quantize, force=True)
    except SepzooError as exc:
        return str(exc).split(": ", 1)[-1], time.perf_counter() - start
    return manifest, time.perf_counter() - start


def full_chunks(length: int, chunk: int) -> int:
    """Samples at the start of a track of ``length`` that only whole chunks of ``chunk`` cover
    (with the benchmark's overlap): there the torch engine and the runtime see the same input,
    while a chunk cut short by the track's end is widened with zeros by the runtime (its graph's
    length is fixed) but by less, or not at all, by the torch engine.

    Args:
        length: The track's samples.
        chunk: Samples per chunk.
    """
    from sepzoo.deploy.plan import plan_chunks

    short = [offset for offset in plan_chunks(length, chunk, OVERLAP) if offset + chunk > length]
    return short[0] if short else length


def graph_mb(folder: Path, manifest: dict[str, Any]) -> float:
    """Megabytes of the graph files an exported folder lists."""
    return sum((folder / name).stat().st_size for name in manifest["files"]) / 1e6


def _fmt(value: Any, spec: str = ".2f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def print_rows(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A left-aligned first column and right-aligned others, under a title line."""
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print(title)
    for line in lines:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        print("  " + "  ".join(cells))


# ----------------------------------------------------------------------------------------------
# The three parts


def part_speed(args: argparse.Namespace, root: Path, track: Path) -> None:
    """onnxruntime against torch per architecture (part 1)."""
    import numpy as np

    from sepzoo.deploy.plan import seconds_to_samples

    rows = []
    for name in args.models:
        kwargs = model_kwargs(name, args.size, args.model_kwargs.get(name, {}))
        model = random_model(name, kwargs, root)
        manifest, export_s = export(model, root / f"{name}.onnx")
        if isinstance(manifest, str):
            rows.append([name, "-", f"{export_s:.1f}", *["-"] * 9, f"not exported: {manifest[:80]}"])
            print(f"  {name}: not exported ({manifest})", file=sys.stderr, flush=True)
            continue
        outs = {side: root / f"{name}.{side}.npy" for side in ("torch", "ort")}
        torch_result = run_worker(args, "torch", model, [track], outs["torch"])
        ort_result = run_worker(args, "ort", root / f"{name}.onnx", [track], outs["ort"])
        results = {"torch": torch_result, "ort": ort_result}
        failed = "; ".join(f"{side}: {r}" for side, r in results.items() if isinstance(r, str))
        if failed:
            rows.append([name, f"{graph_mb(root / f'{name}.onnx', manifest):.1f}", f"{export_s:.1f}",
                         *["-"] * 9, failed[:120]])  # fmt: skip
            print(f"  {name}: {failed}", file=sys.stderr, flush=True)
            continue
        assert isinstance(torch_result, dict) and isinstance(ort_result, dict)
        ours, theirs = np.load(outs["torch"]), np.load(outs["ort"])
        scale = float(np.abs(ours).max()) or 1.0
        whole = float(np.abs(ours - theirs).max()) / scale
        full = full_chunks(ours.shape[-1], seconds_to_samples(manifest["segment"], SAMPLE_RATE) or 1)
        inside = float(np.abs(ours - theirs)[..., :full].max()) / scale if full else None
        rows.append([
            name,
            f"{graph_mb(root / f'{name}.onnx', manifest):.1f}",
            f"{export_s:.1f}",
            f"{torch_result['load_s']:.2f}",
            f"{ort_result['load_s']:.2f}",
            f"{torch_result['seconds']:.2f}",
            f"{ort_result['seconds']:.2f}",
            f"{ort_result['seconds'] / torch_result['seconds']:.2f}",
            f"{torch_result['peak_mb']:.0f}",
            f"{ort_result['peak_mb']:.0f}",
            _fmt(inside, ".1e"),
            f"{whole:.1e}",
            "",
        ])  # fmt: skip
        print(f"  measured {name}: {rows[-1]}", file=sys.stderr, flush=True)
    header = ["architecture", "graph MB", "export s", "load torch s", "load ort s", "torch s", "ort s",
              "ort/torch", "torch peak MB", "ort peak MB", "diff whole chunks", "diff all",
              "note"]  # fmt: skip
    print_rows(
        f"separation of a {args.seconds:g} s stereo track, CPU, {args.threads} threads, batch size "
        f"{args.batch_size}, overlap {OVERLAP}, {args.size} size, random weights; times exclude loading; "
        "ort/torch goal <= 0.8; diff: max |torch - ort| / max |torch| where only whole chunks cover the "
        "track, and over all of it",
        header,
        rows,
    )


def part_tta(args: argparse.Namespace, root: Path, track: Path) -> None:
    """The cost of test-time augmentation and shifts against a plain run (part 2)."""
    name = args.tta_model
    model = random_model(name, model_kwargs(name, args.size, args.model_kwargs.get(name, {})), root)
    rows, base = [], None
    for tta, shifts in TTA_RUNS:
        result = run_worker(args, "torch", model, [track], shifts=shifts, tta=tta)
        passes = 2 ** len(tta) * max(1, shifts)
        label = f"tta={','.join(tta) or 'none'} shifts={shifts}"
        if isinstance(result, str):
            rows.append([label, str(passes), "-", "-", "-", result])
            continue
        base = base if base is not None else result["seconds"]
        ratio = result["seconds"] / base
        rows.append(
            [label, str(passes), f"{result['seconds']:.2f}", f"{ratio:.2f}", f"{result['peak_mb']:.0f}", ""]
        )
        print(f"  measured {label}: {rows[-1]}", file=sys.stderr, flush=True)
    print_rows(
        f"test-time augmentation, {name} ({args.size} size), torch, {args.seconds:g} s track, CPU, "
        f"{args.threads} threads, batch size {args.batch_size}; ratio to the plain run (expected: passes)",
        ["setting", "passes", "seconds", "ratio", "peak MB", "note"],
        rows,
    )


def _per_track_nsdr(summary: dict[str, Any], source: str) -> dict[str, float]:
    return {track: row["nSDR"][source] for track, row in summary["per_track"].items()}


def part_quantized(args: argparse.Namespace, root: Path) -> None:
    """fp32 against int8 exports of trained models: size, onnxruntime time and nSDR (part 3)."""
    import soundfile as sf

    from sepzoo.evaluation.evaluate import evaluate

    tracks = sorted(
        path / "mixture.wav" for path in (Path(args.root) / args.subset).iterdir() if path.is_dir()
    )
    tracks = tracks[: args.max_tracks or None]
    if not tracks:
        raise SystemExit(f"{args.root}/{args.subset}: no track folders")
    seconds = sum(sf.info(str(track)).duration for track in tracks)
    speed_rows, quality_rows = [], []
    for spec in args.quantized:
        label = Path(spec).name
        runs: dict[str, dict[str, Any]] = {}
        for mode in ("fp32", "int8"):
            folder = root / f"{label}.{mode}"
            manifest, export_s = export(spec, folder, None if mode == "fp32" else mode)
            if isinstance(manifest, str):
                raise SystemExit(f"{spec}: {mode} export failed: {manifest}")
            timed = run_worker(args, "ort", folder, tracks)
            if isinstance(timed, str):
                raise SystemExit(f"{spec}: {mode} onnxruntime run failed: {timed}")
            print(f"  {label} {mode}: exported in {export_s:.1f} s, {timed}", file=sys.stderr, flush=True)
            summary = evaluate(
                str(folder), args.root, args.subset, root / f"eval.{label}.{mode}",
                max_tracks=args.max_tracks, overlap=OVERLAP, batch_size=args.batch_size, progress=False,
            )  # fmt: skip
            worst = max(manifest["parity"]["relative_l2"].values())
            runs[mode] = {"size": graph_mb(folder, manifest), "time": timed, "summary": summary, "rel": worst}
        fp32, int8 = runs["fp32"], runs["int8"]
        speed_rows.append([
            label,
            f"{fp32['size']:.2f}",
            f"{int8['size']:.2f}",
            f"{fp32['time']['seconds']:.2f}",
            f"{int8['time']['seconds']:.2f}",
            f"{fp32['time']['seconds'] / int8['time']['seconds']:.2f}",
            f"{fp32['time']['peak_mb']:.0f}",
            f"{int8['time']['peak_mb']:.0f}",
            f"{int8['rel']:.1e}",
        ])  # fmt: skip
        for source in fp32["summary"]["sources"]:
            before = _per_track_nsdr(fp32["summary"], source)
            after = _per_track_nsdr(int8["summary"], source)
            median_before, median_after = (
                statistics.median(before.values()),
                statistics.median(after.values()),
            )
            paired = statistics.median(after[track] - before[track] for track in before)
            quality_rows.append([
                f"{label} {source}",
                f"{median_before:.3f}",
                f"{median_after:.3f}",
                f"{median_after - median_before:+.3f}",
                f"{paired:+.3f}",
            ])  # fmt: skip
    print_rows(
        f"int8 against fp32 exports, onnxruntime on the CPU, {args.threads} threads, batch size "
        f"{args.batch_size}: {len(tracks)} tracks of {args.root}/{args.subset} ({seconds:.0f} s of audio); "
        "speed-up = fp32 s / int8 s; rel. L2 = int8 against torch at export (worst stem)",
        ["model", "fp32 MB", "int8 MB", "fp32 s", "int8 s", "speed-up", "fp32 peak MB", "int8 peak MB",
         "int8 rel. L2"],
        speed_rows,
    )  # fmt: skip
    print_rows(
        f"nSDR (dB) on {args.root}/{args.subset}, {len(tracks)} tracks: median over tracks, "
        "and the median of the per-track differences int8 - fp32",
        ["model source", "fp32 median", "int8 median", "change", "median paired change"],
        quality_rows,
    )


# ----------------------------------------------------------------------------------------------


def trainable_architectures() -> list[str]:
    """Registered models with trainable parameters (every domain but the oracles)."""
    from train_speed import trainable_architectures as found

    return found()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", help="registered names (default: every trainable one)")
    parser.add_argument(
        "--size", choices=["toy", "default"], default="toy", help="random models' size (default: toy)"
    )
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help="JSON {model: {argument: value}} overriding the size's arguments, e.g. '{\"bsrnn\": "
        '{"feature_size": 32}}\' (default: {})',
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="test track length (default: 20)")
    parser.add_argument("--batch-size", type=int, default=4, help="chunks per forward pass (default: 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads per process (default: 2)")
    parser.add_argument("--speed", action="store_true", help="part 1 (default: on unless --tta/--quantized)")
    parser.add_argument("--tta", action="store_true", help="part 2: the cost of test-time augmentation")
    parser.add_argument("--tta-model", default="htdemucs", help="part 2's architecture (default: htdemucs)")
    parser.add_argument("--quantized", nargs="+", metavar="RUN_OR_MODEL", help="part 3: trained models")
    parser.add_argument("--root", help="part 3's data set (MUSDB18 layout)")
    parser.add_argument("--subset", default="test", help="part 3's subset (default: test)")
    parser.add_argument("--max-tracks", type=int, help="part 3: only the first N tracks (default: all)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per measurement (default: 1800)")
    parser.add_argument("--worker", choices=["torch", "ort"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--track", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--shifts", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tta-names", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = torch_worker(args) if args.worker == "torch" else ort_worker(args)
        print(json.dumps({**result, "peak_mb": peak_mb()}))
        return
    if args.quantized and not args.root:
        parser.error("--quantized needs --root DATA")
    if not isinstance(args.model_kwargs, dict) or not all(
        isinstance(v, dict) for v in args.model_kwargs.values()
    ):
        parser.error("--model-kwargs: expected a JSON object {model: {argument: value}}")
    import torch

    torch.set_num_threads(args.threads)  # the exports' parity checks
    known = trainable_architectures()
    args.models = args.models or known
    unknown = [name for name in [*args.models, args.tta_model, *args.model_kwargs] if name not in known]
    if unknown:
        parser.error(f"not trainable registered models: {', '.join(unknown)} (known: {', '.join(known)})")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if args.speed or args.tta or not args.quantized:
            track = write_track(root / "track.wav", args.seconds)
        if args.speed or not (args.tta or args.quantized):
            part_speed(args, root, track)
        if args.tta:
            part_tta(args, root, track)
        if args.quantized:
            part_quantized(args, root)


if __name__ == "__main__":
    main()
