"""``sepzoo report``: one self-contained HTML file from comparisons or evaluations.

The report opens in a browser from disk, with no server and no network: the style sheet is
inline, the figures are PNG ``data:`` images drawn by matplotlib's Agg renderer, and the audio
excerpts are Ogg Opus ``data:`` URLs encoded by ffmpeg. A Content-Security-Policy forbids
anything else, so a reference to an outside resource shows up as an error instead of a silent
download.

Inputs are comparison folders (``sepzoo compare``: ``comparison.json``) or evaluation folders
(``sepzoo eval -o``: ``summary.json``). One comparison folder is shown as it is. Anything else
is merged into one comparison over the tracks and sources common to all inputs, and its
intervals and paired tests are computed afresh with :func:`sepzoo.evaluation.stats.compare_systems`.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sepzoo.errors import OutputExistsError, SepzooError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMAT = "sepzoo-comparison/1"
"""The ``format`` of a ``comparison.json`` this module reads."""

METRICS = ("cSDR", "nSDR")
EXCERPT_SECONDS = 8.0
"""Length of the excerpt cut from an evaluation's saved estimates."""
OPUS_BITRATE = "80k"
ENCODE_BATCH = 16
"""Clips encoded by one ffmpeg process."""
DOMAIN_COLOURS = {
    "waveform": "#1f77b4",
    "spectrogram": "#ff7f0e",
    "hybrid": "#2ca02c",
    "oracle": "#7f7f7f",
}
OTHER_COLOUR = "#9467bd"
PANEL_MARKERS = ("o", "s", "^")


@dataclass(frozen=True)
class Clip:
    """A stretch of an audio file to play in the report.

    Args:
        path: The audio file.
        start: Where the stretch starts, in seconds. (Default: ``0.0``)
        seconds: Its length; ``None`` for the rest of the file. (Default: ``None``)
    """

    path: Path
    start: float = 0.0
    seconds: float | None = None


@dataclass
class Excerpt:
    """The audio excerpt: one stretch of one test track, as heard by every system.

    Args:
        track: The track's name.
        start: Start of the stretch in the track, in seconds.
        seconds: Its length, in seconds.
        mixture: The mixture, or ``None``.
        reference: The true stems by source.
        systems: Each system's estimated stems, by label and source.
    """

    track: str
    start: float
    seconds: float
    mixture: Clip | None = None
    reference: dict[str, Clip] = field(default_factory=dict)
    systems: dict[str, dict[str, Clip]] = field(default_factory=dict)


@dataclass
class _Input:
    """One folder given to the report, read into the comparison schema."""

    folder: Path
    comparison: dict[str, Any]
    is_comparison: bool
    excerpt: Excerpt | None = None
    mixture_per_track: dict[str, dict[str, float]] | None = None  # source -> track -> nSDR
    estimates: dict[str, Path] = field(default_factory=dict)  # label -> folder of estimated tracks
    data_folder: Path | None = None  # the data set's subset folder, for references


# ---------------------------------------------------------------------------------------------
# The entry point


def write_report(dirs: Sequence[str | Path], out: str | Path, force: bool = False) -> Path:
    """Write the HTML report of comparison or evaluation folders.

    Args:
        dirs: Comparison folders (``comparison.json``) or ``sepzoo eval`` folders (``summary.json``).
        out: The HTML file to write.
        force: Replace an existing file. (Default: ``False``)

    Returns:
        The path written.
    """
    if not dirs:
        raise SepzooError("report: give at least one comparison or evaluation folder")
    out = _prepare_output(Path(out), force)
    comparison, excerpt = load_comparison(dirs)
    page = render_report(comparison, excerpt)
    _write_atomic(out, page)
    return out


