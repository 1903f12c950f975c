"""``sepzoo compare``: several models on the same data, budget, seeds and metrics.

A comparison recipe (``recipes/compare/*.yaml``) names model recipes, one data set, one training
budget, the seeds and the oracles. :func:`run_comparison` trains every model and seed that has
no finished run (runs live in ``OUT/runs`` and are found by their run directory, so a second
call reuses them), scores every model and oracle on the same test tracks with ``sepzoo eval``,
and writes:

* ``OUT/comparison.json``: per system and source, cSDR and nSDR per track, their summaries with
  bootstrap intervals, the paired tests between domains and the waveform-vs-spectrogram panel
  (:func:`sepzoo.evaluation.stats.compare_systems`), and an audio excerpt through every system;
* ``OUT/table.txt``: the table printed at the end;
* a W&B summary run in the comparison's group (offline without an API key);
* ``OUT/report.html`` (:mod:`sepzoo.experiments.report`).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepzoo.errors import ConfigError, SepzooError

log = logging.getLogger(__name__)

COMPARISON_FORMAT = "sepzoo-comparison/1"
COMPARISON_FILE = "comparison.json"
METRIC_LABELS = {
    "cSDR": "BSSEval v4 SDR (museval): median over 1-s frames per track; median over tracks",
    "nSDR": "MDX 2021 SDR over the whole track; mean over tracks",
}
_TIMING_FILE = "train_seconds.json"

_TOP_KEYS = {
    "name": "the comparison's name (W&B group and folder name)",
    "description": "free text",
    "data": "root, subset, tracks, generate",
    "budget": "steps and/or minutes per model and seed",
    "seeds": "training seeds",
    "overrides": "key=value overrides applied to every model recipe",
    "models": "the model recipes",
    "oracles": "oracle names",
    "eval": "shifts, overlap, segment, batch_size, device",
    "statistics": "confidence, alpha, resamples",
    "excerpt": "track, start, seconds",
    "wandb": "project, group, mode",
    "out": "output folder",
}
_SECTION_KEYS = {
    "data": ("root", "subset", "tracks", "generate"),
    "budget": ("steps", "minutes"),
    "eval": ("shifts", "overlap", "segment", "batch_size", "device"),
    "statistics": ("confidence", "alpha", "resamples"),
    "excerpt": ("track", "start", "seconds"),
    "wandb": ("project", "group", "mode"),
}
_GENERATE_KEYS = ("tracks", "test_tracks", "seconds", "seed")
_MODEL_KEYS = ("recipe", "members", "label", "overrides")


@dataclass(frozen=True)
class ModelEntry:
    """One model of a comparison: a training recipe, or one-target recipes joined into a bag.

    Args:
        label: Its unique name in the comparison (tables, file names, W&B run names).
        model: The registry name of the architecture its recipes train.
        recipes: The training recipe, or one recipe per member of a bag (e.g. Band-split RNN,
            one model per target, as its paper trains it).
        overrides: ``key=value`` overrides for this model alone.
    """

    label: str
    model: str
    recipes: tuple[Path, ...]
    overrides: tuple[str, ...] = ()

    @property
    def is_bag(self) -> bool:
        """True when the model is a bag of several trained members."""
        return len(self.recipes) > 1


@dataclass(frozen=True)
class ComparisonRecipe:
    """A validated comparison recipe.

    Args:
        name: The comparison's name.
        path: The recipe file.
        models: The model recipes.
        oracles: Oracle model names.
        seeds: Training seeds.
        root: The data set root.
        subset: The subset every system is scored on.
        tracks: Score only the first N tracks (``None``: all).
        generate: Settings of the toy set to generate when ``root`` does not exist, or ``None``.
        steps: Training steps per model and seed, or ``None``.
        minutes: Wall-clock training minutes per model and seed, or ``None``.
        overrides: Overrides applied to every model recipe.
        eval: ``sepzoo eval`` engine settings.
        confidence: Coverage of the intervals.
        alpha: Significance level.
        resamples: Bootstrap resamples.
        excerpt: ``track``, ``start`` and ``seconds`` of the audio excerpt.
        wandb: ``project``, ``group`` and ``mode``.
        out: The output folder.
        text: The resolved recipe as YAML.
    """

    name: str
    path: Path
    models: list[ModelEntry]
    oracles: list[str]
    seeds: list[int]
    root: Path
    subset: str
    tracks: int | None
    generate: dict[str, Any] | None
    steps: int | None
    minutes: float | None
    overrides: list[str]
    eval: dict[str, Any]
    confidence: float
    alpha: float
    resamples: int
    excerpt: dict[str, Any]
    wandb: dict[str, Any]
    out: Path
    text: str = field(repr=False, default="")

    def budget(self) -> dict[str, Any]:
        """The training budget as recorded in ``comparison.json``."""
        budget: dict[str, Any] = {}
        if self.steps is not None:
            budget["steps"] = self.steps
        if self.minutes is not None:
            budget["minutes"] = self.minutes
        return budget

    def budget_overrides(self) -> list[str]:
        """The trainer overrides that impose the budget on every model."""
        overrides = []
        if self.steps is not None:
            overrides.append(f"trainer.max_steps={self.steps}")
        if self.minutes is not None:
            total = round(self.minutes * 60)
            days, rest = divmod(total, 86400)
            overrides.append(
                f"trainer.max_time={days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
            )
        return overrides


def load_comparison_recipe(path: str | Path, overrides: list[str] | None = None) -> ComparisonRecipe:
    """Read and check a comparison recipe.

    Model recipe paths are relative to the comparison recipe's folder; ``data.root`` and ``out``
    to the working directory. Every model recipe is loaded with its overrides, so a typo in any
    of them fails here, before anything is trained.

    Args:
        path: The comparison recipe YAML.
        overrides: ``key=value`` overrides of the comparison recipe. (Default: none)

    Raises:
        ConfigError: One line naming the file, the key and what was expected.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: comparison recipe not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of comparison settings")
    try:
        config = OmegaConf.merge(OmegaConf.create(loaded), OmegaConf.from_dotlist(list(overrides or [])))
        data = OmegaConf.to_container(config, resolve=True)
    except (OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    assert isinstance(data, dict)
    recipe = _Checker(path, data).recipe()
    object.__setattr__(recipe, "text", yaml.safe_dump(data, sort_keys=False))
    return recipe


class _Checker:
    """Turns the plain values of a comparison recipe into a :class:`ComparisonRecipe`."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    def section(self, key: str) -> dict[str, Any]:
        value = self.data.get(key) or {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        self.known(value, _SECTION_KEYS[key], key)
        return value

    def known(self, mapping: dict[str, Any], keys: tuple[str, ...] | dict[str, str], where: str) -> None:
        from sepzoo.registry import suggestion

        for key in mapping:
            if key not in keys:
                dotted = f"{where}.{key}" if where else key
                raise ConfigError(
                    f"{self.path}: unknown key {dotted!r}{suggestion(str(key), list(keys))} "
                    f"(valid: {', '.join(keys)})"
                )

    def number(self, key: str, value: Any, kind: type, low: float, high: float | None = None) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            raise self.fail(key, f"expected {'a number' if kind is float else 'an integer'}, got {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise self.fail(key, f"expected a value {bounds}, got {value!r}")
        return kind(value)

    def strings(self, key: str, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"expected a list of strings, got {value!r}")
        return list(value)

    def recipe(self) -> ComparisonRecipe:
        self.known(self.data, _TOP_KEYS, "")
        name = self.data.get("name") or self.path.stem
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise self.fail("name", f"expected letters, digits, '-' and '_', got {name!r}")
        data = self.section("data")
        if not isinstance(data.get("root"), str) or data["root"] == "???":
            raise self.fail(
                "data.root", "expected the data set root folder (override it: data.root=/path/to/data)"
            )
        generate = data.get("generate")
        if generate is not None:
            if not isinstance(generate, dict):
                raise self.fail("data.generate", f"expected a mapping, got {generate!r}")
            self.known(generate, _GENERATE_KEYS, "data.generate")
        tracks = data.get("tracks")
        if tracks is not None:
            tracks = self.number("data.tracks", tracks, int, 1)
        budget = self.section("budget")
        steps = budget.get("steps")
        minutes = budget.get("minutes")
        if steps is None and minutes is None:
            raise self.fail("budget", "expected steps, minutes or both (the same for every model)")
        seeds = self.data.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
            raise self.fail("seeds", f"expected a non-empty list of integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise self.fail("seeds", f"expected distinct seeds, got {seeds}")
        evaluation = {"shifts": 0, "overlap": 0.25, "segment": None, "batch_size": 4, "device": "cpu"}
        evaluation.update(self.section("eval"))
        statistics = {"confidence": 0.95, "alpha": 0.05, "resamples": 10000}
        statistics.update(self.section("statistics"))
        excerpt = {"track": None, "start": None, "seconds": 6.0}
        excerpt.update(self.section("excerpt"))
        wandb = {"project": "sepzoo", "group": None, "mode": "auto"}
        wandb.update(self.section("wandb"))
        wandb["group"] = wandb["group"] or name
        if wandb["mode"] not in ("auto", "online", "offline", "disabled"):
            raise self.fail(
                "wandb.mode", f"expected auto, online, offline or disabled, got {wandb['mode']!r}"
            )
        models = self.models(data["root"])
        oracles = self.oracles(models)
        if not models and not oracles:
            raise self.fail("models", "expected at least one model recipe or oracle")
        return ComparisonRecipe(
            name=name,
            path=self.path,
            models=models,
            oracles=oracles,
            seeds=seeds,
            root=Path(data["root"]),
            subset=str(data.get("subset", "test")),
            tracks=tracks,
            generate=generate,
            steps=None if steps is None else self.number("budget.steps", steps, int, 1),
            minutes=None if minutes is None else self.number("budget.minutes", minutes, float, 0.05),
            overrides=self.strings("overrides", self.data.get("overrides")),
            eval=evaluation,
            confidence=self.number("statistics.confidence", statistics["confidence"], float, 0.5, 0.999),
            alpha=self.number("statistics.alpha", statistics["alpha"], float, 0.0001, 0.5),
            resamples=self.number("statistics.resamples", statistics["resamples"], int, 100),
            excerpt={
                **excerpt,
                "seconds": self.number("excerpt.seconds", excerpt["seconds"], float, 0.5, 60),
            },
            wandb=wandb,
            out=Path(self.data.get("out") or Path("runs") / "compare" / name),
        )

    def models(self, root: str) -> list[ModelEntry]:
        entries = self.data.get("models") or []
        if not isinstance(entries, list):
            raise self.fail("models", f"expected a list of model recipes, got {entries!r}")
        models: list[ModelEntry] = []
        for index, entry in enumerate(entries):
            model = self.model(
                f"models[{index}]", {"recipe": entry} if isinstance(entry, str) else entry, root
            )
            if any(m.label == model.label for m in models):
                raise self.fail(
                    f"models[{index}].label",
                    f"{model.label!r} is already used; give each model its own label",
                )
            models.append(model)
        return models

    def model(self, where: str, entry: Any, root: str) -> ModelEntry:
        from sepzoo.training.recipe import load_recipe

        if not isinstance(entry, dict) or ("recipe" in entry) == ("members" in entry):
            raise self.fail(
                where, f"expected a recipe path, or a mapping with `recipe` or `members`, got {entry!r}"
            )
        self.known(entry, _MODEL_KEYS, where)
        key = "recipe" if "recipe" in entry else "members"
        names = [entry["recipe"]] if key == "recipe" else entry["members"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise self.fail(f"{where}.{key}", f"expected recipe paths, got {names!r}")
        extra = self.strings(f"{where}.overrides", entry.get("overrides"))
        common = self.strings("overrides", self.data.get("overrides"))
        paths, loaded = [], []
        for name in names:
            path = (self.path.parent / name).resolve()
            if not path.is_file():
                raise self.fail(f"{where}.{key}", f"{path} does not exist")
            paths.append(path)
            loaded.append(load_recipe(path, [*common, *extra, f"data.root={root}"]))
        if len({r.model.name for r in loaded}) > 1:
            raise self.fail(f"{where}.members", "expected members of one architecture (one per target)")
        label = entry.get("label") or loaded[0].model.name
        if not isinstance(label, str) or not label.replace("-", "").replace("_", "").isalnum():
            raise self.fail(f"{where}.label", f"expected letters, digits, '-' and '_', got {label!r}")
        return ModelEntry(label, loaded[0].model.name, tuple(paths), tuple(extra))

    def oracles(self, models: list[ModelEntry]) -> list[str]:
        from sepzoo.models import get_model_class, list_models
        from sepzoo.registry import suggestion

        oracles = self.strings("oracles", self.data.get("oracles"))
        for name in oracles:
            if name not in list_models():
                raise self.fail(
                    "oracles", f"{name!r} is not a registered model{suggestion(name, list_models())}"
                )
            if get_model_class(name).domain != "oracle":
                raise self.fail(
                    "oracles", f"{name!r} is a trained model, not an oracle; list it under models"
                )
            if any(m.label == name for m in models):
                raise self.fail("oracles", f"{name!r} is also a model label")
        return oracles


@dataclass
class _System:
    """A model or oracle of the comparison, and where its runs and scores are."""

    label: str
    model: str
    domain: str
    kind: str
    recipe: str | None = None
    parameters: int | None = None
    config: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


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
    recipe = load_comparison_recipe(recipe_path, overrides)
    out_dir = Path(out) if out is not None else recipe.out
    _prepare_data(recipe)
    _check_out(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from sepzoo.io.atomic import write_text_atomic

    write_text_atomic(out_dir / "recipe.yaml", recipe.text)
    command = " ".join(["sepzoo", "compare", str(recipe_path), *(overrides or [])])
    systems = [_train_model(recipe, entry, out_dir, force) for entry in recipe.models]
    systems += [_oracle(name) for name in recipe.oracles]
    log.info("\ncompare: scoring %d systems on %s", len(systems), _subset_name(recipe))
    summaries = [_evaluate(recipe, system, out_dir, force) for system in systems]
    comparison = _json_safe(_assemble(recipe, systems, summaries, command))
    comparison["excerpt"] = _write_excerpts(recipe, systems, out_dir)
    from sepzoo.io.atomic import write_json_atomic

    table = format_comparison(comparison)
    write_text_atomic(out_dir / "table.txt", table + "\n")
    from sepzoo.experiments.wandb_summary import log_comparison

    comparison["wandb"]["summary_dir"] = log_comparison(comparison, out_dir)
    write_json_atomic(out_dir / COMPARISON_FILE, comparison)
    report_path = None
    if report:
        from sepzoo.experiments.report import write_report

        report_path = write_report([out_dir], out_dir / "report.html", force=True)
    log.info("\n%s\n", table)
    log.info("comparison: %s", out_dir / COMPARISON_FILE)
    if report_path is not None:
        log.info("report:     %s", report_path)
    if comparison["wandb"]["summary_dir"]:
        wandb = comparison["wandb"]
        log.info(
            "W&B group:  %s (project %s); summary run in %s",
            wandb["group"],
            wandb["project"],
            wandb["summary_dir"],
        )
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
    generate_toy_musdb(recipe.root, progress=True, **recipe.generate)


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


def _train_model(recipe: ComparisonRecipe, entry: ModelEntry, out_dir: Path, force: bool) -> _System:
    """Train every seed (and member) of one model that has no finished run; describe the system."""
    from sepzoo.models import create_model, get_model_class
    from sepzoo.training.recipe import load_recipe

    system = _System(
        label=entry.label,
        model=entry.model,
        domain=get_model_class(entry.model).domain,
        kind="trained",
        recipe=", ".join(_relative(path) for path in entry.recipes),
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
        run: dict[str, Any] = {"seed": seed, **members[0]}
        if entry.is_bag:
            run = {
                "seed": seed,
                "run_dir": None,
                "members": [m["run_dir"] for m in members],
                "spec": str(_make_bag(entry, members, out_dir, seed, force)),
                "steps": [m["steps"] for m in members],
                "train_seconds": _total([m["train_seconds"] for m in members]),
                "wandb_dir": None,
            }
        system.runs.append(run)
    return system


def _train_run(
    entry: ModelEntry, path: Path, overrides: list[str], plan: Any, force: bool, seed: int
) -> dict[str, Any]:
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
    return {
        "run_dir": str(run_dir),
        "spec": str(run_dir),
        "steps": done.get("global_step"),
        "train_seconds": json.loads(timing.read_text()).get("seconds") if timing.is_file() else None,
        "wandb_dir": str(wandb_dir) if wandb_dir.is_dir() else None,
    }


def _total(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(sum(values), 1)  # type: ignore[arg-type]


def _make_bag(
    entry: ModelEntry, members: list[dict[str, Any]], out_dir: Path, seed: int, force: bool
) -> Path:
    """Join the members' trained weights into one model file (each source from its own member)."""
    from sepzoo import DEFAULT_SOURCES
    from sepzoo.models.bag import BagOfModels
    from sepzoo.models.files import load_separator, save_model_file
    from sepzoo.training.rundir import DONE_MARKER

    path = out_dir / "bags" / f"{entry.label}-seed{seed}.sepzoo"
    newest = max(Path(m["run_dir"]).joinpath(DONE_MARKER).stat().st_mtime for m in members)
    if path.is_file() and not force and path.stat().st_mtime >= newest:
        return path
    models = [load_separator(m["run_dir"]) for m in members]
    estimated = {s for model in models for s in model.sources}
    order = [s for s in DEFAULT_SOURCES if s in estimated] + sorted(estimated - set(DEFAULT_SOURCES))
    bag = BagOfModels(models, sources=order)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model_file(bag, path, metadata={"members": [m["run_dir"] for m in members]}, force=True)


def _train_overrides(
    recipe: ComparisonRecipe, entry: ModelEntry, domain: str, path: Path, out_dir: Path, seed: int
) -> list[str]:
    """The overrides that put one recipe and seed into the comparison: budget, data, run, W&B."""
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
        f"logger.project={recipe.wandb['project']}",
        f"logger.group={recipe.wandb['group']}",
        f"logger.tags=[{','.join(dict.fromkeys(tags))}]",
        *(
            ["logger.name=csv"]
            if recipe.wandb["mode"] == "disabled"
            else [f"logger.mode={recipe.wandb['mode']}"]
        ),
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


def _oracle(name: str) -> _System:
    return _System(label=name, model=name, domain="oracle", kind="oracle", runs=[{"seed": None}])


def _evaluate(recipe: ComparisonRecipe, system: _System, out_dir: Path, force: bool) -> list[dict[str, Any]]:
    """Score every run of a system (one per seed; one for an oracle); returns their summaries."""
    from sepzoo.evaluation.evaluate import evaluate

    summaries = []
    for run in system.runs:
        spec = run.get("spec") or system.model
        identity = json.dumps([str(spec), str(recipe.root.resolve()), recipe.subset, recipe.eval])
        digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
        seed = "" if run["seed"] is None else f"-seed{run['seed']}"
        eval_dir = out_dir / "evals" / f"{system.label}{seed}-{digest}"
        log.info("compare: scoring %s%s", system.label, seed.replace("-", " "))
        summary = evaluate(
            str(spec),
            recipe.root,
            recipe.subset,
            eval_dir,
            max_tracks=recipe.tracks,
            shifts=recipe.eval["shifts"],
            overlap=recipe.eval["overlap"],
            segment=recipe.eval["segment"],
            batch_size=recipe.eval["batch_size"],
            device=recipe.eval["device"],
            force=force,
        )
        run["eval_dir"] = _relative(eval_dir, out_dir)
        summaries.append(summary)
    return summaries


def _assemble(
    recipe: ComparisonRecipe,
    systems: list[_System],
    summaries: list[list[dict[str, Any]]],
    command: str,
) -> dict[str, Any]:
    """The content of ``comparison.json`` (without the excerpt)."""
    import sepzoo
    from sepzoo import DEFAULT_SOURCES
    from sepzoo.evaluation.stats import STATISTIC_OF_METRIC, compare_systems

    tracks = list(summaries[0][0]["per_track"])
    sources = [s for s in DEFAULT_SOURCES if any(s in runs[0]["sources"] for runs in summaries)]
    sources += [s for runs in summaries for s in runs[0]["sources"] if s not in sources]
    entries = []
    for system, runs in zip(systems, summaries):
        entry = dataclasses.asdict(system)
        entry["per_track"], entry["per_seed"] = _scores(runs, tracks, sources)
        entries.append(entry)
    statistics = compare_systems(entries, sources, recipe.confidence, recipe.alpha, recipe.resamples)
    first = summaries[0][0]
    return {
        "format": COMPARISON_FORMAT,
        "name": recipe.name,
        "recipe": _relative(recipe.path),
        "recipe_text": recipe.text,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "sepzoo_version": sepzoo.__version__,
        "toy": bool(first.get("toy")),
        "dataset": {"root": str(recipe.root), "subset": recipe.subset, "tracks": tracks},
        "sources": sources,
        "budget": recipe.budget(),
        "seeds": recipe.seeds,
        "confidence": recipe.confidence,
        "alpha": recipe.alpha,
        "metrics": METRIC_LABELS,
        "statistic": STATISTIC_OF_METRIC,
        "systems": entries,
        "mixture": {"nSDR": {s: first.get("mixture_nSDR", {}).get(s) for s in sources}},
        **statistics,
        "wandb": {"group": recipe.wandb["group"], "project": recipe.wandb["project"], "summary_dir": None},
    }


def _scores(
    runs: list[dict[str, Any]], tracks: list[str], sources: list[str]
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[float]]]]:
    """Per-track scores (mean over seeds) and per-seed summaries of one system."""
    import statistics

    from sepzoo.evaluation.scores import nan_aggregate
    from sepzoo.evaluation.stats import STATISTIC_OF_METRIC

    fields = {"cSDR": "SDR", "nSDR": "nSDR"}
    per_track: dict[str, dict[str, list[float]]] = {}
    per_seed: dict[str, dict[str, list[float]]] = {}
    for metric, key in fields.items():
        per_track[metric], per_seed[metric] = {}, {}
        for source in sources:
            table = [
                [_number(run["per_track"].get(track, {}).get(key, {}).get(source)) for track in tracks]
                for run in runs
            ]
            per_track[metric][source] = [nan_aggregate(column, statistics.fmean) for column in zip(*table)]
            reduce = statistics.median if STATISTIC_OF_METRIC[metric] == "median" else statistics.fmean
            per_seed[metric][source] = [nan_aggregate(row, reduce) for row in table]
    return per_track, per_seed


