"""Comparison recipes (``recipes/compare/*.yaml``): declared once, checked at the edge.

A comparison recipe names model recipes, one data set, one training budget, the seeds and the
oracles::

    name: toy_wave_vs_spec
    data: {root: data/toy-compare, generate: {tracks: 12, test_tracks: 10, seconds: 6}}
    budget: {minutes: 2, steps: 400}
    seeds: [0]
    models:
      - ../toy/demucs.yaml
      - {label: bsrnn, members: [../toy/bsrnn_drums.yaml, ../toy/bsrnn_vocals.yaml]}
    oracles: [irm2, ibm2]

A model may also be ready-made, ``{label: umx-int8, path: exports/umx-int8}``: a model file, a run
directory or an exported folder (``sepzoo export-onnx``), scored as it is and never trained. An
exported folder is tested for equivalence with the system it was exported from (see
``statistics.equivalence_margin_db`` and ``statistics.equivalence``).

Its shape is a pydantic model (:class:`ComparisonFile` and its sections) checked by
:func:`sepzoo.schema.validate`: an unknown key, a missing one or a value of the wrong type fails
in one line naming the file, the dotted key and the closest valid key. What a shape cannot say
is checked after it, in the same one-line form: the model recipes exist and load with their
overrides, labels are unique, and oracles are registered oracles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from sepzoo.errors import ConfigError, suggestion
from sepzoo.experiments.records import Budget
from sepzoo.schema import StrictModel, expect, validate


def _is_label(text: str) -> bool:
    return bool(text) and text.replace("-", "").replace("_", "").isalnum()


def _at_least(low: float) -> AfterValidator:
    return expect(lambda v: v >= low, f"a value >= {low}")


def _between(low: float, high: float) -> AfterValidator:
    return expect(lambda v: low <= v <= high, f"a value between {low} and {high}")


_Label = Annotated[str, expect(_is_label, "letters, digits, '-' and '_'")]


def _tta_names(value: Any) -> Any:
    """``eval.tta`` as a list of known names, from a comma string or a list (order and duplicates dropped)."""
    from sepzoo.engine.tta import TTA_NAMES

    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        return value  # the list[str] type reports it
    names = [item.strip() for item in items if item.strip()]
    if any(name not in TTA_NAMES for name in names):
        expected = f"augmentation names among {', '.join(TTA_NAMES)}"
        raise PydanticCustomError("expected", "expected {expected}", {"expected": expected})
    return [name for name in TTA_NAMES if name in names]


_TtaNames = Annotated[list[str], BeforeValidator(_tta_names)]
_MODEL_ENTRY = "a recipe path, or a mapping with `recipe`, `members` or `path` (one of them)"


class _Section(StrictModel):
    model_config = ConfigDict(frozen=True)


class ToySettings(_Section):
    """``data.generate``: the toy set to generate when ``data.root`` does not exist.

    Args:
        tracks: Training tracks. (Default: ``None``, the generator's default)
        test_tracks: Test tracks. (Default: ``None``, the generator's default)
        seconds: Length of each track. (Default: ``None``, the generator's default)
        seed: Random seed. (Default: ``None``, the generator's default)
    """

    model_config = ConfigDict(title="the `data.generate` section")

    tracks: Annotated[int, _at_least(1)] | None = None
    test_tracks: Annotated[int, _at_least(1)] | None = None
    seconds: Annotated[float, expect(lambda v: v > 0, "a positive number of seconds")] | None = None
    seed: int | None = None

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`sepzoo.data.toy.generate_toy_musdb` that are set."""
        return self.model_dump(exclude_none=True)


class DataSection(_Section):
    """``data``: the data set every model trains on and every system is scored on.

    Args:
        root: The data set root (relative to the working directory).
        subset: The subset every system is scored on. (Default: ``"test"``)
        tracks: Score only the first N tracks. (Default: ``None``, all)
        generate: The toy set to generate when ``root`` does not exist. (Default: ``None``)
    """

    model_config = ConfigDict(title="the `data` section")

    root: Annotated[
        str, expect(lambda v: v != "???", "the data set root folder (override it: data.root=/path/to/data)")
    ]
    subset: str = "test"
    tracks: Annotated[int, _at_least(1)] | None = None
    generate: ToySettings | None = None


class BudgetSection(_Section):
    """``budget``: the same training budget for every model and seed.

    Args:
        steps: Optimizer steps. (Default: ``None``)
        minutes: Wall-clock minutes of training. (Default: ``None``)
    """

    model_config = ConfigDict(title="the `budget` section")

    steps: Annotated[int, _at_least(1)] | None = None
    minutes: Annotated[float, _at_least(0.05)] | None = None


class EvalSection(_Section):
    """``eval``: the ``sepzoo eval`` settings every system is scored with.

    Args:
        shifts: Random test-time shifts. (Default: ``0``)
        overlap: Chunk overlap, in ``[0, 1)``. (Default: ``0.25``)
        segment: Chunk length in seconds. (Default: ``None``, each model's own)
        batch_size: Chunks per forward pass. (Default: ``4``)
        device: ``"cpu"`` or ``"cuda"``. (Default: ``"cpu"``)
        tta: Test-time augmentations every system runs with, a list of names or a comma
            string (``flip``, ``polarity``; :mod:`sepzoo.engine.tta`). (Default: none)
    """

    model_config = ConfigDict(title="the `eval` section")

    shifts: Annotated[int, _at_least(0)] = 0
    overlap: Annotated[float, expect(lambda v: 0 <= v < 1, "a fraction in [0, 1)")] = 0.25
    segment: Annotated[float, expect(lambda v: v > 0, "a positive number of seconds")] | None = None
    batch_size: Annotated[int, _at_least(1)] = 4
    device: str = "cpu"
    tta: _TtaNames = []

    def identity(self) -> dict[str, Any]:
        """The settings that name an evaluation; ``tta`` only when used, so earlier folders still resume."""
        settings = self.model_dump()
        if not settings["tta"]:
            del settings["tta"]
        return settings


_Pair = Annotated[
    list[_Label],
    expect(lambda v: len(v) == 2 and v[0] != v[1], "[exported label, original label], two different labels"),
]


class StatisticsSection(_Section):
    """``statistics``: the intervals, paired tests and equivalence tests.

    Args:
        confidence: Coverage of every interval. (Default: ``0.95``)
        alpha: Significance level. (Default: ``0.05``)
        resamples: Bootstrap resamples. (Default: ``10000``)
        equivalence_margin_db: The margin of the equivalence tests, in dB of nSDR. (Default: ``0.2``)
        equivalence: ``[exported, original]`` label pairs to test for equivalence, beside the
            exported folders paired with their source by digest. (Default: none)
    """

    model_config = ConfigDict(title="the `statistics` section")

    confidence: Annotated[float, _between(0.5, 0.999)] = 0.95
    alpha: Annotated[float, _between(0.0001, 0.5)] = 0.05
    resamples: Annotated[int, _at_least(100)] = 10000
    equivalence_margin_db: Annotated[float, expect(lambda v: v > 0, "a positive margin in dB")] = 0.2
    equivalence: list[_Pair] = []


class ExcerptSection(_Section):
    """``excerpt``: the stretch of one test track heard through every system.

    Args:
        track: The track. (Default: ``None``, the first scored)
        start: Where it starts, in seconds. (Default: ``None``, centred in the track)
        seconds: Its length. (Default: ``6.0``)
    """

    model_config = ConfigDict(title="the `excerpt` section")

    track: str | None = None
    start: Annotated[float, _at_least(0)] | None = None
    seconds: Annotated[float, _between(0.5, 60)] = 6.0


class WandbSection(_Section):
    """``wandb``: where every training run and the summary run are logged.

    Args:
        project: The W&B project. (Default: ``"sepzoo"``)
        group: The W&B group. (Default: ``None``, the comparison's name)
        mode: ``"auto"`` (online when logged in), ``"online"``, ``"offline"`` or ``"disabled"``.
            (Default: ``"auto"``)
    """

    model_config = ConfigDict(title="the `wandb` section")

    project: str = "sepzoo"
    group: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"


class ModelSpec(StrictModel):
    """One entry of ``models``: a recipe path, or this mapping.

    Args:
        recipe: The training recipe, relative to the comparison recipe's folder.
        members: Or one-target recipes joined into a bag (one model per target).
        path: Or a ready-made model, scored and not trained: a model file, a run directory or an
            exported folder, relative to the working directory.
        label: Its name in the comparison. (Default: ``None``, the architecture's name, or the
            name of ``path``)
        overrides: ``key=value`` overrides for this model alone. (Default: none)
    """

    model_config = ConfigDict(title="a model entry")

    recipe: str | None = None
    members: Annotated[list[str], expect(bool, "a non-empty list of recipe paths")] | None = None
    path: Annotated[str, expect(bool, "a model file, run directory or exported folder")] | None = None
    label: _Label | None = None
    overrides: list[str] = []

    @model_validator(mode="after")
    def _recipe_or_members(self) -> ModelSpec:
        if sum(value is not None for value in (self.recipe, self.members, self.path)) != 1:
            raise PydanticCustomError("expected", "expected {expected}", {"expected": _MODEL_ENTRY})
        return self


def _model_entry(value: Any) -> Any:
    """A bare recipe path stands for ``{recipe: PATH}``."""
    if isinstance(value, str):
        return {"recipe": value}
    if not isinstance(value, dict):
        raise PydanticCustomError("expected", "expected {expected}", {"expected": _MODEL_ENTRY})
    return value


class ComparisonFile(StrictModel):
    """A comparison recipe as written (an empty section counts as absent).

    Args:
        name: The comparison's name: W&B group and folder name. (Default: the file's stem)
        description: Free text. (Default: ``None``)
        data: The data set.
        budget: Steps and/or minutes per model and seed.
        seeds: Training seeds. (Default: ``[0]``)
        overrides: ``key=value`` overrides of every model recipe. (Default: none)
        models: The model recipes. (Default: none)
        oracles: Oracle model names. (Default: none)
        eval: ``sepzoo eval`` settings.
        statistics: Intervals and tests.
        excerpt: The audio excerpt.
        wandb: W&B logging.
        out: The output folder. (Default: ``runs/compare/<name>``)
    """

    model_config = ConfigDict(title="a comparison recipe")

    name: _Label | None = None
    description: str | None = None
    data: DataSection
    budget: Annotated[
        BudgetSection,
        expect(
            lambda b: b.steps is not None or b.minutes is not None,
            "steps, minutes or both (the same for every model)",
        ),
    ]
    seeds: Annotated[
        list[int],
        expect(bool, "a non-empty list of integers"),
        expect(lambda s: len(set(s)) == len(s), "distinct seeds"),
    ] = [0]
    overrides: list[str] = []
    models: list[Annotated[ModelSpec, BeforeValidator(_model_entry)]] = []
    oracles: list[str] = []
    eval: EvalSection = EvalSection()
    statistics: StatisticsSection = StatisticsSection()
    excerpt: ExcerptSection = ExcerptSection()
    wandb: WandbSection = WandbSection()
    out: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One model of a comparison: a training recipe, or one-target recipes joined into a bag.

    Args:
        label: Its unique name in the comparison (tables, file names, W&B run names).
        model: The registry name of the architecture its recipes train.
        recipes: The training recipe, or one recipe per member of a bag (e.g. Band-split RNN,
            one model per target, as its paper trains it).
        overrides: ``key=value`` overrides for this model alone.
        path: A ready-made model (model file, run directory or exported folder) scored as it is;
            ``recipes`` is then empty and ``model`` is ``None`` until it is loaded.
    """

    label: str
    model: str | None
    recipes: tuple[Path, ...]
    overrides: tuple[str, ...] = ()
    path: Path | None = None

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
        generate: The toy set to generate when ``root`` does not exist, or ``None``.
        steps: Training steps per model and seed, or ``None``.
        minutes: Wall-clock training minutes per model and seed, or ``None``.
        overrides: Overrides applied to every model recipe.
        eval: ``sepzoo eval`` settings.
        confidence: Coverage of the intervals.
        alpha: Significance level.
        resamples: Bootstrap resamples.
        equivalence_margin: The equivalence tests' margin in dB.
        equivalence: ``(exported, original)`` label pairs named in the recipe.
        excerpt: The audio excerpt.
        wandb: W&B logging, its group resolved.
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
    generate: ToySettings | None
    steps: int | None
    minutes: float | None
    overrides: list[str]
    eval: EvalSection
    confidence: float
    alpha: float
    resamples: int
    equivalence_margin: float
    equivalence: list[tuple[str, str]]
    excerpt: ExcerptSection
    wandb: WandbSection
    out: Path
    text: str = field(repr=False, default="")

    def budget(self) -> Budget:
        """The training budget as recorded in ``comparison.json`` (only what is set)."""
        given = {"steps": self.steps, "minutes": self.minutes}
        return Budget(**{key: value for key, value in given.items() if value is not None})

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
    given = validate(ComparisonFile, {k: v for k, v in data.items() if v is not None}, str(path))
    return _resolve(path, given, yaml.safe_dump(data, sort_keys=False))


def _fail(path: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {message}")


def _resolve(path: Path, given: ComparisonFile, text: str) -> ComparisonRecipe:
    """What the shape cannot say: the name, the model recipes and the oracles."""
    name = given.name or path.stem
    if not _is_label(name):
        raise _fail(path, "name", f"expected letters, digits, '-' and '_', got the file name {name!r}")
    models = _models(path, given)
    oracles = _oracles(path, given.oracles, models)
    if not models and not oracles:
        raise _fail(path, "models", "expected at least one model recipe or oracle")
    labels = [m.label for m in models]
    for index, (exported, original) in enumerate(given.statistics.equivalence):
        for label in (exported, original):
            if label not in labels:
                hint = suggestion(label, labels)
                raise _fail(path, f"statistics.equivalence[{index}]", f"{label!r} is not a model label{hint}")
    return ComparisonRecipe(
        name=name,
        path=path,
        models=models,
        oracles=oracles,
        seeds=list(given.seeds),
        root=Path(given.data.root),
        subset=given.data.subset,
        tracks=given.data.tracks,
        generate=given.data.generate,
        steps=given.budget.steps,
        minutes=given.budget.minutes,
        overrides=list(given.overrides),
        eval=given.eval,
        confidence=given.statistics.confidence,
        alpha=given.statistics.alpha,
        resamples=given.statistics.resamples,
        equivalence_margin=given.statistics.equivalence_margin_db,
        equivalence=[(a, b) for a, b in given.statistics.equivalence],
        excerpt=given.excerpt,
        wandb=given.wandb.model_copy(update={"group": given.wandb.group or name}),
        out=Path(given.out or Path("runs") / "compare" / name),
        text=text,
    )


def _models(path: Path, given: ComparisonFile) -> list[ModelEntry]:
    """Load every model recipe with its overrides; labels default to the architecture's name."""
    from sepzoo.training.recipe import load_recipe

    models: list[ModelEntry] = []
    for index, spec in enumerate(given.models):
        where = f"models[{index}]"
        if spec.path is not None:
            models.append(_ready_made(path, where, spec, models))
            continue
        key = "recipe" if spec.recipe is not None else "members"
        names = [spec.recipe] if spec.recipe is not None else list(spec.members or [])
        paths, loaded = [], []
        for name in names:
            recipe = (path.parent / name).resolve()
            if not recipe.is_file():
                raise _fail(path, f"{where}.{key}", f"{recipe} does not exist")
            paths.append(recipe)
            overrides = [*given.overrides, *spec.overrides, f"data.root={given.data.root}"]
            loaded.append(load_recipe(recipe, overrides))
        if len({r.model.name for r in loaded}) > 1:
            raise _fail(path, f"{where}.members", "expected members of one architecture (one per target)")
        label = spec.label or loaded[0].model.name
        if any(m.label == label for m in models):
            raise _fail(path, f"{where}.label", f"{label!r} is already used; give each model its own label")
        models.append(ModelEntry(label, loaded[0].model.name, tuple(paths), tuple(spec.overrides)))
    return models


def _ready_made(path: Path, where: str, spec: ModelSpec, models: list[ModelEntry]) -> ModelEntry:
    """A model scored as it is: it must exist; its label defaults to its file or folder name."""
    assert spec.path is not None
    model = Path(spec.path)
    if not model.exists():
        raise _fail(
            path, f"{where}.path", f"{model} does not exist (a model file, run directory or exported folder)"
        )
    if spec.overrides:
        raise _fail(
            path, f"{where}.overrides", "a ready-made model (path) is not trained; it takes no overrides"
        )
    label = spec.label or "".join(c if _is_label(c) else "-" for c in model.resolve().name)
    if any(m.label == label for m in models):
        raise _fail(path, f"{where}.label", f"{label!r} is already used; give each model its own label")
    return ModelEntry(label, None, (), (), path=model)


def _oracles(path: Path, oracles: list[str], models: list[ModelEntry]) -> list[str]:
    from sepzoo.models import get_model_class, list_models

    for name in oracles:
        if name not in list_models():
            hint = suggestion(name, list_models())
            raise _fail(path, "oracles", f"{name!r} is not a registered model{hint}")
        if get_model_class(name).domain != "oracle":
            raise _fail(path, "oracles", f"{name!r} is a trained model, not an oracle; list it under models")
        if any(m.label == name for m in models):
            raise _fail(path, "oracles", f"{name!r} is also a model label")
    return list(oracles)


__all__ = [
    "BudgetSection",
    "ComparisonFile",
    "ComparisonRecipe",
    "DataSection",
    "EvalSection",
    "ExcerptSection",
    "ModelEntry",
    "ModelSpec",
    "StatisticsSection",
    "ToySettings",
    "WandbSection",
    "load_comparison_recipe",
]
