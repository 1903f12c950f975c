"""``sepzoo report``: one self-contained HTML file from comparisons or evaluations.

The report opens in a browser from disk, with no server and no network: the style sheet is
inline, the figures are PNG ``data:`` images drawn by matplotlib's Agg renderer, and the audio
excerpts are Ogg Opus ``data:`` URLs encoded by ffmpeg. A Content-Security-Policy forbids
anything else, so a reference to an outside resource shows up as an error instead of a silent
download.

Inputs are comparison folders (``sepzoo compare``: ``comparison.json``) or evaluation folders
(``sepzoo eval -o``: ``summary.json``), each read through its declared record
(:class:`~sepzoo.experiments.records.Comparison`, :class:`~sepzoo.evaluation.records.EvalSummary`)
into a :class:`~sepzoo.experiments.records.Comparison`. One comparison folder is shown as it is.
Anything else is merged into one comparison over the tracks and sources common to all inputs, and
its intervals and paired tests are computed afresh with
:func:`sepzoo.evaluation.stats.compare_systems`.

This module reads the inputs and encodes the audio; :mod:`sepzoo.experiments.report_figures`
draws the figures, and :mod:`sepzoo.experiments.report_page` fills the page's Jinja2 templates
(``sepzoo/experiments/templates``), which escape every value they print.
"""

from __future__ import annotations

import base64
import datetime
import math
import os
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepzoo.errors import OutputExistsError, SepzooError
from sepzoo.evaluation.records import SUMMARY_FILE, EvalSummary, read_summary
from sepzoo.experiments.records import (
    COMPARISON_FILE,
    COMPARISON_FORMAT,
    Comparison,
    ExcerptFiles,
    Run,
    System,
    read_comparison_file,
    scored_systems,
)
from sepzoo.experiments.report_figures import (
    METRICS,
    as_number,
    best_system,
    comparison_figures,
    png_base64,
)
from sepzoo.experiments.report_page import format_number, render_page
from sepzoo.io.atomic import write_text_atomic

__all__ = [
    "METRICS",
    "Clip",
    "Excerpt",
    "best_system",
    "comparison_figures",
    "load_comparison",
    "render_report",
    "write_report",
]

EXCERPT_SECONDS = 8.0
"""Length of the excerpt cut from an evaluation's saved estimates."""
OPUS_BITRATE = "80k"
ENCODE_BATCH = 16
"""Clips encoded by one ffmpeg process."""


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
    """One folder given to the report, read into a comparison."""

    folder: Path
    comparison: Comparison
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
    _write_page(out, page)
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


