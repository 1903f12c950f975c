"""``sepzoo compare``: several models on the same data, budget, seeds and metrics.

A comparison recipe (``recipes/compare/*.yaml``, read by
:mod:`sepzoo.experiments.compare_recipe`) names model recipes, one data set, one training budget,
the seeds and the oracles. :func:`run_comparison` trains every model and seed that has no
finished run (runs live in ``OUT/runs`` and are found by their run directory, so a second call
reuses them), scores every model and oracle on the same test tracks with ``sepzoo eval``, and
writes:

* ``OUT/comparison.json`` (:class:`sepzoo.experiments.records.Comparison`): per system and
  source, cSDR and nSDR per track, their summaries with bootstrap intervals, the paired tests
  between domains and the waveform-vs-spectrogram panel
  (:func:`sepzoo.evaluation.stats.compare_systems`), the equivalence tests of exported models
  against the models they came from (:func:`equivalence_pairs`,
  :func:`sepzoo.evaluation.stats.equivalence_tests`), and an audio excerpt through every system;
* ``OUT/table.txt``: the table printed at the end;
* a W&B summary run in the comparison's group (offline without an API key);
* ``OUT/report.html`` (:mod:`sepzoo.experiments.report`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sepzoo.errors import SepzooError
from sepzoo.evaluation.records import SUMMARY_FILE, EvalSummary
from sepzoo.experiments.compare_recipe import ComparisonRecipe, ModelEntry, load_comparison_recipe
from sepzoo.experiments.records import (
    COMPARISON_FILE,
    COMPARISON_FORMAT,
    Comparison,
    ExcerptFiles,
    Run,
    ScoreSummary,
    System,
    comparison_json,
    scored_systems,
)

log = logging.getLogger(__name__)

METRIC_LABELS = {
    "cSDR": "BSSEval v4 SDR (museval): median over 1-s frames per track; median over tracks",
    "nSDR": "MDX 2021 SDR over the whole track; mean over tracks",
}
_TIMING_FILE = "train_seconds.json"


def run_comparison(
    recipe_path: str | Path,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    force: bool = False,
    report: bool = True,
) -> Path:
    """Train what is missing, evaluate everything, and write the comparison.

    Args:
        recipe_path: The comparison recipe.
        overrides: ``key=value`` overrides of the comparison recipe. (Default: none)
        out: The output folder. (Default: the recipe's ``out``)
        force: Retrain every model and score every system again. (Default: ``False``)
        report: Also write ``OUT/report.html``. (Default: ``True``)

    Returns:
        The comparison folder.
    """
    from sepzoo.experiments.wandb_summary import log_comparison
    from sepzoo.io.atomic import write_json_atomic, write_text_atomic

    recipe = load_comparison_recipe(recipe_path, overrides)
    out_dir = Path(out) if out is not None else recipe.out
    _prepare_data(recipe)
    _check_out(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "recipe.yaml", recipe.text)
    command = " ".join(["sepzoo", "compare", str(recipe_path), *(overrides or [])])
    systems = [
        _ready_model(entry) if entry.path is not None else _train_model(recipe, entry, out_dir, force)
        for entry in recipe.models
    ]
    systems += [_oracle(name) for name in recipe.oracles]
    pairs = equivalence_pairs(systems, recipe.equivalence)
    log.info("\ncompare: scoring %d systems on %s", len(systems), _subset_name(recipe))
    summaries = [_evaluate(recipe, system, out_dir, force) for system in systems]
    comparison = _assemble(recipe, systems, summaries, command, out_dir, pairs)
    comparison.excerpt = _write_excerpts(recipe, systems, out_dir)
    table = format_comparison(comparison)
    write_text_atomic(out_dir / "table.txt", table + "\n")
    assert comparison.wandb is not None
    comparison.wandb.summary_dir = log_comparison(comparison, out_dir, recipe.wandb.mode)
    write_json_atomic(out_dir / COMPARISON_FILE, comparison_json(comparison))
    report_path = None
    if report:
        from sepzoo.experiments.report import write_report

        report_path = write_report([out_dir], out_dir / "report.html", force=True)
    log.info("\n%s\n", table)
    log.info("comparison: %s", out_dir / COMPARISON_FILE)
    if report_path is not None:
        log.info("report:     %s", report_path)
    wandb = comparison.wandb
    if wandb.summary_dir:
        where = (wandb.group, wandb.project, wandb.summary_dir)
        log.info("W&B group:  %s (project %s); summary run in %s", *where)
    return out_dir


def _subset_name(recipe: ComparisonRecipe) -> str:
    count = f"the first {recipe.tracks} tracks of " if recipe.tracks else "every track of "
    return f"{count}{recipe.root / recipe.subset}"


def _prepare_data(recipe: ComparisonRecipe) -> None:
    """Generate the toy set the recipe asks for when it is not there yet."""
    if recipe.root.exists() or recipe.generate is None:
        if not (recipe.root / recipe.subset).is_dir():
            raise SepzooError(f"{recipe.path}: data.root {recipe.root} has no '{recipe.subset}' folder")
        return
    from sepzoo.data.toy import generate_toy_musdb

    log.info("compare: generating the toy data set %s", recipe.root)
    generate_toy_musdb(recipe.root, progress=True, **recipe.generate.arguments())


def _check_out(out_dir: Path) -> None:
    """Refuse a folder that holds something other than this comparison's outputs."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SepzooError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "recipe.yaml").is_file():
        raise SepzooError(f"{out_dir}: exists and does not hold a comparison; choose another -o")
    parent = out_dir if out_dir.exists() else out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise SepzooError(f"{parent}: not writable")


def _train_model(recipe: ComparisonRecipe, entry: ModelEntry, out_dir: Path, force: bool) -> System:
    """Train every seed (and member) of one model that has no finished run; describe the system."""
    from sepzoo.models import create_model, get_model_class
    from sepzoo.training.recipe import load_recipe

    system = System(
        label=entry.label,
        model=entry.model,
        domain=get_model_class(entry.model).domain,
        kind="trained",
        recipe=", ".join(_relative(path) for path in entry.recipes),
        parameters=None,
        config=None,
        runs=[],
    )
    for seed in recipe.seeds:
        overrides = [
            _train_overrides(recipe, entry, system.domain, path, out_dir, seed) for path in entry.recipes
        ]
        plans = [load_recipe(path, extra) for path, extra in zip(entry.recipes, overrides)]
        if system.config is None:
            system.parameters = sum(
                create_model(p.model.name, **p.model.kwargs).num_parameters() for p in plans
            )
            system.config = plans[0].resolved if not entry.is_bag else {p.name: p.resolved for p in plans}
        members = [
            _train_run(entry, path, extra, plan, force, seed)
            for path, extra, plan in zip(entry.recipes, overrides, plans)
        ]
        run = members[0]
        if entry.is_bag:
            run = Run(
                seed=seed,
                run_dir=None,
                members=[str(m.run_dir) for m in members],
                spec=str(_make_bag(entry, members, out_dir, seed, force)),
                steps=[m.steps if isinstance(m.steps, int) else None for m in members],
                train_seconds=_total([m.train_seconds for m in members]),
                wandb_dir=None,
            )
        system.runs.append(run)
    return system


def _train_run(entry: ModelEntry, path: Path, overrides: list[str], plan: Any, force: bool, seed: int) -> Run:
    """Train one recipe at one seed unless its run finished already; what the run reached."""
    from sepzoo.training.rundir import DONE_MARKER
    from sepzoo.training.train import run_directory

    run_dir = run_directory(plan)
    name = f"{entry.label} seed {seed}" + (f" ({path.stem})" if entry.is_bag else "")
    if force or not (run_dir / DONE_MARKER).is_file():
        _run_training(name, path, overrides, run_dir, force)
    else:
        log.info("compare: %s: reusing the finished run %s", name, run_dir)
    done = json.loads((run_dir / DONE_MARKER).read_text())
    timing = run_dir / _TIMING_FILE
    wandb_dir = run_dir / "wandb"
    return Run(
        seed=seed,
        run_dir=str(run_dir),
        spec=str(run_dir),
        steps=done.get("global_step"),
        train_seconds=json.loads(timing.read_text()).get("seconds") if timing.is_file() else None,
        wandb_dir=str(wandb_dir) if wandb_dir.is_dir() else None,
    )


def _total(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(sum(values), 1)  # type: ignore[arg-type]


def _make_bag(entry: ModelEntry, members: list[Run], out_dir: Path, seed: int, force: bool) -> Path:
    """Join the members' trained weights into one model file (each source from its own member)."""
    from sepzoo import DEFAULT_SOURCES
    from sepzoo.models.bag import BagOfModels
    from sepzoo.models.files import load_separator, save_model_file
    from sepzoo.training.rundir import DONE_MARKER

    run_dirs = [str(m.run_dir) for m in members]
    path = out_dir / "bags" / f"{entry.label}-seed{seed}.sepzoo"
    newest = max(Path(run_dir).joinpath(DONE_MARKER).stat().st_mtime for run_dir in run_dirs)
    if path.is_file() and not force and path.stat().st_mtime >= newest:
        return path
    models = [load_separator(run_dir) for run_dir in run_dirs]
    estimated = {s for model in models for s in model.sources}
    order = [s for s in DEFAULT_SOURCES if s in estimated] + sorted(estimated - set(DEFAULT_SOURCES))
    bag = BagOfModels(models, sources=order)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model_file(bag, path, metadata={"members": run_dirs}, force=True)


def _train_overrides(
    recipe: ComparisonRecipe, entry: ModelEntry, domain: str, path: Path, out_dir: Path, seed: int
) -> list[str]:
    """The overrides that put one recipe and seed into the comparison: budget, data, run, W&B.

    With W&B disabled, a training run writes its metrics to CSV files instead."""
    run_name = f"{entry.label}-{path.stem}" if entry.is_bag else entry.label
    tags = [recipe.name, entry.label, entry.model, domain, f"seed{seed}"]
    return [
        *recipe.overrides,
        *entry.overrides,
        *recipe.budget_overrides(),
        f"seed={seed}",
        f"data.root={recipe.root}",
        f"run.root={out_dir / 'runs'}",
        f"run.name={run_name}-seed{seed}",
        f"logger.project={recipe.wandb.project}",
        f"logger.group={recipe.wandb.group}",
        f"logger.tags=[{','.join(dict.fromkeys(tags))}]",
        f"logger.mode={recipe.wandb.mode}",
    ]


def _run_training(name: str, path: Path, overrides: list[str], run_dir: Path, force: bool) -> None:
    """Train in a child process, so that every run starts from a clean interpreter."""
    from sepzoo.io.atomic import write_json_atomic
    from sepzoo.training.rundir import latest_checkpoint

    command = [sys.executable, "-m", "sepzoo.cli.main", "train", str(path), *overrides]
    if force:
        command.append("--force")
    elif run_dir.is_dir() and latest_checkpoint(run_dir) is not None:
        command.append("--resume")
    elif run_dir.is_dir():
        command.append("--force")  # an unfinished run with no checkpoint: nothing to keep
    log.info("\ncompare: training %s -> %s", name, run_dir)
    start = time.monotonic()
    done = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        raise SepzooError(
            f"training {name} (recipe {path}) failed with exit status {done.returncode}; "
            "its messages are above"
        )
    write_json_atomic(run_dir / _TIMING_FILE, {"seconds": round(time.monotonic() - start, 1)})


def _ready_model(entry: ModelEntry) -> System:
    """A ready-made model (model file, run directory or exported folder), scored as it is."""
    from sepzoo.models.files import load_separator

    assert entry.path is not None
    manifest = export_manifest(entry.path)
    if manifest is not None:
        name, domain, parameters = manifest.get("architecture"), manifest.get("domain", "unknown"), None
    else:
        model = load_separator(entry.path)
        name = getattr(model, "registry_name", None) or type(model).__name__
        domain, parameters = model.domain, model.num_parameters()
    return System(
        label=entry.label,
        model=name,
        domain=domain,
        kind="exported" if manifest is not None else "trained",
        recipe=None,
        parameters=parameters,
        config=None,
        runs=[Run(seed=None, spec=str(entry.path))],
    )


def export_manifest(spec: str | Path) -> dict[str, Any] | None:
    """The manifest of an exported folder, or ``None`` when ``spec`` is not one.

    Args:
        spec: What a comparison scores: a path or a registry name.

    Raises:
        SepzooError: The manifest cannot be read, or lacks a key
            (:func:`sepzoo.deploy.runtime.read_manifest`).
    """
    from sepzoo.deploy.runtime import is_exported_folder, read_manifest

    return read_manifest(spec) if is_exported_folder(spec) else None


def model_digest(spec: str | Path) -> str | None:
    """The sha256 of the file a model path is read from, as an export records it.

    A model file or training checkpoint is hashed itself, a run directory by the checkpoint
    :func:`~sepzoo.models.files.find_run_checkpoint` picks (the file
    :func:`~sepzoo.models.files.model_source_path` names); an exported folder, a registry
    name, a missing path or a folder with no checkpoints has no digest.

    Args:
        spec: A system's model path or registry name.
    """
    from sepzoo.deploy.runtime import file_digest, is_exported_folder
    from sepzoo.models.files import model_source_path

    path = Path(spec)
    if path.is_dir() and (is_exported_folder(path) or not (path / "checkpoints").is_dir()):
        return None
    source = model_source_path(path)
    return None if source is None else file_digest(source)


def equivalence_pairs(systems: list[System], named: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The ``(exported, original)`` pairs a comparison tests for equivalence.

    The pairs the recipe names (``statistics.equivalence``) come first. Then every system whose
    model is an exported folder is paired with the other system whose model file has the
    digest its manifest records as ``source.sha256`` (a run directory counts by the checkpoint
    :func:`~sepzoo.models.files.find_run_checkpoint` picks). An original trained with several
    seeds is skipped with a warning: its per-track scores are means over seeds, not the scores
    of the one run that was exported.

    Args:
        systems: The comparison's systems, each with its runs' ``spec``.
        named: Pairs of labels named in the recipe. (Default: none)
    """
    pairs = [(exported, original) for exported, original in named]
    paired = {exported for exported, _ in pairs}
    digests: dict[str, str | None] = {}

    def digest(spec: str) -> str | None:
        if spec not in digests:
            digests[spec] = model_digest(spec)
        return digests[spec]

    for system in systems:
        specs = [run.spec for run in system.runs if run.spec]
        manifest = export_manifest(specs[0]) if len(specs) == 1 else None
        if manifest is None or system.label in paired:
            continue
        source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
        wanted = source.get("sha256")
        matches = [
            other
            for other in systems
            if other is not system and wanted and any(digest(r.spec) == wanted for r in other.runs if r.spec)
        ]
        if not matches:
            log.warning(
                "compare: %s: no system in this comparison is the model it was exported from (%s); "
                "no equivalence test for it",
                system.label,
                source.get("path", "unknown source"),
            )
            continue
        original = matches[0]
        if len(original.runs) > 1:
            log.warning(
                "compare: %s was exported from one seed of %s, whose scores are means over %d seeds; "
                "no equivalence test (name the run itself as a model to test it)",
                system.label,
                original.label,
                len(original.runs),
            )
            continue
        pairs.append((system.label, original.label))
        paired.add(system.label)
    return pairs


def _oracle(name: str) -> System:
    return System(
        label=name,
        model=name,
        domain="oracle",
        kind="oracle",
        recipe=None,
        parameters=None,
        config=None,
        runs=[Run(seed=None)],
    )


def _evaluate(recipe: ComparisonRecipe, system: System, out_dir: Path, force: bool) -> list[EvalSummary]:
    """Score every run of a system (one per seed; one for an oracle); returns their summaries."""
    from sepzoo.evaluation.evaluate import evaluate
    from sepzoo.evaluation.records import read_summary

    summaries = []
    for run in system.runs:
        spec = run.spec or system.model
        settings = recipe.eval
        identity = json.dumps([str(spec), str(recipe.root.resolve()), recipe.subset, settings.identity()])
        digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
        seed = "" if run.seed is None else f"-seed{run.seed}"
        eval_dir = out_dir / "evals" / f"{system.label}{seed}-{digest}"
        log.info("compare: scoring %s%s", system.label, seed.replace("-", " "))
        evaluate(
            str(spec),
            recipe.root,
            recipe.subset,
            eval_dir,
            max_tracks=recipe.tracks,
            **settings.model_dump(),
            force=force,
        )
        run.eval_dir = _relative(eval_dir, out_dir)
        summaries.append(read_summary(eval_dir / SUMMARY_FILE))
    return summaries


def _assemble(
    recipe: ComparisonRecipe,
    systems: list[System],
    summaries: list[list[EvalSummary]],
    command: str,
    out_dir: Path,
    pairs: list[tuple[str, str]] | None = None,
) -> Comparison:
    """The comparison (without the excerpt): every system scored on the same tracks, with statistics."""
    import sepzoo
    from sepzoo import DEFAULT_SOURCES
    from sepzoo.evaluation.stats import STATISTIC_OF_METRIC

    tracks = list(summaries[0][0].per_track)
    sources = [s for s in DEFAULT_SOURCES if any(s in runs[0].sources for runs in summaries)]
    sources += [s for runs in summaries for s in runs[0].sources if s not in sources]
    for system, runs in zip(systems, summaries):
        system.per_track, system.per_seed = _scores(runs, tracks, sources)
    first = summaries[0][0]
    return Comparison.from_data(
        {
            "format": COMPARISON_FORMAT,
            "name": recipe.name,
            "recipe": _relative(recipe.path),
            "recipe_text": recipe.text,
            "command": command,
            "date": datetime.date.today().isoformat(),
            "sepzoo_version": sepzoo.__version__,
            "toy": first.toy,
            "dataset": {"root": str(recipe.root), "subset": recipe.subset, "tracks": tracks},
            "sources": sources,
            "budget": recipe.budget().model_dump(exclude_unset=True),
            "seeds": recipe.seeds,
            "confidence": recipe.confidence,
            "alpha": recipe.alpha,
            "metrics": METRIC_LABELS,
            "statistic": STATISTIC_OF_METRIC,
            **scored_systems(
                systems,
                sources,
                recipe.confidence,
                recipe.alpha,
                recipe.resamples,
                equivalence=pairs or [],
                margin=recipe.equivalence_margin if pairs else None,
            ),
            "mixture": {"nSDR": {s: first.mixture_nSDR.get(s) for s in sources}},
            "wandb": {"group": recipe.wandb.group, "project": recipe.wandb.project, "summary_dir": None},
        },
        str(out_dir / COMPARISON_FILE),
    )


def _scores(
    runs: list[EvalSummary], tracks: list[str], sources: list[str]
) -> tuple[dict[str, dict[str, list[float | None]]], dict[str, dict[str, list[float | None]]]]:
    """Per-track scores (mean over seeds) and per-seed summaries of one system."""
    import statistics

    from sepzoo.evaluation.scores import nan_aggregate
    from sepzoo.evaluation.stats import STATISTIC_OF_METRIC

    fields = {"cSDR": "SDR", "nSDR": "nSDR"}
    per_track: dict[str, dict[str, list[float | None]]] = {}
    per_seed: dict[str, dict[str, list[float | None]]] = {}
    for metric, key in fields.items():
        per_track[metric], per_seed[metric] = {}, {}
        for source in sources:
            table = [[_number(_track_score(run, track, key, source)) for track in tracks] for run in runs]
            per_track[metric][source] = [nan_aggregate(column, statistics.fmean) for column in zip(*table)]
            reduce = statistics.median if STATISTIC_OF_METRIC[metric] == "median" else statistics.fmean
            per_seed[metric][source] = [nan_aggregate(row, reduce) for row in table]
    return per_track, per_seed


def _track_score(summary: EvalSummary, track: str, metric: str, source: str) -> float | None:
    row = summary.per_track.get(track)
    return None if row is None else getattr(row, metric).get(source)


def _number(value: float | None) -> float:
    """A score rounded as museval's JSON stores it, so resumed and fresh scores agree exactly."""
    return math.nan if value is None else round(float(value), 5)


def _write_excerpts(recipe: ComparisonRecipe, systems: list[System], out_dir: Path) -> ExcerptFiles:
    """The same few seconds of one test track: mixture, reference stems, and every system's stems."""
    import torch

    from sepzoo.data.tracks import read_stems
    from sepzoo.engine.apply import apply_model
    from sepzoo.evaluation.evaluate import find_tracks, mixture_sources
    from sepzoo.models.files import load_separator

    first = load_separator(systems[0].runs[0].spec or systems[0].model)
    data_sources = mixture_sources(list(first.sources))
    tracks = find_tracks(recipe.root, recipe.subset, data_sources)[: recipe.tracks or None]
    track = _excerpt_track(recipe, tracks)
    rate = first.sample_rate
    frames = min(round(recipe.excerpt.seconds * rate), track.frames_at(rate))
    start = recipe.excerpt.start
    start_frame = (
        max(0, (track.frames_at(rate) - frames) // 2)
        if start is None
        else min(round(start * rate), track.frames_at(rate) - frames)
    )
    stems = read_stems(track, data_sources, max(0, start_frame), frames, rate, first.audio_channels)
    mix = stems.sum(0)
    folder = out_dir / "excerpts"
    excerpt = ExcerptFiles(
        track=track.name,
        start=round(max(0, start_frame) / rate, 3),
        seconds=round(frames / rate, 3),
        sample_rate=rate,
        mixture=_write_wav(folder / "mixture.wav", mix, rate, out_dir),
        reference={
            s: _write_wav(folder / "reference" / f"{s}.wav", stems[i], rate, out_dir)
            for i, s in enumerate(data_sources)
        },
        systems={},
    )
    for system in systems:
        model = load_separator(system.runs[0].spec or system.model).eval()
        references = stems[[data_sources.index(s) for s in model.sources]] if model.needs_references else None
        with torch.no_grad():
            estimates = apply_model(
                model, mix, references=references, batch_size=recipe.eval.batch_size, tta=recipe.eval.tta
            )
        excerpt.systems[system.label] = {
            s: _write_wav(folder / system.label / f"{s}.wav", estimates[i], rate, out_dir)
            for i, s in enumerate(model.sources)
        }
    return excerpt


def _excerpt_track(recipe: ComparisonRecipe, tracks: list[Any]) -> Any:
    wanted = recipe.excerpt.track
    if wanted is None:
        return tracks[0]
    for track in tracks:
        if track.name == wanted:
            return track
    raise SepzooError(f"{recipe.path}: excerpt.track {wanted!r} is not among the scored tracks")


def _write_wav(path: Path, audio: Any, rate: int, out_dir: Path) -> str:
    """A 16-bit excerpt (samples beyond full scale clamped); its path relative to ``out_dir``."""
    from sepzoo.io.audio import write_audio

    write_audio(path, audio, rate, subtype="PCM_16", clip_mode="clamp")
    return _relative(path, out_dir)


def _relative(path: Path, root: Path | None = None) -> str:
    base = (root or Path.cwd()).resolve()
    try:
        return str(Path(path).resolve().relative_to(base))
    except ValueError:
        return str(path)


def _cell(summary: ScoreSummary) -> str:
    if summary.estimate is None:
        return "n/a"
    if summary.low is None or summary.high is None:
        return f"{summary.estimate:6.2f}"
    return f"{summary.estimate:6.2f} [{summary.low:6.2f}, {summary.high:6.2f}]"


def format_comparison(comparison: Comparison) -> str:
    """The comparison as a terminal table: per metric, one row per system and one column per source.

    Args:
        comparison: The comparison.
    """
    sources = comparison.sources
    lines = []
    if comparison.toy:
        lines.append("TOY DATA: a smoke test of the machinery, not evidence about the domains.")
    confidence = round(100 * comparison.confidence)
    for metric, label in (comparison.metrics or METRIC_LABELS).items():
        lines.append(f"{metric}: {label} (dB, {confidence}% bootstrap interval over tracks)")
        header = ["system", "domain", *sources]
        rows = [
            [system.label, system.domain, *[_cell(system.summary_of(metric, s)) for s in sources]]
            for system in comparison.systems
        ]
        if metric == "nSDR":
            mixture = comparison.mixture.nSDR
            numbers = [mixture.get(s) for s in sources]
            rows.append(["mixture", "-", *["n/a" if v is None else f"{v:6.2f}" for v in numbers]])
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, ["-" * w for w in widths], *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        lines.append("")
    panel = [t for t in comparison.domain_panel if {t.a, t.b} == {"waveform", "spectrogram"}]
    if panel:
        lines.append(
            f"waveform vs spectrogram (per track, each domain's mean over its trained models; "
            f"Holm-adjusted Wilcoxon, alpha {comparison.alpha}):"
        )
        for test in panel:
            verdict = "significant" if test.significant else "not significant"
            difference = "n/a" if test.mean_difference is None else f"{test.mean_difference:+.2f} dB"
            lines.append(f"  {test.metric:5s} {test.source:7s} {test.a} - {test.b}: {difference} ({verdict})")
    significant = sum(1 for t in comparison.paired if t.significant)
    lines.append(
        f"paired tests between models of different domains: {significant} of "
        f"{len(comparison.paired)} significant after Holm adjustment"
    )
    if comparison.equivalence:
        lines.append(
            f"equivalence, exported - original nSDR (TOST with exact Wilcoxon tests, margin "
            f"{comparison.equivalence_margin_db:g} dB, Holm across sources, alpha {comparison.alpha}):"
        )
        for test in comparison.equivalence:
            median = "n/a" if test.median_difference is None else f"{test.median_difference:+.2f} dB"
            holm = "n/a" if test.p_holm is None else f"{test.p_holm:.3g}"
            lines.append(
                f"  {test.source:7s} {test.exported} vs {test.original}: median {median} over "
                f"{test.count} tracks, Holm p {holm}: {test.verdict}"
            )
    return "\n".join(lines).rstrip()


__all__ = [
    "METRIC_LABELS",
    "ComparisonRecipe",
    "ModelEntry",
    "format_comparison",
    "load_comparison_recipe",
    "run_comparison",
]