def _prepare_output(path: Path, force: bool) -> Path:
    """The rule of :func:`sepzoo.io.audio.prepare_output`, checked before any work and without
    importing torch for it; the folder is made only when the page is written."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists; pass --force to overwrite it")
    if path.is_dir():
        raise SepzooError(f"{path}: is a folder; expected the HTML file to write")
    existing = next(parent for parent in path.absolute().parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise SepzooError(f"{existing}: the output folder cannot be written")
    return path


def load_comparison(dirs: Sequence[str | Path]) -> tuple[dict[str, Any], Excerpt | None]:
    """Read comparison or evaluation folders into one comparison.

    Args:
        dirs: The folders.

    Returns:
        The comparison in the ``comparison.json`` schema, and its audio excerpt (or ``None``).
    """
    inputs = [_read_input(Path(d)) for d in dirs]
    if len(inputs) == 1 and inputs[0].is_comparison:
        return inputs[0].comparison, inputs[0].excerpt
    _relabel(inputs)
    return _merge(inputs)


# ---------------------------------------------------------------------------------------------
# Reading the inputs


def _read_input(folder: Path) -> _Input:
    if not folder.is_dir():
        raise SepzooError(f"{folder}: no such folder; expected a comparison or evaluation folder")
    for name, read, writer in (
        ("comparison.json", _comparison_input, "sepzoo compare"),
        ("summary.json", _eval_input, "sepzoo eval"),
    ):
        if (folder / name).is_file():
            try:
                return read(folder)
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise SepzooError(
                    f"{folder / name}: not laid out as {writer} writes it ({type(exc).__name__}: {exc})"
                ) from None
    raise SepzooError(
        f"{folder}: neither comparison.json (sepzoo compare) nor summary.json (sepzoo eval) is there"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SepzooError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SepzooError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise SepzooError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise SepzooError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _require(data: dict[str, Any], keys: Sequence[str], path: Path, where: str = "") -> None:
    for key in keys:
        if key not in data:
            raise SepzooError(f"{path}: {where}{key!r} is missing")


def _comparison_input(folder: Path) -> _Input:
    path = folder / "comparison.json"
    data = _read_json(path)
    if data.get("format") != FORMAT:
        raise SepzooError(f"{path}: format {data.get('format')!r}; expected {FORMAT!r} (sepzoo compare)")
    _require(data, ("name", "sources", "dataset", "systems"), path)
    _require(data["dataset"], ("tracks",), path, "dataset.")
    tracks = data["dataset"]["tracks"]
    for index, system in enumerate(data["systems"]):
        _check_system(system, data["sources"], len(tracks), path, f"systems[{index}].")
    excerpt = _comparison_excerpt(folder, data.get("excerpt"), path)
    return _Input(folder, data, True, excerpt=excerpt)


def _check_system(system: dict[str, Any], sources: list[str], tracks: int, path: Path, where: str) -> None:
    _require(system, ("label", "domain", "kind", "per_track", "summary"), path, where)
    for metric in METRICS:
        for source in sources:
            values = system["per_track"].get(metric, {}).get(source)
            if values is None or len(values) != tracks:
                count = "none" if values is None else len(values)
                raise SepzooError(
                    f"{path}: {where}per_track.{metric}.{source}: expected {tracks} scores, got {count}"
                )


def _comparison_excerpt(folder: Path, excerpt: dict[str, Any] | None, path: Path) -> Excerpt | None:
    if not excerpt:
        return None
    _require(excerpt, ("track", "mixture", "reference", "systems"), path, "excerpt.")

    def clip(relative: str) -> Clip:
        file = folder / relative
        if not file.is_file():
            raise SepzooError(f"{path}: excerpt file {file} is missing; expected a WAV file there")
        return Clip(file)

    return Excerpt(
        track=str(excerpt["track"]),
        start=_number(excerpt.get("start")),
        seconds=_number(excerpt.get("seconds")),
        mixture=clip(excerpt["mixture"]) if excerpt["mixture"] else None,
        reference={source: clip(rel) for source, rel in excerpt["reference"].items()},
        systems={
            label: {source: clip(rel) for source, rel in stems.items()}
            for label, stems in excerpt["systems"].items()
        },
    )


def _eval_input(folder: Path) -> _Input:
    path = folder / "summary.json"
    summary = _read_json(path)
    again = "; written by an older sepzoo eval? run it again"
    for key in ("sources", "per_track", "model"):
        if key not in summary:
            raise SepzooError(f"{path}: {key!r} is missing{again}")
    sources = list(summary["sources"])
    tracks = list(summary["per_track"])
    for track, row in summary["per_track"].items():
        for key in ("SDR", "nSDR"):
            missing = [s for s in sources if s not in row.get(key, {})]
            if missing:
                raise SepzooError(
                    f"{path}: per_track[{track!r}].{key}: no score for {', '.join(missing)}{again}"
                )
    system = _eval_system(folder.resolve().name, folder, summary, tracks)
    comparison = {
        "format": FORMAT,
        "name": folder.resolve().name,
        "command": _eval_command(folder, summary),
        "toy": bool(summary.get("toy")),
        "dataset": {"root": summary.get("root"), "subset": summary.get("subset"), "tracks": tracks},
        "sources": sources,
        "systems": [system],
    }
    mixture = {
        source: {
            t: _number(row.get("mixture_nSDR", {}).get(source)) for t, row in summary["per_track"].items()
        }
        for source in sources
    }
    estimates = folder / "estimates" / str(summary.get("subset", "test"))
    data_folder = Path(summary["root"]) / str(summary.get("subset", "test")) if summary.get("root") else None
    return _Input(
        folder,
        comparison,
        False,
        mixture_per_track=mixture,
        estimates={system["label"]: estimates} if estimates.is_dir() else {},
        data_folder=data_folder,
    )


def _eval_system(label: str, folder: Path, summary: dict[str, Any], tracks: list[str]) -> dict[str, Any]:
    model = summary.get("model")
    domain, name, config = _model_identity(model, folder)
    rows = summary["per_track"]
    return {
        "label": label,
        "model": name or model or summary.get("estimates"),
        "domain": domain,
        "kind": "oracle" if domain == "oracle" else "trained",
        "recipe": None,
        "parameters": None,
        "config": config,
        "runs": [{"seed": None, "run_dir": None, "eval_dir": str(folder), "steps": None}],
        "per_track": {
            "cSDR": {s: [rows[t]["SDR"][s] for t in tracks] for s in summary["sources"]},
            "nSDR": {s: [rows[t]["nSDR"][s] for t in tracks] for s in summary["sources"]},
        },
        "per_seed": {},
    }


def _eval_command(folder: Path, summary: dict[str, Any]) -> str:
    what = f"-n {summary['model']}" if summary.get("model") else f"--estimates {summary.get('estimates')}"
    return f"sepzoo eval {what} --root {summary.get('root')} --subset {summary.get('subset')} -o {folder}"


def _model_identity(model: str | None, folder: Path) -> tuple[str, str | None, dict[str, Any] | None]:
    """The domain, registry name and training config of the model an evaluation scored."""
    from sepzoo.models import MODELS

    if not model:
        return "unknown", None, None
    if model in MODELS:
        return MODELS.get(model).domain, model, None
    run_dir = _run_dir_of(Path(model), folder)
    if run_dir is None:
        return "unknown", None, None
    config = _read_run_config(run_dir / "config.yaml")
    name = (config.get("model") or {}).get("name") if isinstance(config, dict) else None
    domain = MODELS.get(name).domain if isinstance(name, str) and name in MODELS else "unknown"
    return domain, name, config


def _run_dir_of(model: Path, eval_folder: Path) -> Path | None:
    """The training run directory behind a model spec (a run directory or one of its checkpoints)."""
    candidates = [model, model.parent.parent] if model.suffix == ".ckpt" else [model]
    if eval_folder.resolve().parent.name == model.name:
        candidates.append(eval_folder.resolve().parent)  # the eval folder inside the run directory
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def _read_run_config(path: Path) -> dict[str, Any] | None:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # the scores are still worth reporting without the recipe
    return config if isinstance(config, dict) else None


# ---------------------------------------------------------------------------------------------
# Merging several inputs


def _relabel(inputs: list[_Input]) -> None:
    """Make labels unique: a label used more than once is prefixed with its folder's name."""
    counts: dict[str, int] = {}
    for item in inputs:
        for system in item.comparison["systems"]:
            counts[system["label"]] = counts.get(system["label"], 0) + 1
    taken: set[str] = set()
    for item in inputs:
        prefix = item.folder.resolve().name if item.is_comparison else item.folder.resolve().parent.name
        renamed = {}
        for system in item.comparison["systems"]:
            old = system["label"]
            new = f"{prefix}/{old}" if counts[old] > 1 else old
            new = _unique(new, taken)
            renamed[old] = system["label"] = new
        if item.excerpt is not None:
            item.excerpt.systems = {renamed.get(k, k): v for k, v in item.excerpt.systems.items()}
        item.estimates = {renamed.get(k, k): v for k, v in item.estimates.items()}


