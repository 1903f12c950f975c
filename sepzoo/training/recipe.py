"""Recipes: YAML files that describe one experiment, resolved and validated at the edge.

A recipe is read once, before anything runs::

    recipe YAML (+ the files it ``extends``) + ``key=value`` overrides
        -> OmegaConf merge and ``${...}`` interpolation (:mod:`sepzoo.training.layering`)
        -> validated plain values (:class:`Recipe`)
        -> objects (models, data modules, losses, optimizers, schedulers)

Below :func:`load_recipe`, code takes typed arguments, never config objects. The sections with
fixed keys are pydantic models (:class:`TrainOptions`, ...). Models, data sets, losses,
optimizers and schedulers are chosen by registered name (``model.name: conv_tasnet``); their
other keys are checked against a model built from the init signature of what the name stands
for. An unknown key, a missing required key or a value of the wrong type fails at once with the
key's dotted path, the file that set it and the closest valid key (see :mod:`sepzoo.schema`).

A minimal recipe::

    extends: base.yaml            # optional; paths are relative to this file
    sources: [drums, bass, other, vocals]
    model:
      name: conv_tasnet
      sources: ${sources}
      repeats: 2
    data:
      name: musdb
      root: data/musdb18
    trainer:
      max_steps: 20000
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import yaml
from pydantic import ConfigDict, PydanticUserError, create_model

from sepzoo import DEFAULT_SOURCES
from sepzoo.data import DATASETS
from sepzoo.errors import ConfigError, SepzooError, suggestion
from sepzoo.models import MODELS
from sepzoo.registry import Registry
from sepzoo.schema import StrictModel, expect, validate
from sepzoo.training.layering import (
    COMMAND_LINE,
    DEFAULTS,
    Layer,
    Layers,
    file_layers,
    first_line,
    override_layer,
)
from sepzoo.training.losses import LOSSES
from sepzoo.training.optimizers import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler

MANAGED_TRAINER_KEYS: dict[str, str] = {
    "logger": "the experiment logger is configured in the top-level `logger` section",
    "callbacks": "sepzoo adds its own callbacks (checkpoints, learning rates); see the `train` section",
    "default_root_dir": "the run directory is chosen by sepzoo; use `run.root` and `run.name`",
    "enable_checkpointing": "checkpoints are always written; use `train.checkpoint_every_n_steps`",
    "use_distributed_sampler": "sepzoo's data modules choose their own samplers",
    "plugins": "Lightning plugins cannot be described in a recipe",
}
"""Trainer arguments sepzoo sets itself, with the reason a recipe may not set them."""

RESULT_NEUTRAL_TRAINER_KEYS: tuple[str, ...] = (
    "devices",
    "num_nodes",
    "strategy",
    "accelerator",
    "enable_progress_bar",
    "log_every_n_steps",
)
"""Trainer keys that do not change what a run computes, left out of :meth:`Recipe.config_hash`."""

RESULT_NEUTRAL_TRAIN_KEYS: tuple[str, ...] = ("compile",)
"""Keys of the ``train`` section that change how fast a run computes, not what: left out of the run
hash (:func:`~sepzoo.training.rundir.run_hash`), so a run can be resumed with them changed."""

DEFAULT_TRAINER: dict[str, Any] = {
    "max_steps": 100_000,
    "accelerator": "auto",
    "devices": 1,
    "precision": "auto",
}
"""Trainer arguments a recipe starts from. ``precision: auto`` means ``16-mixed`` on CUDA and
``32-true`` elsewhere; it is resolved when the trainer is built."""

_SHARED_MODEL_KEYS: tuple[str, ...] = ("sources", "sample_rate", "audio_channels")

_REFUSED: dict[str, dict[str, str]] = {
    "loss": {"sources": "is not a recipe key: the loss gets the top-level `targets`"},
    "optimizer": {"params": "is not a recipe key: sepzoo passes the model's parameters"},
    "scheduler": {"optimizer": "is not a recipe key: sepzoo passes the optimizer"},
    "trainer": {key: f"is set by sepzoo: {why}" for key, why in MANAGED_TRAINER_KEYS.items()},
}
"""Arguments sepzoo passes itself, per section, with the reason a recipe may not set them."""

_REGISTRIES: dict[str, tuple[Registry[Any], str]] = {
    "model": (MODELS, "model"),
    "data": (DATASETS, "data set"),
    "loss": (LOSSES, "loss"),
    "optimizer": (OPTIMIZERS, "optimizer"),
    "scheduler": (SCHEDULERS, "scheduler"),
}
"""The sections that name a registered object: the registry and what messages call its entries."""


# ----------------------------------------------------------------------------------------------
# Fixed sections

_Name = Annotated[
    str,
    expect(
        lambda v: bool(v) and "/" not in v and "\\" not in v and v not in (".", ".."),
        "a non-empty name without path separators",
    ),
]
_Count = Annotated[int, expect(lambda v: v >= 0, "a non-negative integer")]
_Steps = Annotated[int, expect(lambda v: v > 0, "a positive number of steps")]
_PositiveInt = Annotated[int, expect(lambda v: v > 0, "a positive integer")]
_Positive = Annotated[float, expect(lambda v: v > 0, "a positive number")]
_Seconds = Annotated[float, expect(lambda v: v > 0, "a positive number of seconds")]
_Fraction = Annotated[float, expect(lambda v: 0 <= v < 1, "a fraction in [0, 1)")]
_Decay = Annotated[float, expect(lambda v: 0 < v < 1, "a decay in (0, 1)")]


class _Section(StrictModel):
    model_config = ConfigDict(frozen=True)


_Patterns = Annotated[tuple[str, ...], expect(lambda v: len(v) > 0, "a list of at least one glob pattern")]


class LoraOptions(_Section):
    """The ``train.lora`` section: fine-tune low-rank adapters (LoRA) instead of the weights.

    Each adapted weight ``W`` computes ``W + (alpha / rank) * B @ A`` with ``B`` starting at
    zero, so training starts from the base model's outputs; every weight of the model keeps its
    value and only the adapters train (see :mod:`sepzoo.models.lora`).

    Args:
        rank: Rank of each update. (Default: ``8``)
        alpha: The update is scaled by ``alpha / rank``. (Default: ``8.0``)
        targets: Glob patterns (``fnmatch``) over module names, e.g. ``["*.attention"]``: each
            Linear, MultiheadAttention (query, key and value projections) and convolution they
            match gets adapters; each pattern must match at least one.
    """

    model_config = ConfigDict(title="the `train.lora` section")

    rank: _PositiveInt = 8
    alpha: _Positive = 8.0
    targets: _Patterns


class TrainOptions(_Section):
    """The ``train`` section: how the training loop runs beyond what Lightning's Trainer does.

    Args:
        ema_decay: Keep an exponential moving average of the weights with this decay
            (e.g. ``0.999``) and validate and export with it. (Default: ``None``, off)
        checkpoint_every_n_steps: Also keep a checkpoint every this many optimizer steps.
            (Default: ``None``, only ``best`` and ``last``)
        audio_examples: Validation tracks whose audio and spectrograms are logged. (Default: ``2``)
        validate_every_n_steps: Validate every this many steps instead of once per epoch.
            (Default: ``None``)
        init_from: Start from the weights of this model file (converted ones included),
            training checkpoint or run directory (fine-tuning). Unlike ``--resume``, the
            optimizer, schedule and data position start afresh. (Default: ``None``)
        init_strict: Require every tensor of ``init_from`` to fit the model; ``false`` loads the
            tensors that fit by name and shape (e.g. another list of sources) and reports the
            rest. (Default: ``True``)
        freeze: Glob patterns (``fnmatch``) over parameter names, e.g. ``["encoder.*"]``: the
            parameters they match keep their values; each pattern must match at least one.
            (Default: none)
        lora: Train low-rank adapters on the modules it names, with every weight of the model
            frozen (:class:`LoraOptions`); ``train.freeze`` then has nothing left to freeze and
            is refused. Applied after ``init_from``. (Default: ``None``, off)
        compile: Run the training step's forward pass through ``torch.compile`` (the model's
            forward method, so parameter names, checkpoints, the weight average and exports are
            those of an uncompiled run; validation runs uncompiled). Its code generation needs a
            C++ compiler (``g++``, or ``$CXX``). It changes the rounding, not the arithmetic, as
            another accelerator does, so it is not part of the run hash. (Default: ``False``)
    """

    model_config = ConfigDict(title="the `train` section")

    ema_decay: _Decay | None = None
    checkpoint_every_n_steps: _Steps | None = None
    audio_examples: _Count = 2
    validate_every_n_steps: _Steps | None = None
    init_from: str | None = None
    init_strict: bool = True
    freeze: tuple[str, ...] = ()
    lora: LoraOptions | None = None
    compile: bool = False


class InferenceOptions(_Section):
    """The ``inference`` section: how whole tracks go through a model (validation, eval, separate).

    Args:
        segment: Chunk length in seconds. (Default: ``None``, the model's preferred segment)
        overlap: Fraction of each chunk shared with the next, in ``[0, 1)``. (Default: ``0.25``)
        shifts: Number of random time shifts averaged (test-time augmentation). (Default: ``0``)
        transition_power: Sharpness of the cross-fade between chunks. (Default: ``1.0``)
        batch_size: Chunks separated at once. (Default: ``4``)
        normalize: Standardize each mixture before separating and undo it after.
            (Default: ``False``)
    """

    model_config = ConfigDict(title="the `inference` section")

    segment: _Seconds | None = None
    overlap: _Fraction = 0.25
    shifts: _Count = 0
    transition_power: _Positive = 1.0
    batch_size: _PositiveInt = 4
    normalize: bool = False


class LoggerOptions(_Section):
    """The ``logger`` section: where metrics, audio examples and the config are logged.

    Args:
        name: ``"wandb"``, ``"csv"`` or ``"tensorboard"``. (Default: ``"wandb"``)
        project: Weights & Biases project. (Default: ``"sepzoo"``)
        entity: Weights & Biases team or user. (Default: ``None``, the account's default)
        group: Group runs together (e.g. one sweep). (Default: ``None``)
        tags: Free-form labels. (Default: none)
        mode: ``"online"``, ``"offline"``, ``"auto"`` (online when logged in, offline
            otherwise) or ``"disabled"`` (no W&B run; ``name: wandb`` then writes its metrics
            to CSV files). (Default: ``"auto"``)
        notes: A sentence describing the run. (Default: ``None``)
    """

    model_config = ConfigDict(title="the `logger` section")

    name: Literal["wandb", "csv", "tensorboard"] = "wandb"
    project: str = "sepzoo"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = []
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    notes: str | None = None


class RunOptions(_Section):
    """The ``run`` section: where the run directory goes.

    Args:
        root: Folder holding run directories. (Default: ``"runs"``)
        name: Run directory name before the config hash. (Default: ``None``, the recipe name)
    """

    model_config = ConfigDict(title="the `run` section")

    root: str = "runs"
    name: _Name | None = None


_FIXED_SECTIONS: dict[str, type[_Section]] = {
    "train": TrainOptions,
    "inference": InferenceOptions,
    "logger": LoggerOptions,
    "run": RunOptions,
}


class _Choice(StrictModel):
    """A section naming a registered object; its other keys are checked against that object."""

    model_config = ConfigDict(extra="allow")

    name: str


class _SchedulerChoice(_Choice):
    interval: Literal["step", "epoch"] = "step"


class _RecipeFile(StrictModel):
    """The top level of a merged recipe, before the registered names are looked up."""

    model_config = ConfigDict(title="a recipe")

    name: _Name
    seed: _Count
    sources: list[str]
    targets: list[str] | None
    sample_rate: Annotated[int, expect(lambda v: v > 0, "a positive number of Hz")]
    audio_channels: Annotated[int, expect(lambda v: v in (1, 2), "1 or 2")]
    model: _Choice
    data: _Choice
    loss: _Choice
    optimizer: _Choice
    scheduler: _SchedulerChoice
    trainer: dict[str, Any]
    train: TrainOptions
    inference: InferenceOptions
    logger: LoggerOptions
    run: RunOptions


# ----------------------------------------------------------------------------------------------
# The validated recipe


@dataclasses.dataclass(frozen=True)
class NamedSpec:
    """A registered name and the keyword arguments of what it names.

    Args:
        name: The registered name (e.g. ``"conv_tasnet"``).
        kwargs: Validated, plain keyword arguments.
    """

    name: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ParamGroupSpec:
    """One entry of ``optimizer.param_groups``: parameters chosen by name, with settings of their own.

    Args:
        params: Glob patterns (``fnmatch``) over parameter names.
        options: The group's optimizer settings (``lr``, ``weight_decay``, ...); the others are
            the optimizer's. (Default: none)
    """

    params: tuple[str, ...]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec(NamedSpec):
    """An optimizer: registered name, keyword arguments and parameter groups.

    Args:
        name: A name in :data:`~sepzoo.training.optimizers.OPTIMIZERS`.
        kwargs: Keyword arguments of the optimizer (without ``params``).
        param_groups: Parameters with settings of their own; the rest take ``kwargs``.
            (Default: none)
    """

    param_groups: tuple[ParamGroupSpec, ...] = ()


@dataclasses.dataclass(frozen=True)
class SchedulerSpec(NamedSpec):
    """A learning-rate schedule: registered name, keyword arguments and stepping interval.

    Args:
        name: A name in :data:`~sepzoo.training.optimizers.SCHEDULERS`.
        kwargs: Keyword arguments of the schedule builder.
        interval: ``"step"`` or ``"epoch"``: when the schedule advances. (Default: ``"step"``)
    """

    interval: Literal["step", "epoch"] = "step"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A validated recipe: plain, typed values only.

    Args:
        name: The recipe name (the file's stem unless the recipe sets ``name``).
        path: The recipe file (``None`` when built from a dict).
        seed: Random seed.
        sources: The data's stem names; the mixture is their sum.
        targets: The stems the model estimates, in its output order: ``sources`` unless the
            recipe names a subset (e.g. ``targets: [vocals]`` for a one-target model).
        sample_rate: Sample rate in Hz.
        audio_channels: Number of audio channels.
        model: Registered model name and init arguments.
        data: Registered data set name and init arguments.
        loss: Registered loss name and init arguments (without ``sources``).
        optimizer: Optimizer name, arguments (without ``params``) and parameter groups.
        scheduler: Learning-rate schedule.
        trainer: Lightning ``Trainer`` arguments (``precision`` may be ``"auto"``).
        train: Training loop options.
        inference: Whole-track inference options.
        logger: Experiment logger options.
        run: Run directory options.
        resolved: The whole resolved config as plain data (what ``config.yaml`` holds).
    """

    name: str
    path: Path | None
    seed: int
    sources: list[str]
    targets: list[str]
    sample_rate: int
    audio_channels: int
    model: NamedSpec
    data: NamedSpec
    loss: NamedSpec
    optimizer: OptimizerSpec
    scheduler: SchedulerSpec
    trainer: dict[str, Any]
    train: TrainOptions
    inference: InferenceOptions
    logger: LoggerOptions
    run: RunOptions
    resolved: dict[str, Any]

    def config_hash(self) -> str:
        """First 8 hex digits of the SHA-256 of the result-shaping part of the config.

        Sections that do not change what is computed (``run``, ``logger``, and the trainer's
        devices, strategy, progress bar and logging frequency) are left out, so moving a run
        to another machine or renaming its logger keeps its hash.
        """
        return config_hash(self.resolved)

    def to_yaml(self, meta: Mapping[str, Any] | None = None) -> str:
        """The resolved config as YAML, loadable again with :func:`load_recipe`.

        Args:
            meta: Run information (commit, versions, command) added as a ``meta`` section,
                which :func:`load_recipe` ignores. (Default: ``None``)
        """
        data = dict(self.resolved)
        if meta is not None:
            data["meta"] = _plain_copy(dict(meta))
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def config_hash(resolved: Mapping[str, Any]) -> str:
    """Hash a resolved config as :meth:`Recipe.config_hash` does.

    Args:
        resolved: A resolved config (``Recipe.resolved``).
    """
    kept = {k: v for k, v in resolved.items() if k not in ("run", "logger", "meta")}
    if isinstance(kept.get("trainer"), Mapping):
        kept["trainer"] = {k: v for k, v in kept["trainer"].items() if k not in RESULT_NEUTRAL_TRAINER_KEYS}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


FLOAT16_MIXED: tuple[Any, ...] = ("16-mixed", "16", 16)
"""The ``trainer.precision`` values that mean float16 automatic mixed precision."""


def resolve_precision(precision: Any, accelerator: Any = "auto", where: str = "trainer.precision") -> Any:
    """The precision a trainer runs at: ``auto`` becomes ``"16-mixed"`` on CUDA and ``"32-true"``
    elsewhere; float16 mixed precision is refused where training would run on the CPU.

    Lightning would run a ``16-mixed`` recipe on the CPU in bfloat16 instead, with a warning,
    under a run hash that says float16. The check depends on the machine, so it runs when
    training starts, not when a recipe (perhaps of a run trained elsewhere) is read.

    Args:
        precision: ``trainer.precision`` from a recipe; other values are returned as they are.
        accelerator: ``trainer.accelerator`` from a recipe. (Default: ``"auto"``)
        where: What names the key in the error message. (Default: ``"trainer.precision"``)

    Raises:
        ConfigError: ``16-mixed`` on the CPU.
    """
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if precision == "auto":
        return "16-mixed" if on_cuda else "32-true"
    on_cpu = accelerator == "cpu" or (
        accelerator == "auto" and not on_cuda and not torch.backends.mps.is_available()
    )
    if on_cpu and precision in FLOAT16_MIXED:
        raise ConfigError(
            f"{where}: {precision!r} (float16 mixed precision) needs a CUDA GPU and training would run on "
            "the CPU; use 'bf16-mixed' (bfloat16 mixed precision, which CPUs run) or '32-true'"
        )
    return precision


# ----------------------------------------------------------------------------------------------
# Signatures


class _Unresolvable(Exception):
    """A registered object whose signature cannot be turned into a schema."""


class _Arguments(StrictModel):
    """The keyword arguments of a registered class or function, built from its signature.

    Annotations naming classes a file cannot hold (a tensor, an accelerator object) are checked
    with ``isinstance``, so only the plain alternatives they allow are accepted."""

    model_config = ConfigDict(arbitrary_types_allowed=True)


def _qualified(target: Any) -> str:
    kind = "class" if isinstance(target, type) else "function"
    return f"{kind} {target.__module__}.{target.__qualname__}"


def _parameters(target: Any) -> dict[str, tuple[Any, bool]]:
    """The keyword parameters of a class's ``__init__`` (walking base classes through
    ``**kwargs``) or of a function after its first argument: name -> (annotation, required).

    Annotations are resolved with :func:`typing.get_type_hints` in the module that defines each
    function, so string annotations (``from __future__ import annotations``) mean what they
    mean there; an unannotated parameter takes any value.
    """
    functions = [target]
    if isinstance(target, type):
        functions = []
        for cls in target.__mro__:
            if "__init__" not in cls.__dict__:
                continue
            if cls is not target and cls.__module__.split(".")[0] in ("builtins", "torch", "lightning"):
                break
            functions.append(cls.__dict__["__init__"])
            if not _has_var_keyword(cls.__dict__["__init__"]):
                break
    found: dict[str, tuple[Any, bool]] = {}
    for function in functions:
        try:
            hints = typing.get_type_hints(function, include_extras=True)
        except Exception as exc:  # whatever evaluating the callee's own annotations raised
            raise _Unresolvable(
                f"{_qualified(target)} has an annotation that does not resolve "
                f"({type(exc).__name__}: {first_line(exc)})"
            ) from None
        # The first parameter is ``self``, or what sepzoo passes a builder (the optimizer).
        for name, param in list(inspect.signature(function).parameters.items())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in found:
                continue
            found[name] = (hints.get(name, Any), param.default is inspect.Parameter.empty)
    return found


def _has_var_keyword(function: Any) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(function).parameters.values())


@functools.cache
def _arguments_model(target: Any, title: str, named: bool, leave_out: frozenset[str]) -> type[_Arguments]:
    """A model of the keyword arguments ``target`` takes from a recipe section.

    Args:
        target: The registered class or function.
        title: How messages call the section's target (``model 'conv_tasnet'``).
        named: Whether the section also holds the registered ``name``.
        leave_out: Parameters a recipe may not set (sepzoo passes them).
    """
    fields: dict[str, Any] = {"name": (str, ...)} if named else {}
    for key, (annotation, required) in _parameters(target).items():
        if key not in leave_out:
            fields[key] = (annotation, ... if required else None)
    try:
        return create_model(
            f"{target.__name__}Arguments", __base__=_Arguments, __cls_kwargs__={"title": title}, **fields
        )
    except PydanticUserError as exc:
        raise _Unresolvable(
            f"{_qualified(target)} has an annotation that cannot be checked ({first_line(exc)})"
        ) from None


@functools.cache
def _optimizer_model(target: Any, arguments: type[_Arguments], name: str) -> type[_Arguments]:
    """The optimizer section's model: the optimizer's arguments and ``param_groups``, each group
    holding ``params`` (glob patterns) and any of the optimizer's arguments."""
    options = {
        key: (annotation, None) for key, (annotation, _) in _parameters(target).items() if key != "params"
    }
    group = create_model(
        f"{target.__name__}Group",
        __base__=_Arguments,
        __cls_kwargs__={"title": f"a parameter group of optimizer {name!r}"},
        params=(_Patterns, ...),
        **options,
    )
    return create_model(f"{target.__name__}Section", __base__=arguments, param_groups=(list[group], []))


@functools.cache
def _sections_model(**sections: type[_Arguments]) -> type[StrictModel]:
    return create_model("RecipeSections", __base__=StrictModel, **{k: (v, ...) for k, v in sections.items()})


# ----------------------------------------------------------------------------------------------
# Loading


def _default_layer() -> Layer:
    values: dict[str, Any] = {
        "seed": 0,
        "sources": list(DEFAULT_SOURCES),
        "targets": None,
        "sample_rate": 44100,
        "audio_channels": 2,
        "loss": {"name": "l1"},
        "optimizer": {"name": "adam", "lr": 3e-4},
        "scheduler": {"name": "none", "interval": "step"},
        "trainer": dict(DEFAULT_TRAINER),
    }
    for section, options in _FIXED_SECTIONS.items():
        values[section] = options().model_dump()
    return Layer(DEFAULTS, values)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read, merge, resolve and validate a recipe.

    Args:
        path: The recipe YAML file.
        overrides: ``key=value`` strings applied last (dotted keys, YAML values, e.g.
            ``trainer.max_steps=10`` or ``model.sources=[drums,bass]``). (Default: none)

    Raises:
        ConfigError: With the file, the key's dotted path and what was expected, if the recipe
            is missing, malformed or invalid.
    """
    path = Path(path).expanduser()
    files = file_layers(path)
    leaf = files[-1]
    layers = Layers(
        [
            _default_layer(),
            *files[:-1],
            # The name comes from the recipe file itself, never from a base it extends.
            Layer(leaf.origin, {"name": path.stem}),
            leaf,
            override_layer(overrides),
        ]
    )
    return _Validator(layers).validate(layers.merge(), path)


def recipe_from_dict(
    config: Mapping[str, Any], origin: str = "config", overrides: Sequence[str] = ()
) -> Recipe:
    """Validate a config given as data (e.g. the resolved recipe saved in a checkpoint).

    Args:
        config: The recipe as nested plain data.
        origin: Where it came from, for error messages. (Default: ``"config"``)
        overrides: ``key=value`` strings applied last. (Default: none)

    Raises:
        ConfigError: If the config is invalid.
    """
    values = _plain_copy(dict(config))
    values.pop("extends", None)
    layers = Layers(
        [
            _default_layer(),
            Layer(origin, {"name": "recipe"}),
            Layer(origin, values),
            override_layer(overrides),
        ]
    )
    return _Validator(layers).validate(layers.merge(), None)


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_copy(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# Validation


class _Validator:
    """Checks a merged config against the schema; a key at fault is named with its layer."""

    def __init__(self, layers: Layers) -> None:
        self.layers = layers
        self.origin = layers.origin
        self.fail = layers.fail

    # -- the schema

    def validate(self, config: dict[str, Any], path: Path | None) -> Recipe:
        config.pop("meta", None)
        config.pop("extends", None)
        # Checked in the order a resolved config.yaml lists the keys, unknown keys last.
        order = list(_RecipeFile.model_fields)
        config = dict(
            sorted(config.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
        )
        fixed = validate(_RecipeFile, config, self.origin)
        if fixed.train.lora is not None:
            if fixed.train.freeze:
                raise self.fail(
                    "train.freeze",
                    "train.lora freezes every weight of the model already and trains only its adapters; "
                    "leave train.freeze out",
                )
            # Written with its defaults, so that leaving a default out does not change the run hash.
            config["train"]["lora"] = fixed.train.lora.model_dump(mode="json")
        if config["targets"] is None:
            config["targets"] = list(config["sources"])
        self.check_names(config, "sources")
        self.check_names(config, "targets")
        specs = self.named_sections(config)
        self.try_build(specs["optimizer"], specs["scheduler"])
        top = ("name", "seed", "sources", "targets", "sample_rate", "audio_channels")
        resolved = {key: config[key] for key in top}
        if resolved["targets"] == resolved["sources"]:
            # Written only when it narrows the sources, so that the hash of every run that
            # estimates all of its sources does not depend on this key.
            del resolved["targets"]
        for section, spec in specs.items():
            interval = {"interval": spec.interval} if isinstance(spec, SchedulerSpec) else {}
            resolved[section] = {"name": spec.name, **interval, **spec.kwargs}
            if isinstance(spec, OptimizerSpec):
                groups = [{"params": list(group.params), **group.options} for group in spec.param_groups]
                resolved[section]["param_groups"] = groups
        resolved.update({section: config[section] for section in ("trainer", *_FIXED_SECTIONS)})
        return Recipe(
            **{key: config[key] for key in top},
            path=path,
            **specs,
            trainer=config["trainer"],
            **{section: getattr(fixed, section) for section in _FIXED_SECTIONS},
            resolved=_plain_copy(resolved),
        )

    def check_names(self, config: dict[str, Any], key: str) -> None:
        """``sources`` and ``targets``: unique names, and every target one of the sources."""
        names, sources = config[key], config["sources"]
        if not names:
            alternative = " (or leave it out for all sources)" if key == "targets" else ""
            raise self.fail(key, f"expected at least one source name{alternative}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise self.fail(key, f"{key[:-1]} names must be unique; repeated: {', '.join(repeated)}")
        for name in names:
            if name not in sources:
                raise self.fail(
                    key, f"{name!r} is not one of the sources {sources}{suggestion(name, sources)}"
                )

    # -- sections of registered names, and the trainer

    def named_sections(self, config: dict[str, Any]) -> dict[str, NamedSpec]:
        """Look up each section's registered name and check its other keys (and the trainer's)
        against the signature of what the name stands for, all in one validation."""
        from lightning.pytorch import Trainer

        interval = config["scheduler"].pop("interval", "step")
        models: dict[str, type[_Arguments]] = {}
        given: dict[str, list[str]] = {}
        for section in (*_REGISTRIES, "trainer"):
            refused = _REFUSED.get(section, {})
            for key in config[section]:
                if key in refused:
                    raise self.fail(f"{section}.{key}", refused[key])
            name = "" if section == "trainer" else config[section]["name"]
            target = Trainer if section == "trainer" else self.registered(section, name)
            models[section] = self.arguments_model(section, target, name, frozenset(refused))
            if section == "optimizer":  # `param_groups` is sepzoo's, not the optimizer's argument
                models[section] = _optimizer_model(target, models[section], name)
            given[section] = self.share_top_level(config, section, models[section])
        checked = {section: config[section] for section in models}
        if checked["trainer"].get("precision") == "auto":  # sepzoo's own value, resolved later
            checked["trainer"] = {k: v for k, v in checked["trainer"].items() if k != "precision"}
        validate(_sections_model(**models), checked, self.origin)
        for section, keys in given.items():
            for key in keys:
                top = _top_level_key(section, key)
                if config[section][key] != config[top]:
                    raise self.fail(
                        f"{section}.{key}",
                        f"{config[section][key]!r} differs from the top-level {top} {config[top]!r}; "
                        f"set it once at the top level (or write `{section}.{key}: ${{{top}}}`)",
                    )
        self.check_loss_weights(config)
        groups = tuple(
            ParamGroupSpec(tuple(group["params"]), {k: v for k, v in group.items() if k != "params"})
            for group in config["optimizer"].pop("param_groups", [])
        )
        specs = {}
        for section in _REGISTRIES:
            kwargs = {k: v for k, v in config[section].items() if k != "name"}
            specs[section] = NamedSpec(config[section]["name"], kwargs)
        specs["optimizer"] = OptimizerSpec(specs["optimizer"].name, specs["optimizer"].kwargs, groups)
        specs["scheduler"] = SchedulerSpec(specs["scheduler"].name, specs["scheduler"].kwargs, interval)
        return specs

    def registered(self, section: str, name: str) -> Any:
        registry, kind = _REGISTRIES[section]
        if name not in registry:
            known = registry.names()
            raise self.fail(
                f"{section}.name",
                f"unknown {kind} {name!r}{suggestion(name, known)} "
                f"(registered: {', '.join(known) or 'none'})",
            )
        return registry.get(name)

    def arguments_model(
        self, section: str, target: Any, name: str, leave_out: frozenset[str]
    ) -> type[_Arguments]:
        named = section != "trainer"
        kind = _REGISTRIES[section][1] if named else ""
        title = f"{kind} {name!r}" if named else "Lightning's Trainer"
        try:
            return _arguments_model(target, title, named, leave_out)
        except _Unresolvable as exc:
            raise self.fail(f"{section}.name" if named else section, f"{kind} {exc}".strip()) from None

    def share_top_level(self, config: dict[str, Any], section: str, model: type[_Arguments]) -> list[str]:
        """Fill ``sources``, ``sample_rate`` and ``audio_channels`` of models and data sets from the
        top level; return those the section sets itself, which must agree with it."""
        if section not in ("model", "data"):
            return []
        values = config[section]
        given = [key for key in _SHARED_MODEL_KEYS if key in model.model_fields and key in values]
        for key in _SHARED_MODEL_KEYS:
            if key in model.model_fields and key not in values:
                values[key] = config[_top_level_key(section, key)]
        return given

    def check_loss_weights(self, config: dict[str, Any]) -> None:
        weights = config["loss"].get("weights")
        for source in weights if isinstance(weights, dict) else ():
            if source not in config["targets"]:
                raise self.fail(
                    f"loss.weights.{source}",
                    f"{source!r} is not one of the targets {config['targets']}"
                    f"{suggestion(source, config['targets'])}",
                )

    # -- a dry run of the optimizer and scheduler, whose arguments torch checks itself

    def try_build(self, optimizer: OptimizerSpec, scheduler: SchedulerSpec) -> None:
        try:
            build_optimizer(optimizer, [torch.nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError) as exc:
            raise self.fail("optimizer", f"invalid {optimizer.name} settings: {first_line(exc)}") from None
        # Torch checks the values of the optimizer's own arguments only; each group's are checked
        # as if they were the optimizer's.
        for index, group in enumerate(optimizer.param_groups):
            settings = NamedSpec(optimizer.name, {**optimizer.kwargs, **group.options})
            try:
                build_optimizer(settings, [torch.nn.Parameter(torch.zeros(1))])
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"{self.origin('optimizer.param_groups')}: optimizer.param_groups[{index}]: "
                    f"invalid {optimizer.name} settings: {first_line(exc)}"
                ) from None
        # One probe parameter per group, and one for the rest: the schedule sees every group's lr.
        probes = dataclasses.replace(
            optimizer,
            param_groups=tuple(
                dataclasses.replace(group, params=(f"group{i}",))
                for i, group in enumerate(optimizer.param_groups)
            ),
        )
        named = [
            (f"group{i}", torch.nn.Parameter(torch.zeros(1))) for i in range(len(optimizer.param_groups))
        ]
        built = build_optimizer(probes, [*named, ("rest", torch.nn.Parameter(torch.zeros(1)))])
        try:
            build_scheduler(scheduler, built)
        except SepzooError:
            raise
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            raise self.fail("scheduler", f"invalid {scheduler.name} settings: {first_line(exc)}") from None


def _top_level_key(section: str, key: str) -> str:
    """The top-level key a model or data set argument must agree with: the model estimates the
    targets; the data holds every source of the mixture."""
    return "targets" if (section, key) == ("model", "sources") else key


__all__ = [
    "COMMAND_LINE",
    "DEFAULT_TRAINER",
    "FLOAT16_MIXED",
    "MANAGED_TRAINER_KEYS",
    "InferenceOptions",
    "LoggerOptions",
    "LoraOptions",
    "NamedSpec",
    "OptimizerSpec",
    "ParamGroupSpec",
    "Recipe",
    "RunOptions",
    "SchedulerSpec",
    "TrainOptions",
    "config_hash",
    "load_recipe",
    "recipe_from_dict",
    "resolve_precision",
]