def load_comparison(dirs: Sequence[str | Path]) -> tuple[Comparison, Excerpt | None]:
    """Read comparison or evaluation folders into one comparison.

    Args:
        dirs: The folders.

    Returns:
        The comparison, and its audio excerpt (or ``None``).
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
    if (folder / COMPARISON_FILE).is_file():
        return _comparison_input(folder)
    if (folder / SUMMARY_FILE).is_file():
        return _eval_input(folder)
    raise SepzooError(
        f"{folder}: neither {COMPARISON_FILE} (sepzoo compare) nor {SUMMARY_FILE} (sepzoo eval) is there"
    )


def _comparison_input(folder: Path) -> _Input:
    path = folder / COMPARISON_FILE
    comparison = read_comparison_file(path)
    tracks = len(comparison.dataset.tracks)
    for index, system in enumerate(comparison.systems):
        for metric in METRICS:
            for source in comparison.sources:
                values = system.scores(metric, source)
                if values is None or len(values) != tracks:
                    count = "none" if values is None else len(values)
                    raise SepzooError(
                        f"{path}: systems[{index}].per_track.{metric}.{source}: expected {tracks} scores, "
                        f"got {count}"
                    )
    excerpt = _comparison_excerpt(folder, comparison.excerpt, path)
    return _Input(folder, comparison, True, excerpt=excerpt)


def _comparison_excerpt(folder: Path, excerpt: ExcerptFiles | None, path: Path) -> Excerpt | None:
    if excerpt is None:
        return None

    def clip(relative: str) -> Clip:
        file = folder / relative
        if not file.is_file():
            raise SepzooError(f"{path}: excerpt file {file} is missing; expected a WAV file there")
        return Clip(file)

    return Excerpt(
        track=excerpt.track,
        start=as_number(excerpt.start),
        seconds=as_number(excerpt.seconds),
        mixture=clip(excerpt.mixture) if excerpt.mixture else None,
        reference={source: clip(rel) for source, rel in excerpt.reference.items()},
        systems={
            label: {source: clip(rel) for source, rel in stems.items()}
            for label, stems in excerpt.systems.items()
        },
    )


def _eval_input(folder: Path) -> _Input:
    summary = read_summary(folder / SUMMARY_FILE)
    tracks = list(summary.per_track)
    system = _eval_system(folder.resolve().name, folder, summary, tracks)
    comparison = Comparison(
        format=COMPARISON_FORMAT,
        name=folder.resolve().name,
        command=_eval_command(folder, summary),
        toy=summary.toy,
        dataset={"root": summary.root, "subset": summary.subset, "tracks": tracks},
        sources=list(summary.sources),
        systems=[system],
    )
    mixture = {
        source: {track: as_number(row.mixture_nSDR.get(source)) for track, row in summary.per_track.items()}
        for source in summary.sources
    }
    subset = summary.subset or "test"
    estimates = folder / "estimates" / subset
    data_folder = Path(summary.root) / subset if summary.root else None
    return _Input(
        folder,
        comparison,
        False,
        mixture_per_track=mixture,
        estimates={system.label: estimates} if estimates.is_dir() else {},
        data_folder=data_folder,
    )


def _eval_system(label: str, folder: Path, summary: EvalSummary, tracks: list[str]) -> System:
    domain, name, config = _model_identity(summary.model, folder)
    rows = summary.per_track
    return System(
        label=label,
        model=name or summary.model or summary.estimates,
        domain=domain,
        kind="oracle" if domain == "oracle" else "trained",
        recipe=None,
        parameters=None,
        config=config,
        runs=[Run(seed=None, run_dir=None, eval_dir=str(folder), steps=None)],
        per_track={
            "cSDR": {s: [rows[t].SDR[s] for t in tracks] for s in summary.sources},
            "nSDR": {s: [rows[t].nSDR[s] for t in tracks] for s in summary.sources},
        },
        per_seed={},
    )


def _eval_command(folder: Path, summary: EvalSummary) -> str:
    what = f"-n {summary.model}" if summary.model else f"--estimates {summary.estimates}"
    return f"sepzoo eval {what} --root {summary.root} --subset {summary.subset} -o {folder}"


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
        for system in item.comparison.systems:
            counts[system.label] = counts.get(system.label, 0) + 1
    taken: set[str] = set()
    for item in inputs:
        prefix = item.folder.resolve().name if item.is_comparison else item.folder.resolve().parent.name
        renamed = {}
        for system in item.comparison.systems:
            old = system.label
            new = f"{prefix}/{old}" if counts[old] > 1 else old
            new = _unique(new, taken)
            renamed[old] = system.label = new
        if item.excerpt is not None:
            item.excerpt.systems = {renamed.get(k, k): v for k, v in item.excerpt.systems.items()}
        item.estimates = {renamed.get(k, k): v for k, v in item.estimates.items()}


def _unique(label: str, taken: set[str]) -> str:
    candidate, index = label, 2
    while candidate in taken:
        candidate, index = f"{label}-{index}", index + 1
    taken.add(candidate)
    return candidate


def _merge(inputs: list[_Input]) -> tuple[Comparison, Excerpt | None]:
    from sepzoo import __version__

    tracks = _common(item.comparison.dataset.tracks for item in inputs)
    sources = _common(item.comparison.sources for item in inputs)
    names = ", ".join(str(item.folder) for item in inputs)
    if not tracks:
        raise SepzooError(f"report: {names}: no test track is common to all of them")
    if not sources:
        raise SepzooError(f"report: {names}: no source is common to all of them")
    first = next((item.comparison for item in inputs if item.is_comparison), None)
    confidence, alpha = (first.confidence, first.alpha) if first else (0.95, 0.05)
    systems = [
        _restrict(system, item, tracks, sources) for item in inputs for system in item.comparison.systems
    ]
    budget = _same(item.comparison.budget for item in inputs if item.is_comparison)
    comparison = Comparison.from_data(
        {
            "format": COMPARISON_FORMAT,
            "name": ", ".join(item.comparison.name for item in inputs),
            "commands": [item.comparison.command for item in inputs if item.comparison.command],
            "date": datetime.date.today().isoformat(),
            "sepzoo_version": __version__,
            "toy": any(item.comparison.toy for item in inputs),
            "dataset": {"root": _joined(item.comparison.dataset.root for item in inputs), "tracks": tracks},
            "sources": sources,
            "budget": None if budget is None else budget.model_dump(exclude_unset=True),
            "seeds": sorted({s for item in inputs for s in item.comparison.seeds}),
            "confidence": confidence,
            "alpha": alpha,
            "metrics": first.metrics if first else None,
            **scored_systems(systems, sources, confidence, alpha),
            "mixture": {"nSDR": _merged_mixture(inputs, tracks, sources)},
        },
        f"report: {names}",
    )
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


def _restrict(system: System, item: _Input, tracks: list[str], sources: list[str]) -> System:
    """A copy of a system holding the given tracks and sources only, ready for the statistics."""
    own = item.comparison.dataset.tracks
    position = {track: index for index, track in enumerate(own)}
    per_track = {
        metric: {s: [(system.scores(metric, s) or [])[position[t]] for t in tracks] for s in sources}
        for metric in METRICS
    }
    per_seed = system.per_seed if list(own) == list(tracks) else {}
    return system.model_copy(update={"per_track": per_track, "per_seed": per_seed, "summary": {}})


def _merged_mixture(inputs: list[_Input], tracks: list[str], sources: list[str]) -> dict[str, float | None]:
    """The mixture's nSDR over the common tracks, from per-track scores or an input on those tracks."""
    for item in inputs:
        if item.mixture_per_track is not None:
            return {s: _finite_mean([item.mixture_per_track[s].get(t) for t in tracks]) for s in sources}
    for item in inputs:
        if list(item.comparison.dataset.tracks) == list(tracks):
            values = item.comparison.mixture.nSDR
            return {s: values.get(s) for s in sources}
    return {s: None for s in sources}