def _unique(label: str, taken: set[str]) -> str:
    candidate, index = label, 2
    while candidate in taken:
        candidate, index = f"{label}-{index}", index + 1
    taken.add(candidate)
    return candidate


def _merge(inputs: list[_Input]) -> tuple[dict[str, Any], Excerpt | None]:
    from sepzoo import __version__
    from sepzoo.evaluation.stats import compare_systems

    tracks = _common(item.comparison["dataset"]["tracks"] for item in inputs)
    sources = _common(item.comparison["sources"] for item in inputs)
    names = ", ".join(str(item.folder) for item in inputs)
    if not tracks:
        raise SepzooError(f"report: {names}: no test track is common to all of them")
    if not sources:
        raise SepzooError(f"report: {names}: no source is common to all of them")
    first = next((item.comparison for item in inputs if item.is_comparison), {})
    confidence, alpha = float(first.get("confidence", 0.95)), float(first.get("alpha", 0.05))
    systems = [
        _restrict(system, item, tracks, sources) for item in inputs for system in item.comparison["systems"]
    ]
    statistics = compare_systems(systems, sources, confidence=confidence, alpha=alpha)
    comparison = {
        "format": FORMAT,
        "name": ", ".join(str(item.comparison["name"]) for item in inputs),
        "commands": [item.comparison.get("command") for item in inputs if item.comparison.get("command")],
        "date": datetime.date.today().isoformat(),
        "sepzoo_version": __version__,
        "toy": any(item.comparison.get("toy") for item in inputs),
        "dataset": {
            "root": _joined(item.comparison["dataset"].get("root") for item in inputs),
            "tracks": tracks,
        },
        "sources": sources,
        "budget": _same(item.comparison.get("budget") for item in inputs if item.is_comparison),
        "seeds": sorted({s for item in inputs for s in item.comparison.get("seeds") or []}),
        "confidence": confidence,
        "alpha": alpha,
        "metrics": first.get("metrics"),
        "systems": systems,
        "mixture": {"nSDR": _merged_mixture(inputs, tracks, sources)},
        **statistics,
    }
    return comparison, _merged_excerpt(inputs, tracks, sources)


def _common(lists: Any) -> list[str]:
    lists = [list(values) for values in lists]
    kept = set(lists[0]).intersection(*lists[1:])
    return [value for value in lists[0] if value in kept]


def _joined(values: Any) -> str | None:
    kept = list(dict.fromkeys(str(v) for v in values if v))
    return ", ".join(kept) if kept else None


def _same(values: Any) -> Any:
    kept = list(values)
    return kept[0] if kept and all(v == kept[0] for v in kept) else None


def _restrict(system: dict[str, Any], item: _Input, tracks: list[str], sources: list[str]) -> dict[str, Any]:
    """A copy of a system holding the given tracks and sources only, ready for the statistics."""
    own = item.comparison["dataset"]["tracks"]
    position = {track: index for index, track in enumerate(own)}
    per_track = {
        metric: {s: [system["per_track"][metric][s][position[t]] for t in tracks] for s in sources}
        for metric in METRICS
    }
    same_tracks = list(own) == list(tracks)
    kept = {key: value for key, value in system.items() if key not in ("per_track", "per_seed", "summary")}
    return {**kept, "per_track": per_track, "per_seed": system.get("per_seed", {}) if same_tracks else {}}


def _merged_mixture(inputs: list[_Input], tracks: list[str], sources: list[str]) -> dict[str, float | None]:
    """The mixture's nSDR over the common tracks, from per-track scores or an input on those tracks."""
    for item in inputs:
        if item.mixture_per_track is not None:
            return {s: _finite_mean([item.mixture_per_track[s].get(t) for t in tracks]) for s in sources}
    for item in inputs:
        if list(item.comparison["dataset"]["tracks"]) == list(tracks):
            values = (item.comparison.get("mixture") or {}).get("nSDR") or {}
            return {s: values.get(s) for s in sources}
    return {s: None for s in sources}


