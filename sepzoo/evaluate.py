"""``sepzoo eval``: score a model on a data set's tracks, per track and per source.

Each track's mixture goes through the shared inference engine; the estimate and the
unprocessed mixture (the MIX baseline: the mixture used as every stem's estimate) are scored
with nSDR against the true stems. Results are written per track as JSON
(``OUT/<subset>/<track>.json``) and summarised in ``OUT/summary.json`` and ``OUT/table.txt``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from sepzoo import DEFAULT_SOURCES
from sepzoo.errors import DataError, OutputExistsError, SepzooError

TOY_MARKER = "README.txt"


def find_tracks(root: Path, subset: str, sources: list[str]) -> list[Any]:
    """The tracks of ``root/subset``: stem folders (MUSDB18-HQ, toy set) or MUSDB18 ``.stem.mp4`` files.

    Args:
        root: The data set root.
        subset: The subset folder (e.g. ``"test"``).
        sources: The stems needed.
    """
    from sepzoo.data.tracks import scan_stem_folder

    folder = root / subset
    if not root.is_dir():
        raise DataError(f"{root}: data set root does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder}: no '{subset}' subset folder in the data set root")
    if any(folder.glob("*.stem.mp4")):
        from sepzoo.data.musdb import MusdbDataModule

        module = MusdbDataModule(root=str(root), sources=sources, is_wav=False, subset_test=subset)
        return list(module.test_tracks())
    return scan_stem_folder(folder, sources)


def mixture_sources(model_sources: list[str]) -> list[str]:
    """The stems whose sum is the mixture a model is scored on.

    A model that estimates some of the four MUSDB sources (a one-target model) still hears the
    mixture of all four; any other model hears the sum of its own sources.

    Args:
        model_sources: The sources the model estimates.
    """
    if set(model_sources) < set(DEFAULT_SOURCES):
        return list(model_sources) + [s for s in DEFAULT_SOURCES if s not in model_sources]
    return list(model_sources)


def is_toy_dataset(root: Path) -> bool:
    """True for a data set written by ``sepzoo toy-musdb``.

    Args:
        root: The data set root.
    """
    marker = root / TOY_MARKER
    return marker.is_file() and "toy-musdb" in marker.read_text(errors="replace")


def evaluate(
    model_spec: str,
    root: str | Path,
    subset: str = "test",
    out: str | Path = "eval",
    max_tracks: int | None = None,
    shifts: int = 0,
    overlap: float = 0.25,
    segment: float | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    force: bool = False,
) -> dict[str, Any]:
    """Score a model on every track of ``root/subset``.

    Args:
        model_spec: A model file, training checkpoint, run directory or oracle name.
        root: The data set root.
        subset: The subset to score. (Default: ``"test"``)
        out: Output folder. (Default: ``"eval"``)
        max_tracks: Score only the first N tracks. (Default: all)
        shifts: Random test-time shifts. (Default: ``0``)
        overlap: Chunk overlap. (Default: ``0.25``)
        segment: Chunk length in seconds. (Default: the model's)
        batch_size: Chunks per forward pass. (Default: ``4``)
        device: ``"cpu"`` or ``"cuda"``. (Default: ``"cpu"``)
        force: Replace existing results in ``out``. (Default: ``False``)

    Returns:
        The summary: per-source mean nSDR of the model and of the mixture, and per-track values.
    """
    from tqdm import tqdm

    from sepzoo.checkpoint import load_separator
    from sepzoo.data.tracks import read_stems
    from sepzoo.inference import apply_model, resolve_device
    from sepzoo.metrics import nsdr

    device = str(resolve_device(device))
    root, out = Path(root), Path(out)
    results_dir = out / subset
    _prepare_out(out, results_dir, force)
    model = load_separator(model_spec).to(device).eval()
    all_sources = mixture_sources(list(model.sources))
    targets = [all_sources.index(s) for s in model.sources]
    tracks = find_tracks(root, subset, all_sources)[: max_tracks or None]
    per_track: dict[str, dict[str, Any]] = {}
    for track in tqdm(tracks, desc="eval", unit="track"):
        every_stem = read_stems(track, all_sources, 0, track.frames, model.sample_rate, model.audio_channels)
        mix = every_stem.sum(0)  # C, T
        stems = every_stem[targets]  # S, C, T
        estimate = apply_model(
            model,
            mix,
            references=stems if model.needs_references else None,
            segment=segment,
            overlap=overlap,
            shifts=shifts,
            batch_size=batch_size,
            device=device,
        )  # S, C, T
        scores = nsdr(estimate, stems)
        mixture_scores = nsdr(mix.unsqueeze(0).expand_as(stems), stems)
        record = {
            "track": track.name,
            "nSDR": {s: float(v) for s, v in zip(model.sources, scores)},
            "mixture_nSDR": {s: float(v) for s, v in zip(model.sources, mixture_scores)},
        }
        per_track[track.name] = record
        _write_json(results_dir / f"{_safe_name(track.name)}.json", record)
    summary = _summarise(per_track, list(model.sources), model_spec, root, subset)
    _write_json(out / "summary.json", summary)
    (out / "table.txt").write_text(format_track_table(summary) + "\n\n" + format_table(summary) + "\n")
    return summary


def _prepare_out(out: Path, results_dir: Path, force: bool) -> None:
    if (out / "summary.json").exists() or (results_dir.exists() and any(results_dir.iterdir())):
        if not force:
            raise OutputExistsError(f"{out}: already holds evaluation results; pass --force to replace them")
        shutil.rmtree(results_dir, ignore_errors=True)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepzooError(f"{results_dir}: cannot create output folder ({exc.strerror})") from None


def _summarise(
    per_track: dict[str, dict[str, Any]], sources: list[str], model_spec: str, root: Path, subset: str
) -> dict[str, Any]:
    def mean(key: str, source: str) -> float:
        values = [r[key][source] for r in per_track.values()]
        return float(sum(values) / len(values)) if values else math.nan

    return {
        "model": str(model_spec),
        "root": str(root),
        "subset": subset,
        "tracks": len(per_track),
        "metric": "nSDR (per-track 10 log10 |s|^2/|s - s_hat|^2, mean over tracks)",
        "toy": is_toy_dataset(root),
        "nSDR": {s: mean("nSDR", s) for s in sources},
        "mixture_nSDR": {s: mean("mixture_nSDR", s) for s in sources},
        "per_track": per_track,
    }


def format_track_table(summary: dict[str, Any]) -> str:
    """A per-track, per-source table of the model's nSDR, with the mixture's in parentheses.

    Args:
        summary: What :func:`evaluate` returned.
    """
    sources = list(summary["nSDR"])
    records = list(summary["per_track"].values())
    width = max([len("track"), *(len(r["track"]) for r in records)])
    lines = ["nSDR (dB) per track: model (mixture)"]
    lines.append(f"{'track':<{width}}" + "".join(f" {source:>16}" for source in sources))
    for record in records:
        cells = "".join(f" {record['nSDR'][s]:7.2f} ({record['mixture_nSDR'][s]:6.2f})" for s in sources)
        lines.append(f"{record['track']:<{width}}{cells}")
    return "\n".join(lines)


def format_table(summary: dict[str, Any]) -> str:
    """A per-source table of the model's mean nSDR beside the unprocessed mixture's.

    Args:
        summary: What :func:`evaluate` returned.
    """
    sources = list(summary["nSDR"])
    lines = [f"nSDR (dB), mean over {summary['tracks']} tracks of {summary['root']}/{summary['subset']}"]
    lines.append(f"{'source':<10} {'model':>8} {'mixture':>8} {'gain':>8}")
    for source in sources:
        model, mixture = summary["nSDR"][source], summary["mixture_nSDR"][source]
        lines.append(f"{source:<10} {model:8.2f} {mixture:8.2f} {model - mixture:+8.2f}")
    model_mean = sum(summary["nSDR"].values()) / len(sources)
    mixture_mean = sum(summary["mixture_nSDR"].values()) / len(sources)
    lines.append(f"{'mean':<10} {model_mean:8.2f} {mixture_mean:8.2f} {model_mean - mixture_mean:+8.2f}")
    if summary.get("toy"):
        lines.append("(synthetic toy data: a smoke test of the machinery, not evidence about any model)")
    return "\n".join(lines)


def _safe_name(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from sepzoo.rundir import write_json_atomic

    write_json_atomic(path, json.loads(json.dumps(data)))