def _finite_mean(values: Sequence[Any]) -> float | None:
    kept = [v for v in (as_number(x) for x in values) if math.isfinite(v)]
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


def render_report(comparison: Comparison, excerpt: Excerpt | None = None) -> str:
    """The report's HTML page.

    Args:
        comparison: The comparison (from :func:`load_comparison`, or
            :meth:`~sepzoo.experiments.records.Comparison.from_data`).
        excerpt: The audio excerpt, or ``None`` for none. (Default: ``None``)
    """
    rows = _excerpt_rows(comparison, excerpt)
    encoded = _encode_clips([clip for _, stems in rows for clip in stems.values()])  # bad audio fails first
    figures = {name: png_base64(figure) for name, figure in comparison_figures(comparison).items()}
    return render_page(comparison, figures, _audio(comparison, excerpt, rows, encoded))


def _excerpt_rows(comparison: Comparison, excerpt: Excerpt | None) -> list[tuple[str, dict[str, Clip]]]:
    """The rows of the listening table: mixture, reference, then every system, by source."""
    if excerpt is None:
        return []
    sources = comparison.sources
    rows = [("mixture", {sources[0]: excerpt.mixture} if excerpt.mixture else {})]
    rows.append(("reference", {s: clip for s, clip in excerpt.reference.items() if s in sources}))
    for system in comparison.systems:
        stems = excerpt.systems.get(system.label, {})
        rows.append((system.label, {s: clip for s, clip in stems.items() if s in sources}))
    return rows


def _audio(
    comparison: Comparison,
    excerpt: Excerpt | None,
    rows: list[tuple[str, dict[str, Clip]]],
    encoded: dict[Clip, str],
) -> dict[str, Any] | None:
    """The listening table: a ``data:`` URL per player, ``None`` where a stem is missing."""
    if excerpt is None:
        return None

    def player(clip: Clip | None) -> str | None:
        return None if clip is None else f"data:audio/ogg;base64,{encoded[clip]}"

    end = excerpt.start + excerpt.seconds if math.isfinite(excerpt.seconds) else math.nan
    return {
        "track": excerpt.track,
        "start": format_number(excerpt.start, 1),
        "end": format_number(end, 1),
        "bitrate": OPUS_BITRATE,
        "mixture": player(excerpt.mixture),
        "rows": [
            {"label": label, "players": [player(stems.get(s)) for s in comparison.sources]}
            for label, stems in rows[1:]
        ],
    }


def _write_page(path: Path, text: str) -> None:
    """Write the page atomically (:func:`sepzoo.io.atomic.write_text_atomic`), making its folder."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as exc:
        raise SepzooError(f"{path}: cannot be written ({exc.strerror})") from None