def _finite_mean(values: Sequence[Any]) -> float | None:
    kept = [v for v in (_number(x) for x in values) if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def _merged_excerpt(inputs: list[_Input], tracks: list[str], sources: list[str]) -> Excerpt | None:
    """One excerpt for all inputs: a comparison's, or the start of the first common track."""
    base = next((item.excerpt for item in inputs if item.excerpt and item.excerpt.track in tracks), None)
    if base is None:
        base = _data_excerpt(inputs, tracks[0], sources)
    if base is None:
        return None
    systems: dict[str, dict[str, Clip]] = {}
    for item in inputs:
        if item.excerpt is not None and _same_stretch(item.excerpt, base):
            systems.update(item.excerpt.systems)
        for label, folder in item.estimates.items():
            stems = _estimate_clips(folder, base, sources)
            if stems:
                systems[label] = stems
    reference = {s: clip for s, clip in base.reference.items() if s in sources}
    excerpt = Excerpt(base.track, base.start, base.seconds, base.mixture, reference, systems)
    return excerpt if excerpt.mixture or excerpt.reference or excerpt.systems else None


def _same_stretch(first: Excerpt, second: Excerpt) -> bool:
    return (first.track, first.start, first.seconds) == (second.track, second.start, second.seconds)


def _data_excerpt(inputs: list[_Input], track: str, sources: list[str]) -> Excerpt | None:
    """The mixture and references of a track, read from the data set an evaluation scored."""
    for item in inputs:
        if item.data_folder is None or not item.estimates:
            continue
        folder = item.data_folder / track
        files = {name: folder / f"{name}.wav" for name in ["mixture", *sources]}
        found = {name: file for name, file in files.items() if file.is_file()}
        if found:
            seconds = min(EXCERPT_SECONDS, _duration(next(iter(found.values()))))
            clips = {name: Clip(file, 0.0, seconds) for name, file in found.items()}
            mixture = clips.pop("mixture", None)
            return Excerpt(track, 0.0, seconds, mixture, clips)
    return None


def _duration(path: Path) -> float:
    import soundfile

    try:
        return float(soundfile.info(str(path)).duration)
    except (RuntimeError, OSError) as exc:
        raise SepzooError(f"{path}: not a readable audio file ({exc})") from None


def _estimate_clips(folder: Path, excerpt: Excerpt, sources: list[str]) -> dict[str, Clip]:
    track_folder = folder / excerpt.track.replace("/", "_").replace("\\", "_")
    start = excerpt.start if math.isfinite(excerpt.start) else 0.0
    seconds = excerpt.seconds if math.isfinite(excerpt.seconds) else None
    clips = {s: Clip(track_folder / f"{s}.wav", start, seconds) for s in sources}
    return {s: clip for s, clip in clips.items() if clip.path.is_file()}


# ---------------------------------------------------------------------------------------------
# Numbers


def _number(value: Any) -> float:
    """A score as a float: ``None`` (JSON's NaN) and anything non-numeric become NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _fmt(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "–"


def _fmt_p(value: Any) -> str:
    number = _number(value)
    if not math.isfinite(number):
        return "n/a"
    return "< 0.001" if number < 0.001 else f"{number:.3f}"


def _fmt_interval(low: Any, high: Any) -> str:
    low, high = _number(low), _number(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"[{low:.2f}, {high:.2f}]"


def _fmt_parameters(value: Any) -> str:
    number = _number(value)
    if not math.isfinite(number):
        return "–"
    return f"{number / 1e6:.2f} M" if number >= 1e5 else f"{int(number):,}"


def _fmt_steps(runs: list[dict[str, Any]] | None) -> str:
    steps = sorted({int(r["steps"]) for r in runs or [] if isinstance(r.get("steps"), int)})
    if not steps:
        return "–"
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"


def _fmt_budget(budget: Any) -> str:
    if not isinstance(budget, dict) or not budget:
        return "n/a"
    if "minutes" in budget:
        return f"{_number(budget['minutes']):g} min of training per run"
    if "steps" in budget:
        return f"{budget['steps']} steps per run"
    return ", ".join(f"{k} {v}" for k, v in budget.items())


# ---------------------------------------------------------------------------------------------
# Figures


def comparison_figures(comparison: dict[str, Any]) -> dict[str, Figure]:
    """The report's figures of a comparison, for the report itself and for a W&B summary run.

    Figures are built with :class:`matplotlib.figure.Figure` on the Agg canvas, outside pyplot,
    so they need no display and leave no global state behind.

    Args:
        comparison: A comparison in the ``comparison.json`` schema.

    Returns:
        By name: ``bars/<source>`` (each system's cSDR and nSDR with their intervals, coloured by
        domain), ``domain_panel`` (the waveform-vs-spectrogram differences, when the comparison
        has trained systems of both) and ``scatter/<source>`` (per-track nSDR of the best
        waveform system against the best spectrogram system, when both domains are present).
    """
    figures = {f"bars/{source}": _bar_figure(comparison, source) for source in comparison["sources"]}
    if comparison.get("domain_panel"):
        figures["domain_panel"] = _panel_figure(comparison)
    for source in comparison["sources"]:
        best = [best_system(comparison, domain, source) for domain in ("waveform", "spectrogram")]
        if best[0] is not None and best[1] is not None:
            figures[f"scatter/{source}"] = _scatter_figure(source, best[0], best[1])
    return figures


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _colour(domain: str) -> str:
    return DOMAIN_COLOURS.get(domain, OTHER_COLOUR)


def _bar_figure(comparison: dict[str, Any], source: str) -> Figure:
    systems = comparison["systems"]
    figure = _new_figure(max(5.4, 1.6 + 0.8 * len(systems)), 3.6)
    axes = figure.subplots(1, len(METRICS), squeeze=False)[0]
    confidence = _number(comparison.get("confidence", 0.95))
    for ax, metric in zip(axes, METRICS):
        entries = [(s.get("summary") or {}).get(metric, {}).get(source) or {} for s in systems]
        estimates = [_number(e.get("estimate")) for e in entries]
        below = [max(0.0, v - _number(e.get("low"))) for v, e in zip(estimates, entries)]
        above = [max(0.0, _number(e.get("high")) - v) for v, e in zip(estimates, entries)]
        positions = list(range(len(systems)))
        colours = [_colour(s["domain"]) for s in systems]
        ax.bar(positions, estimates, color=colours, yerr=[below, above], capsize=4, ecolor="#333333")
        ax.set_xticks(positions, [s["label"] for s in systems], rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="#999999", linewidth=0.8)
        if metric == "nSDR":
            _mixture_line(ax, comparison, source)
        ax.set_title(f"{source}: {metric} (dB), {confidence:.0%} CI", fontsize=10)
    _domain_legend(figure, systems)
    return figure


def _mixture_line(ax: Any, comparison: dict[str, Any], source: str) -> None:
    value = _number(((comparison.get("mixture") or {}).get("nSDR") or {}).get(source))
    if math.isfinite(value):
        ax.axhline(value, color="#444444", linestyle="--", linewidth=1, label="mixture")
        ax.legend(fontsize=8, loc="lower right")


def _domain_legend(figure: Figure, systems: list[dict[str, Any]]) -> None:
    from matplotlib.patches import Patch

    domains = list(dict.fromkeys(s["domain"] for s in systems))
    handles = [Patch(color=_colour(d), label=d) for d in domains]
    figure.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=8, frameon=False)


def _panel_figure(comparison: dict[str, Any]) -> Figure:
    sources = comparison["sources"]
    figure = _new_figure(max(6.0, 1.5 * len(sources) * len(METRICS)), 3.6)
    axes = figure.subplots(1, len(METRICS), squeeze=False)[0]
    panel = comparison["domain_panel"]
    pairs = list(dict.fromkeys((t["a"], t["b"]) for t in panel))
    for ax, metric in zip(axes, METRICS):
        for offset, pair in enumerate(pairs):
            tests = {t["source"]: t for t in panel if (t["a"], t["b"]) == pair and t["metric"] == metric}
            _panel_series(
                ax, sources, tests, 0.15 * (offset - (len(pairs) - 1) / 2), pair, PANEL_MARKERS[offset % 3]
            )
        ax.axhline(0, color="#999999", linewidth=0.8)
        ax.set_xticks(range(len(sources)), sources)
        ax.set_title(f"{metric}: mean difference per track (dB)", fontsize=10)
        ax.legend(fontsize=8)
    return figure


def _panel_series(
    ax: Any,
    sources: list[str],
    tests: dict[str, dict[str, Any]],
    offset: float,
    pair: tuple[str, str],
    marker: str,
) -> None:
    """One pair of domains on one metric: a filled marker where the difference is significant."""
    colour, label = _colour(pair[0]), f"{pair[0]} − {pair[1]}"
    for index, source in enumerate(sources):
        test = tests.get(source)
        if test is None:
            continue
        value = _number(test.get("mean_difference"))
        error = [[max(0.0, value - _number(test.get("low")))], [max(0.0, _number(test.get("high")) - value)]]
        ax.errorbar(
            index + offset,
            value,
            yerr=error,
            fmt=marker,
            color=colour,
            markerfacecolor=colour if test.get("significant") else "white",
            capsize=4,
            label=label,
        )
        label = None  # one legend entry per pair


def best_system(comparison: dict[str, Any], domain: str, source: str) -> dict[str, Any] | None:
    """The system of a domain with the highest nSDR on a source (``None`` when the domain has none).

    Args:
        comparison: A comparison in the ``comparison.json`` schema.
        domain: ``"waveform"``, ``"spectrogram"``, ...
        source: The source.
    """
    scored = [
        (_number((s.get("summary") or {}).get("nSDR", {}).get(source, {}).get("estimate")), s)
        for s in comparison["systems"]
        if s["domain"] == domain
    ]
    scored = [(value, system) for value, system in scored if math.isfinite(value)]
    return max(scored, key=lambda pair: pair[0])[1] if scored else None


def _scatter_figure(source: str, wave: dict[str, Any], spec: dict[str, Any]) -> Figure:
    x = [_number(v) for v in spec["per_track"]["nSDR"][source]]
    y = [_number(v) for v in wave["per_track"]["nSDR"][source]]
    figure = _new_figure(4.2, 4.2)
    ax = figure.subplots()
    ax.scatter(x, y, color=_colour("waveform"), edgecolor="#333333", zorder=3)
    finite = [v for v in x + y if math.isfinite(v)] or [0.0]
    low, high = min(finite) - 1, max(finite) + 1
    ax.plot([low, high], [low, high], color="#999999", linestyle="--", linewidth=1)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(f"{spec['label']} (spectrogram) nSDR, dB", fontsize=9)
    ax.set_ylabel(f"{wave['label']} (waveform) nSDR, dB", fontsize=9)
    ax.set_title(f"{source}: per-track nSDR", fontsize=10)
    return figure


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Audio


def _encode_clips(clips: list[Clip]) -> dict[Clip, str]:
    """Each clip as base64 Ogg Opus.

    One ffmpeg process encodes a batch of clips (starting a process costs more than encoding a
    few seconds of audio); two batches run side by side.
    """
    unique = list(dict.fromkeys(clips))
    batches = [unique[i : i + ENCODE_BATCH] for i in range(0, len(unique), ENCODE_BATCH)]
    with tempfile.TemporaryDirectory(prefix="sepzoo-report-") as folder:
        outputs = [
            [Path(folder) / f"{b}-{i}.ogg" for i in range(len(batch))] for b, batch in enumerate(batches)
        ]
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(_encode_batch, batches, outputs))
        files = [path for paths in outputs for path in paths]
        return {clip: _base64_file(path, clip) for clip, path in zip(unique, files)}


def _encode_batch(clips: list[Clip], outputs: list[Path]) -> None:
    command = ["ffmpeg", "-nostdin", "-v", "error"]
    for clip in clips:
        command += _input_options(clip)
    for index, output in enumerate(outputs):
        command += ["-map", f"{index}:a:0", "-c:a", "libopus", "-b:a", OPUS_BITRATE, "-f", "ogg", str(output)]
    if _ffmpeg(command).returncode != 0:
        for clip in clips:  # encode them one by one to name the file ffmpeg cannot use
            _encode_one(clip)


def _encode_one(clip: Clip) -> None:
    command = ["ffmpeg", "-nostdin", "-v", "error", *_input_options(clip)]
    command += ["-map", "0:a:0", "-c:a", "libopus", "-b:a", OPUS_BITRATE, "-f", "ogg", "pipe:1"]
    done = _ffmpeg(command)
    if done.returncode != 0 or not done.stdout:
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["no audio written"])[-1]
        raise SepzooError(f"{clip.path}: ffmpeg could not encode the excerpt ({reason})")


def _input_options(clip: Clip) -> list[str]:
    options = ["-ss", f"{clip.start:.3f}"] if clip.start else []
    if clip.seconds:
        options += ["-t", f"{clip.seconds:.3f}"]
    return [*options, "-i", str(clip.path)]


def _ffmpeg(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError:
        raise SepzooError(
            "ffmpeg: not found; the report encodes its audio with it (scripts/setup.sh)"
        ) from None


def _base64_file(path: Path, clip: Clip) -> str:
    data = path.read_bytes() if path.is_file() else b""
    if not data:
        raise SepzooError(f"{clip.path}: ffmpeg wrote no audio for this excerpt")
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------------------
# The page


def render_report(comparison: dict[str, Any], excerpt: Excerpt | None = None) -> str:
    """The report's HTML page.

    Args:
        comparison: A comparison in the ``comparison.json`` schema.
        excerpt: The audio excerpt, or ``None`` for none. (Default: ``None``)
    """
    rows = _excerpt_rows(comparison, excerpt)
    encoded = _encode_clips([clip for _, stems in rows for clip in stems.values()])  # bad audio fails first
    figures = {name: _png(figure) for name, figure in comparison_figures(comparison).items()}
    sections = [
        _header(comparison),
        _toy_banner(comparison),
        _table_section(comparison),
        _bars_section(comparison, figures),
        _panel_section(comparison, figures),
        _scatter_section(comparison, figures),
        _statistics_section(comparison),
        _audio_section(comparison, excerpt, rows, encoded),
        _config_section(comparison),
        _footer(),
    ]
    title = _e(f"sepzoo report: {comparison.get('name', '')}")
    body = "\n".join(section for section in sections if section)
    return PAGE.format(title=title, style=STYLE, script=SCRIPT, body=body)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _header(comparison: dict[str, Any]) -> str:
    dataset = comparison.get("dataset") or {}
    where = " / ".join(str(v) for v in (dataset.get("root"), dataset.get("subset")) if v) or "n/a"
    commands = comparison.get("commands") or [comparison.get("command")]
    facts = [
        (
            "command" if len(commands) == 1 else "inputs",
            "<br>".join(f"<code>{_e(c)}</code>" for c in commands if c),
        ),
        ("date", _e(comparison.get("date") or "n/a")),
        ("sepzoo version", _e(comparison.get("sepzoo_version") or "n/a")),
        ("data set", f"{_e(where)} ({len(dataset.get('tracks') or [])} tracks)"),
        ("budget", _e(_fmt_budget(comparison.get("budget")))),
        ("seeds", _e(", ".join(str(s) for s in comparison.get("seeds") or []) or "n/a")),
    ]
    rows = "".join(f"<tr><th>{name}</th><td>{value or 'n/a'}</td></tr>" for name, value in facts)
    return f'<h1>{_e(comparison.get("name", "comparison"))}</h1>\n<table class="facts">{rows}</table>'


def _toy_banner(comparison: dict[str, Any]) -> str:
    if not comparison.get("toy"):
        return ""
    return (
        '<div class="banner" id="toy-banner" role="alert"><strong>Synthetic toy data.</strong> '
        "These results are a smoke test of the machinery on the synthetic toy set: they are not "
        "evidence about how waveform and spectrogram models, or any models, compare on music.</div>"
    )


def _table_section(comparison: dict[str, Any]) -> str:
    sources = comparison["sources"]
    confidence = _number(comparison.get("confidence", 0.95))
    statistic = comparison.get("statistic") or {"cSDR": "median", "nSDR": "mean"}
    head = "<tr><th rowspan=2>system</th><th rowspan=2>domain</th><th rowspan=2>kind</th>"
    head += "<th rowspan=2>parameters</th><th rowspan=2>steps</th>"
    head += "".join(f'<th colspan=2 data-source="{_e(s)}">{_e(s)}</th>' for s in sources) + "</tr><tr>"
    head += "".join(f"<th>{m}</th>" for _ in sources for m in METRICS) + "</tr>"
    rows = [
        _system_row(system, sources, len(comparison.get("seeds") or [])) for system in comparison["systems"]
    ]
    rows.append(_mixture_row(comparison, sources))
    notes = _metric_notes(comparison, statistic)
    caption = (
        f"dB; each cell: {_e(statistic.get('cSDR'))} cSDR / {_e(statistic.get('nSDR'))} nSDR over "
        f"tracks [{confidence:.0%} bootstrap confidence interval]; ± the standard deviation over seeds"
    )
    return (
        f'<h2 id="table">Comparison</h2>\n<div class="wide"><table class="scores" id="comparison-table">'
        f"<caption>{caption}</caption><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>\n"
        f"{notes}"
    )


def _system_row(system: dict[str, Any], sources: list[str], seeds: int) -> str:
    summary = system.get("summary") or {}
    cells = [
        f"<th>{_e(system['label'])}</th>",
        _domain_cell(system["domain"]),
        f"<td>{_e(system.get('kind', 'n/a'))}</td>",
        f'<td class="num">{_fmt_parameters(system.get("parameters"))}</td>',
        f'<td class="num">{_fmt_steps(system.get("runs"))}</td>',
    ]
    for source in sources:
        for metric in METRICS:
            entry = summary.get(metric, {}).get(source)
            cells.append(f'<td class="num" data-metric="{metric}">{_score_cell(entry, seeds)}</td>')
    return f'<tr class="system" data-system="{_e(system["label"])}">{"".join(cells)}</tr>'


def _domain_cell(domain: str) -> str:
    return (
        f'<td class="domain"><span class="dot" style="background:{_colour(domain)}"></span>{_e(domain)}</td>'
    )


def _score_cell(entry: dict[str, Any] | None, seeds: int) -> str:
    entry = entry or {}
    text = _fmt(entry.get("estimate"))
    if text != "–":
        text += f'<br><span class="ci">{_fmt_interval(entry.get("low"), entry.get("high"))}</span>'
    spread = _number(entry.get("seed_std"))
    if seeds > 1 and math.isfinite(spread):
        text += f'<br><span class="std">± {spread:.2f} over seeds</span>'
    return text


def _mixture_row(comparison: dict[str, Any], sources: list[str]) -> str:
    values = (comparison.get("mixture") or {}).get("nSDR") or {}
    cells = "".join(f'<td class="num">–</td><td class="num">{_fmt(values.get(s))}</td>' for s in sources)
    return (
        '<tr class="baseline"><th>mixture (unprocessed)</th><td>–</td><td>baseline</td>'
        f'<td class="num">–</td><td class="num">–</td>{cells}</tr>'
    )


def _metric_notes(comparison: dict[str, Any], statistic: dict[str, str]) -> str:
    metrics = comparison.get("metrics") or {
        "cSDR": "BSSEval v4 SDR, median over 1-s frames per track",
        "nSDR": "MDX 2021 SDR over the whole track",
    }
    items = "".join(f"<li><b>{_e(name)}</b>: {_e(text)}</li>" for name, text in metrics.items())
    return f'<ul class="notes">{items}</ul>'


def _figure(figures: dict[str, str], name: str, alt: str) -> str:
    return f'<img class="figure" src="data:image/png;base64,{figures[name]}" alt="{_e(alt)}">'


def _bars_section(comparison: dict[str, Any], figures: dict[str, str]) -> str:
    images = "".join(
        _figure(figures, f"bars/{s}", f"{s}: cSDR and nSDR per system") for s in comparison["sources"]
    )
    return f'<h2 id="bars">Scores per source</h2>\n<div class="figures">{images}</div>'


def _panel_section(comparison: dict[str, Any], figures: dict[str, str]) -> str:
    title = '<h2 id="domain-panel">Waveform against spectrogram</h2>\n'
    tests = comparison.get("domain_panel") or []
    if not tests:
        return title + (
            "<p>No domain panel: it needs trained systems of both the waveform and the spectrogram "
            "domain.</p>"
        )
    intro = (
        "<p>Per track, the mean score of each domain's trained systems; the difference is the first "
        "domain minus the second. Filled markers: significant after Holm's adjustment.</p>"
    )
    image = _figure(figures, "domain_panel", "waveform minus spectrogram, per metric and source")
    return title + intro + image + _tests_table(tests, "domain-panel-table")


def _scatter_section(comparison: dict[str, Any], figures: dict[str, str]) -> str:
    title = '<h2 id="scatter">Per-track nSDR, best waveform against best spectrogram system</h2>\n'
    names = [n for n in figures if n.startswith("scatter/")]
    if not names:
        return title + "<p>No scatter plots: the comparison lacks a waveform or a spectrogram system.</p>"
    images = "".join(_figure(figures, n, f"{n.split('/', 1)[1]}: per-track nSDR") for n in names)
    intro = "<p>One point per test track; above the diagonal the waveform system is better.</p>"
    return f'{title}{intro}<div class="figures">{images}</div>'


def _tests_table(tests: list[dict[str, Any]], table_id: str) -> str:
    head = (
        "<tr><th>metric</th><th>source</th><th>A</th><th>B</th><th>mean A − B (dB)</th>"
        "<th>interval</th><th>tracks</th><th>p</th><th>Holm p</th><th>significant</th></tr>"
    )
    rows = "".join(_test_row(test) for test in tests)
    return f'<table class="scores" id="{table_id}"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _test_row(test: dict[str, Any]) -> str:
    interval = _fmt_interval(test.get("low"), test.get("high"))
    verdict = "yes" if test.get("significant") else "no"
    cells = [
        _e(test.get("metric")),
        _e(test.get("source")),
        _e(test.get("a")),
        _e(test.get("b")),
        _fmt(test.get("mean_difference")),
        interval,
        _e(test.get("count", "–")),
        _fmt_p(test.get("p_value")),
        _fmt_p(test.get("p_holm")),
        verdict,
    ]
    return f'<tr class="test {verdict}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _statistics_section(comparison: dict[str, Any]) -> str:
    title = '<h2 id="statistics">Paired tests</h2>\n'
    tests = comparison.get("paired") or []
    alpha = _number(comparison.get("alpha", 0.05))
    confidence = _number(comparison.get("confidence", 0.95))
    if not tests:
        return title + (
            "<p>No paired tests: they compare trained systems of different domains, and this "
            "comparison has no such pair.</p>"
        )
    intro = (
        f"<p>Each pair of trained systems from different domains, per metric and source: the mean "
        f"per-track difference A − B with its {confidence:.0%} bootstrap interval, the two-sided "
        f"Wilcoxon signed-rank p-value and the Holm-adjusted p-value within each metric; a difference "
        f"is significant when the adjusted p-value is below α = {alpha:g}.</p>"
    )
    return title + intro + _tests_table(tests, "paired-table") + _verdicts(tests, alpha, comparison)


def _verdicts(tests: list[dict[str, Any]], alpha: float, comparison: dict[str, Any]) -> str:
    significant = [t for t in tests if t.get("significant")]
    rest = [t for t in tests if not t.get("significant")]
    lines = [f"<p><b>Significant at α = {alpha:g}</b> (after Holm's adjustment):</p>"]
    lines.append(_verdict_list(significant) if significant else "<p>none.</p>")
    lines.append(f"<p><b>Not significant at α = {alpha:g}</b>:</p>")
    lines.append(_verdict_list(rest) if rest else "<p>none.</p>")
    tracks = len((comparison.get("dataset") or {}).get("tracks") or [])
    if tracks and 2.0 ** (1 - tracks) >= alpha:
        lines.append(
            f"<p>With {tracks} tracks the smallest two-sided Wilcoxon p-value is "
            f"{2.0 ** (1 - tracks):.3g}, so no difference can reach α = {alpha:g}: more test tracks "
            "are needed.</p>"
        )
    return f'<div class="verdicts">{"".join(lines)}</div>'


def _verdict_list(tests: list[dict[str, Any]]) -> str:
    items = []
    for test in tests:
        difference = _number(test.get("mean_difference"))
        if math.isfinite(difference):
            higher, lower = (test["a"], test["b"]) if difference >= 0 else (test["b"], test["a"])
            what = f"{_e(higher)} above {_e(lower)} by {abs(difference):.2f} dB"
        else:
            what = f"{_e(test['a'])} and {_e(test['b'])}: too few tracks to compare"
        items.append(
            f"<li>{_e(test['metric'])} {_e(test['source'])}: {what} "
            f"(Holm p = {_fmt_p(test.get('p_holm'))})</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _excerpt_rows(comparison: dict[str, Any], excerpt: Excerpt | None) -> list[tuple[str, dict[str, Clip]]]:
    """The rows of the listening table: mixture, reference, then every system, by source."""
    if excerpt is None:
        return []
    sources = comparison["sources"]
    rows = [("mixture", {sources[0]: excerpt.mixture} if excerpt.mixture else {})]
    rows.append(("reference", {s: clip for s, clip in excerpt.reference.items() if s in sources}))
    for system in comparison["systems"]:
        stems = excerpt.systems.get(system["label"], {})
        rows.append((system["label"], {s: clip for s, clip in stems.items() if s in sources}))
    return rows


def _audio_section(
    comparison: dict[str, Any],
    excerpt: Excerpt | None,
    rows: list[tuple[str, dict[str, Clip]]],
    encoded: dict[Clip, str],
) -> str:
    title = '<h2 id="audio">Listen</h2>\n'
    if excerpt is None:
        return title + "<p>No audio excerpt: the inputs hold no excerpt and no saved estimates.</p>"
    sources = comparison["sources"]
    head = "<tr><th></th>" + "".join(f"<th>{_e(s)}</th>" for s in sources) + "</tr>"
    body = [_mixture_audio_row(excerpt, encoded, len(sources))]
    for label, stems in rows[1:]:
        cells = "".join(f"<td>{_player(stems.get(s), encoded)}</td>" for s in sources)
        body.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    end = excerpt.start + excerpt.seconds if math.isfinite(excerpt.seconds) else math.nan
    where = f"{_e(excerpt.track)}, {_fmt(excerpt.start, 1)}–{_fmt(end, 1)} s"
    caption = f"{where}; Ogg Opus at {OPUS_BITRATE}bit/s; the reference first, then each system"
    return (
        f'{title}<table class="audio" id="audio-table"><caption>{caption}</caption>'
        f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
    )


def _mixture_audio_row(excerpt: Excerpt, encoded: dict[Clip, str], columns: int) -> str:
    return f"<tr><th>mixture</th><td colspan={columns}>{_player(excerpt.mixture, encoded)}</td></tr>"


def _player(clip: Clip | None, encoded: dict[Clip, str]) -> str:
    if clip is None:
        return "–"
    return f'<audio controls preload="metadata" src="data:audio/ogg;base64,{encoded[clip]}"></audio>'


def _config_section(comparison: dict[str, Any]) -> str:
    import yaml

    parts = ['<h2 id="configs">Configurations</h2>']
    if comparison.get("recipe_text"):
        label = f"comparison recipe ({comparison.get('recipe') or 'resolved'})"
        parts.append(_details(label, comparison["recipe_text"]))
    for system in comparison["systems"]:
        config = system.get("config")
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else "no training recipe"
        parts.append(_details(f"{system['label']} ({system.get('model') or 'unknown model'})", text))
    return "\n".join(parts)


def _details(summary: str, text: str) -> str:
    return f"<details><summary>{_e(summary)}</summary><pre>{_e(text)}</pre></details>"


def _footer() -> str:
    from sepzoo import __version__

    today = datetime.date.today().isoformat()
    return f"<footer>Written by sepzoo {_e(__version__)} on {today} with <code>sepzoo report</code>.</footer>"


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and a rename: never a half-written page."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise SepzooError(f"{path}: cannot be written ({exc.strerror})") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise SepzooError(f"{path}: cannot be written ({exc.strerror})") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; media-src data:; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<script>{script}</script>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""

# Errors on the page (a script error, an image or audio that fails to load) are kept in
# window.reportErrors, so a test or a curious reader can see them from the console.
SCRIPT = """
window.reportErrors = [];
window.addEventListener("error", function (event) {
  var target = event.target;
  var what = target && target.tagName ? target.tagName.toLowerCase() + " failed to load" : event.message;
  window.reportErrors.push(String(what));
}, true);
window.addEventListener("unhandledrejection", function (event) {
  window.reportErrors.push(String(event.reason));
});
"""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.3em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; vertical-align: top; }
thead th { background: #f3f3f3; }
caption { caption-side: bottom; text-align: left; font-size: 0.85em; color: #555; padding-top: 0.4em; }
table.facts th { text-align: left; background: #f8f8f8; }
table.scores td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.baseline { background: #fafafa; font-style: italic; }
tr.test.yes td:last-child { font-weight: bold; color: #0a6b2d; }
.std, .ci { color: #666; font-size: 0.85em; }
.wide { overflow-x: auto; }
td.domain { white-space: nowrap; }
.dot { display: inline-block; width: 0.7em; height: 0.7em; border-radius: 50%; margin-right: 0.4em; }
.banner { background: #fff4d6; border: 2px solid #e0a800; padding: 0.8em 1em; margin: 1em 0;
          font-size: 1.1em; border-radius: 4px; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
img.figure { max-width: 100%; height: auto; border: 1px solid #eee; }
table.audio audio { width: 220px; }
details { margin: 0.4em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
footer { margin-top: 3em; font-size: 0.85em; color: #666; }
"""