def _number(value: Any) -> float:
    """A score rounded as museval's JSON stores it, so resumed and fresh scores agree exactly."""
    return math.nan if value is None else round(float(value), 5)


def _write_excerpts(recipe: ComparisonRecipe, systems: list[_System], out_dir: Path) -> dict[str, Any]:
    """The same few seconds of one test track: mixture, reference stems, and every system's stems."""
    import torch

    from sepzoo.data.tracks import read_stems
    from sepzoo.engine.apply import apply_model
    from sepzoo.evaluation.evaluate import find_tracks, mixture_sources
    from sepzoo.models.files import load_separator

    first = load_separator(systems[0].runs[0].get("spec") or systems[0].model)
    data_sources = mixture_sources(list(first.sources))
    tracks = find_tracks(recipe.root, recipe.subset, data_sources)[: recipe.tracks or None]
    track = _excerpt_track(recipe, tracks)
    rate = first.sample_rate
    frames = min(round(recipe.excerpt["seconds"] * rate), track.frames_at(rate))
    start = recipe.excerpt["start"]
    start_frame = (
        max(0, (track.frames_at(rate) - frames) // 2)
        if start is None
        else min(round(start * rate), track.frames_at(rate) - frames)
    )
    stems = read_stems(track, data_sources, max(0, start_frame), frames, rate, first.audio_channels)
    mix = stems.sum(0)
    folder = out_dir / "excerpts"
    excerpt: dict[str, Any] = {
        "track": track.name,
        "start": round(max(0, start_frame) / rate, 3),
        "seconds": round(frames / rate, 3),
        "sample_rate": rate,
        "mixture": _write_wav(folder / "mixture.wav", mix, rate, out_dir),
        "reference": {
            s: _write_wav(folder / "reference" / f"{s}.wav", stems[i], rate, out_dir)
            for i, s in enumerate(data_sources)
        },
        "systems": {},
    }
    for system in systems:
        model = load_separator(system.runs[0].get("spec") or system.model).eval()
        references = stems[[data_sources.index(s) for s in model.sources]] if model.needs_references else None
        with torch.no_grad():
            estimates = apply_model(model, mix, references=references, batch_size=recipe.eval["batch_size"])
        excerpt["systems"][system.label] = {
            s: _write_wav(folder / system.label / f"{s}.wav", estimates[i], rate, out_dir)
            for i, s in enumerate(model.sources)
        }
    return excerpt


def _excerpt_track(recipe: ComparisonRecipe, tracks: list[Any]) -> Any:
    wanted = recipe.excerpt["track"]
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


def _json_safe(value: Any) -> Any:
    """NaN and infinities as ``null``: JSON has no NaN."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return _json_safe(value.item())
    return value


def _cell(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("estimate") is None:
        return "n/a"
    return f"{summary['estimate']:6.2f} [{summary['low']:6.2f}, {summary['high']:6.2f}]"


def format_comparison(comparison: dict[str, Any]) -> str:
    """The comparison as a terminal table: per metric, one row per system and one column per source.

    Args:
        comparison: The content of ``comparison.json``.
    """
    sources = comparison["sources"]
    lines = []
    if comparison.get("toy"):
        lines.append("TOY DATA: a smoke test of the machinery, not evidence about the domains.")
    confidence = round(100 * comparison["confidence"])
    for metric, label in comparison["metrics"].items():
        lines.append(f"{metric}: {label} (dB, {confidence}% bootstrap interval over tracks)")
        header = ["system", "domain", *sources]
        rows = [
            [system["label"], system["domain"], *[_cell(system["summary"][metric].get(s)) for s in sources]]
            for system in comparison["systems"]
        ]
        if metric == "nSDR":
            mixture = comparison["mixture"]["nSDR"]
            rows.append(
                [
                    "mixture",
                    "-",
                    *["n/a" if mixture.get(s) is None else f"{mixture[s]:6.2f}" for s in sources],
                ]
            )
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, ["-" * w for w in widths], *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        lines.append("")
    panel = [t for t in comparison.get("domain_panel", []) if {t["a"], t["b"]} == {"waveform", "spectrogram"}]
    if panel:
        lines.append(
            f"waveform vs spectrogram (per track, each domain's mean over its trained models; "
            f"Holm-adjusted Wilcoxon, alpha {comparison['alpha']}):"
        )
        for test in panel:
            verdict = "significant" if test["significant"] else "not significant"
            difference = "n/a" if test["mean_difference"] is None else f"{test['mean_difference']:+.2f} dB"
            lines.append(
                f"  {test['metric']:5s} {test['source']:7s} {test['a']} - {test['b']}: "
                f"{difference} ({verdict})"
            )
    significant = sum(1 for t in comparison.get("paired", []) if t["significant"])
    lines.append(
        f"paired tests between models of different domains: {significant} of "
        f"{len(comparison.get('paired', []))} significant after Holm adjustment"
    )
    return "\n".join(lines).rstrip()
