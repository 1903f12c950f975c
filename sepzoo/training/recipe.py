"""Recipes: YAML files that describe one experiment, resolved and validated at the edge.

A recipe is read once, before anything runs::

    recipe YAML (+ the files it ``extends``) + ``key=value`` overrides
        -> OmegaConf merge and ``${...}`` interpolation
        -> validated plain values (:class:`Recipe`)
        -> objects (models, data modules, losses, optimizers, schedulers)

Below :func:`load_recipe`, code takes typed arguments, never config objects. Models, data sets,
losses, optimizers and schedulers are chosen by registered name (``model.name: conv_tasnet``);
their other keys are checked against the init signature of what the name stands for, so an
unknown key, a missing required key or a value of the wrong type fails at once with the key's
dotted path, the file that set it and the closest valid key.

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

import collections.abc
import dataclasses
import hashlib
import inspect
import json
import math
import pathlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from sepzoo import DEFAULT_SOURCES
from sepzoo.errors import ConfigError, SepzooError, closest, suggestion
from sepzoo.registry import Registry

COMMAND_LINE = "command line"
"""The origin reported for values given as ``key=value`` overrides."""

DEFAULTS = "sepzoo defaults"
"""The origin reported for values nobody set."""

TOP_LEVEL_KEYS: tuple[str, ...] = (
    "extends",
    "name",
    "seed",
    "sources",
    "targets",
    "sample_rate",
    "audio_channels",
    "model",
    "data",
    "loss",
    "optimizer",
    "scheduler",
    "trainer",
    "train",
    "inference",
    "logger",
    "run",
    "meta",
)
"""Every key a recipe may have at its top level. ``meta`` (run information written beside a
resolved recipe) is accepted so a run's ``config.yaml`` loads as a recipe, and is ignored."""

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

DEFAULT_TRAINER: dict[str, Any] = {
    "max_steps": 100_000,
    "accelerator": "auto",
    "devices": 1,
    "precision": "auto",
}
"""Trainer arguments a recipe starts from. ``precision: auto`` means ``16-mixed`` on CUDA and
``32-true`` elsewhere; it is resolved when the trainer is built."""

_SHARED_MODEL_KEYS: tuple[str, ...] = ("sources", "sample_rate", "audio_channels")


# ----------------------------------------------------------------------------------------------
# Fixed sections


@dataclasses.dataclass(frozen=True)
class TrainOptions:
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
    """

    ema_decay: float | None = None
    checkpoint_every_n_steps: int | None = None
    audio_examples: int = 2
    validate_every_n_steps: int | None = None
    init_from: str | None = None
    init_strict: bool = True


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
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

    segment: float | None = None
    overlap: float = 0.25
    shifts: int = 0
    transition_power: float = 1.0
    batch_size: int = 4
    normalize: bool = False


@dataclasses.dataclass(frozen=True)
class LoggerOptions:
    """The ``logger`` section: where metrics, audio examples and the config are logged.

    Args:
        name: ``"wandb"``, ``"csv"`` or ``"tensorboard"``. (Default: ``"wandb"``)
        project: Weights & Biases project. (Default: ``"sepzoo"``)
        entity: Weights & Biases team or user. (Default: ``None``, the account's default)
        group: Group runs together (e.g. one sweep). (Default: ``None``)
        tags: Free-form labels. (Default: none)
        mode: ``"online"``, ``"offline"``, or ``"auto"`` (online when logged in, offline
            otherwise). (Default: ``"auto"``)
        notes: A sentence describing the run. (Default: ``None``)
    """

    name: Literal["wandb", "csv", "tensorboard"] = "wandb"
    project: str = "sepzoo"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    mode: Literal["auto", "online", "offline"] = "auto"
    notes: str | None = None


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The ``run`` section: where the run directory goes.

    Args:
        root: Folder holding run directories. (Default: ``"runs"``)
        name: Run directory name before the config hash. (Default: ``None``, the recipe name)
    """

    root: str = "runs"
    name: str | None = None


_FIXED_SECTIONS: dict[str, type] = {
    "train": TrainOptions,
    "inference": InferenceOptions,
    "logger": LoggerOptions,
    "run": RunOptions,
}

_TOP_LEVEL_TYPES: dict[str, Any] = {
    "name": str,
    "seed": int,
    "sources": list[str],
    "targets": list[str] | None,
    "sample_rate": int,
    "audio_channels": int,
}

# Range checks applied after the type checks: dotted path -> (accepts the value, what is expected).
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: v >= 0, "a non-negative integer"),
    "sample_rate": (lambda v: v > 0, "a positive number of Hz"),
    "audio_channels": (lambda v: v in (1, 2), "1 or 2"),
    "train.ema_decay": (lambda v: v is None or 0 < v < 1, "a decay in (0, 1) or null"),
    "train.checkpoint_every_n_steps": (lambda v: v is None or v > 0, "a positive number of steps or null"),
    "train.audio_examples": (lambda v: v >= 0, "a non-negative number of tracks"),
    "train.validate_every_n_steps": (lambda v: v is None or v > 0, "a positive number of steps or null"),
    "inference.segment": (lambda v: v is None or v > 0, "a positive number of seconds or null"),
    "inference.overlap": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "inference.shifts": (lambda v: v >= 0, "a non-negative integer"),
    "inference.transition_power": (lambda v: v > 0, "a positive number"),
    "inference.batch_size": (lambda v: v > 0, "a positive integer"),
}


# ----------------------------------------------------------------------------------------------
# Optimizers and schedulers


OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer")
"""Optimizers recipes may name in ``optimizer.name``."""

for _name, _optimizer in [
    ("adam", torch.optim.Adam),
    ("adamw", torch.optim.AdamW),
    ("sgd", torch.optim.SGD),
    ("rmsprop", torch.optim.RMSprop),
]:
    OPTIMIZERS.register(_name)(_optimizer)

SchedulerBuilder = Callable[..., Any]
SCHEDULERS: Registry[SchedulerBuilder] = Registry("scheduler")
"""Learning-rate schedules recipes may name in ``scheduler.name``. Each is a function
``(optimizer, **kwargs)`` returning a torch scheduler, a Lightning scheduler dict, or ``None``."""


def _cosine_factor(step: int, warmup_steps: int, total_steps: int, floor: float) -> float:
    """Learning-rate multiplier: linear warm-up, then a half cosine down to ``floor``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _warmup_cosine_lambda(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")
    if min_lr < 0:
        raise ValueError(f"min_lr must be non-negative, got {min_lr}")
    lambdas = []
    for group in optimizer.param_groups:
        base_lr = float(group["lr"])
        if min_lr > base_lr:
            raise ValueError(f"min_lr ({min_lr}) is larger than the optimizer's lr ({base_lr})")
        floor = min_lr / base_lr if base_lr > 0 else 0.0
        # Each group decays towards the same absolute min_lr, so each needs its own floor.
        lambdas.append(lambda step, floor=floor: _cosine_factor(step, warmup_steps, total_steps, floor))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


@SCHEDULERS.register("none")
def no_schedule(optimizer: torch.optim.Optimizer) -> None:
    """A constant learning rate.

    Args:
        optimizer: The optimizer (unused).
    """
    return None


@SCHEDULERS.register("cosine")
def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, min_lr: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Half-cosine decay from the optimizer's learning rate to ``min_lr`` over ``total_steps``.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        total_steps: Steps (or epochs, with ``interval: epoch``) of the decay; the rate stays at
            ``min_lr`` afterwards. Often ``${trainer.max_steps}``.
        min_lr: The final learning rate. (Default: ``0.0``)
    """
    return _warmup_cosine_lambda(optimizer, 0, total_steps, min_lr)


@SCHEDULERS.register("warmup_cosine")
def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then half-cosine decay to ``min_lr`` at ``total_steps``.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        warmup_steps: Steps of linear warm-up from near zero to the optimizer's learning rate.
        total_steps: Step at which the decay reaches ``min_lr`` (warm-up included).
        min_lr: The final learning rate. (Default: ``0.0``)
    """
    return _warmup_cosine_lambda(optimizer, warmup_steps, total_steps, min_lr)


@SCHEDULERS.register("step")
def step_schedule(
    optimizer: torch.optim.Optimizer, step_size: int, gamma: float = 0.1
) -> torch.optim.lr_scheduler.StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        step_size: Steps between two decays.
        gamma: Decay factor. (Default: ``0.1``)
    """
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("exponential")
def exponential_schedule(
    optimizer: torch.optim.Optimizer, gamma: float
) -> torch.optim.lr_scheduler.ExponentialLR:
    """Multiply the learning rate by ``gamma`` after every step.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        gamma: Decay factor per step.
    """
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


@SCHEDULERS.register("plateau")
def plateau_schedule(
    optimizer: torch.optim.Optimizer,
    monitor: str = "valid/nSDR",
    mode: Literal["min", "max"] = "max",
    factor: float = 0.5,
    patience: int = 10,
    min_lr: float = 0.0,
) -> dict[str, Any]:
    """Multiply the learning rate by ``factor`` when a logged metric stops improving.

    The scheduler steps only when the metric has been logged; between validations the
    step is skipped.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        monitor: Logged metric to watch. (Default: ``"valid/nSDR"``)
        mode: ``"max"`` when larger is better, ``"min"`` otherwise. (Default: ``"max"``)
        factor: Decay factor. (Default: ``0.5``)
        patience: Scheduler steps without improvement before decaying. (Default: ``10``)
        min_lr: The smallest learning rate. (Default: ``0.0``)
    """
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr
    )
    return {"scheduler": scheduler, "monitor": monitor, "strict": False}


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
class SchedulerSpec(NamedSpec):
    """A learning-rate schedule: registered name, keyword arguments and stepping interval.

    Args:
        name: A name in :data:`SCHEDULERS`.
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
        optimizer: Optimizer name and arguments (without ``params``).
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
    optimizer: NamedSpec
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


# ----------------------------------------------------------------------------------------------
# Building objects


def build_optimizer(spec: NamedSpec, params: Iterable[Any]) -> torch.optim.Optimizer:
    """Build the optimizer a recipe names.

    Args:
        spec: ``Recipe.optimizer``.
        params: Parameters (or parameter groups) to optimize.
    """
    optimizer_class = OPTIMIZERS.get(spec.name)
    hints = _parameter_table(optimizer_class)[0]
    kwargs = {key: _to_call_value(value, hints.get(key, Any)) for key, value in spec.kwargs.items()}
    return optimizer_class(params, **kwargs)


def build_scheduler(spec: SchedulerSpec, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Build the Lightning ``lr_scheduler`` config a recipe names, or ``None`` for ``none``.

    Args:
        spec: ``Recipe.scheduler``.
        optimizer: The optimizer whose learning rate is scheduled.
    """
    built = SCHEDULERS.get(spec.name)(optimizer, **spec.kwargs)
    if built is None:
        return None
    config = dict(built) if isinstance(built, Mapping) else {"scheduler": built}
    config.setdefault("interval", spec.interval)
    config.setdefault("frequency", 1)
    return config


def resolve_precision(precision: Any, accelerator: Any = "auto") -> Any:
    """Turn ``precision: auto`` into ``"16-mixed"`` on CUDA and ``"32-true"`` elsewhere.

    Args:
        precision: ``trainer.precision`` from a recipe; anything but ``"auto"`` is returned as is.
        accelerator: ``trainer.accelerator`` from a recipe. (Default: ``"auto"``)
    """
    if precision != "auto":
        return precision
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "16-mixed" if on_cuda else "32-true"


def _to_call_value(value: Any, annotation: Any) -> Any:
    """Turn a YAML list into a tuple where the callee's annotation asks for one (e.g. ``betas``)."""
    if isinstance(value, list) and _wants_tuple(annotation):
        return tuple(value)
    return value


def _wants_tuple(annotation: Any) -> bool:
    if annotation is tuple or typing.get_origin(annotation) is tuple:
        return True
    if _is_union(annotation):
        return any(_wants_tuple(a) for a in typing.get_args(annotation))
    return False


# ----------------------------------------------------------------------------------------------
# Type checks


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def is_plain(value: Any) -> bool:
    """Whether ``value`` is plain data: None, bool, int, float, str, lists and str-keyed dicts of them.

    Args:
        value: Any value.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


_SEQUENCE_ORIGINS = (
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
    set,
    frozenset,
    collections.abc.Set,
)
_MAPPING_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def check_value_type(value: Any, annotation: Any) -> bool:
    """Whether a plain value (as YAML gives it) fits a type annotation.

    Supports ``int`` (a bool is not an int), ``float`` (an int is accepted), ``bool``, ``str``,
    ``None``, ``Optional``/``Union``/``X | None``, ``list[X]``, ``tuple[X, ...]`` and fixed
    tuples (given as YAML lists), ``Sequence[X]``, ``dict[str, X]``, ``Mapping``,
    ``Literal[...]``, ``Annotated``, ``Any`` and unannotated parameters (any plain value).
    A path annotation accepts a string. Other classes accept only their instances, which YAML
    cannot produce.

    Args:
        value: The value to check.
        annotation: A resolved annotation (``inspect.Parameter.empty`` for none).
    """
    if annotation is inspect.Parameter.empty or annotation is Any:
        return is_plain(value)
    if annotation is None or annotation is type(None):
        return value is None
    if isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
        return is_plain(value)  # an annotation that could not be resolved says nothing
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if _is_union(annotation):
        return any(check_value_type(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if origin is typing.Annotated:
        return check_value_type(value, args[0])
    if origin is None:
        return _check_class(value, annotation)
    if origin is tuple:
        return _check_tuple(value, args)
    if origin in _SEQUENCE_ORIGINS:
        if not isinstance(value, (list, tuple)):
            return False
        return not args or all(check_value_type(item, args[0]) for item in value)
    if origin in _MAPPING_ORIGINS:
        if not isinstance(value, dict):
            return False
        if not args:
            return True
        return all(check_value_type(k, args[0]) and check_value_type(v, args[1]) for k, v in value.items())
    if origin is type:
        return False
    return _check_class(value, origin)


def _check_class(value: Any, cls: Any) -> bool:
    if cls is bool:
        return isinstance(value, bool)
    if cls is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if cls is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if cls is str:
        return isinstance(value, str)
    if cls in (list, *_SEQUENCE_ORIGINS):
        return isinstance(value, (list, tuple))
    if cls is tuple:
        return isinstance(value, (list, tuple))
    if cls in _MAPPING_ORIGINS:
        return isinstance(value, dict)
    if cls is object:
        return is_plain(value)
    if isinstance(cls, type) and issubclass(cls, pathlib.PurePath):
        return isinstance(value, str)
    if isinstance(cls, type):
        return isinstance(value, cls)
    return False


def _check_tuple(value: Any, args: tuple[Any, ...]) -> bool:
    if not isinstance(value, (list, tuple)):
        return False
    if not args:
        return True
    if len(args) == 2 and args[1] is Ellipsis:
        return all(check_value_type(item, args[0]) for item in value)
    if args == ((),):
        return len(value) == 0
    return len(value) == len(args) and all(check_value_type(v, a) for v, a in zip(value, args))


def _understood(annotation: Any) -> bool:
    """Whether :func:`check_value_type` can judge values for ``annotation`` without guessing."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation in (None, type(None)):
        return True
    if isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
        return False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if _is_union(annotation) or origin is tuple or origin in _SEQUENCE_ORIGINS or origin in _MAPPING_ORIGINS:
        return all(arg is Ellipsis or _understood(arg) for arg in args)
    if origin is Literal:
        return True
    if origin is typing.Annotated:
        return _understood(args[0])
    return origin is None and isinstance(annotation, type)


def describe_type(annotation: Any) -> str:
    """A short readable name of an annotation, for error messages.

    Args:
        annotation: A resolved annotation.
    """
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "any plain value"
    if annotation is None or annotation is type(None):
        return "null"
    if isinstance(annotation, str):
        return annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if _is_union(annotation):
        literals = [v for a in args if typing.get_origin(a) is Literal for v in typing.get_args(a)]
        parts = [
            describe_type(a) for a in args if typing.get_origin(a) is not Literal and a is not type(None)
        ]
        if literals:
            parts.insert(0, "one of " + ", ".join(repr(v) for v in literals))
        if type(None) in args:
            parts.append("null")
        return " or ".join(parts)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in args)
    if origin is typing.Annotated:
        return describe_type(args[0])
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else describe_type(a) for a in args)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{inner}]" if inner else base
    return getattr(annotation, "__name__", str(annotation))


def _describe_value(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


# ----------------------------------------------------------------------------------------------
# Signatures


@dataclasses.dataclass
class _Parameters:
    """What a callable accepts: annotation per keyword, required keywords, and doc order."""

    hints: dict[str, Any]
    required: list[str]
    names: list[str]


def _resolve_hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # an annotation that cannot be evaluated: resolve each one on its own
        pass
    hints: dict[str, Any] = {}
    target = inspect.unwrap(function)
    namespace = dict(getattr(target, "__globals__", {}))
    for name, annotation in getattr(function, "__annotations__", {}).items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 - the callee's own annotations
            except Exception:
                annotation = inspect.Parameter.empty
        hints[name] = annotation
    return hints


def _parameter_table(target: Any, skip_first: bool = True) -> tuple[dict[str, Any], list[str], list[str]]:
    """Keyword parameters of a class's ``__init__`` (walking base classes through ``**kwargs``)
    or of a function, as (annotations, required names, names in order)."""
    hints: dict[str, Any] = {}
    required: list[str] = []
    names: list[str] = []
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
        skip = 1  # self
    else:
        functions = [target]
        skip = 1 if skip_first else 0
    for function in functions:
        signature = inspect.signature(function)
        resolved = _resolve_hints(function)
        for index, (name, param) in enumerate(signature.parameters.items()):
            if index < skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in hints:
                continue
            hints[name] = resolved.get(name, inspect.Parameter.empty)
            names.append(name)
            if param.default is inspect.Parameter.empty:
                required.append(name)
    return hints, required, names


def _has_var_keyword(function: Callable[..., Any]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(function).parameters.values())


# ----------------------------------------------------------------------------------------------
# Loading


@dataclasses.dataclass
class _Layer:
    """One source of values (a file, the command line or the defaults) in merge order."""

    origin: str
    values: dict[str, Any]

    def has(self, dotted: str) -> bool:
        node: Any = self.values
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path, origin: str) -> dict[str, Any]:
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"{origin}: recipe file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{origin}: is a folder, not a recipe file") from None
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read the recipe ({exc.strerror})") from None
    except yaml.constructor.ConstructorError as exc:
        where = _mark(exc)
        problem = exc.problem or str(exc)
        if "python/" in problem or "tag" in problem:
            raise ConfigError(
                f"{origin}{where}: Python object tags are not allowed in recipes ({problem}); "
                "name models, losses and data sets by their registered names"
            ) from None
        raise ConfigError(f"{origin}{where}: {problem}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{context}: {problem}" if context else problem
        raise ConfigError(f"{origin}{_mark(exc)}: invalid YAML ({detail})") from None
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise ConfigError(f"{origin}: {_first_line(exc)}") from None
    if not OmegaConf.is_dict(loaded):
        raise ConfigError(f"{origin}: a recipe must be a mapping of keys to values, got a list")
    return OmegaConf.to_container(loaded, resolve=False)  # type: ignore[return-value]


def _mark(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    return f":{mark.line + 1}:{mark.column + 1}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _file_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[_Layer]:
    """A file and, before it, the files it extends (base first, recursively)."""
    resolved_path = path.resolve()
    origin = _display(path)
    if resolved_path in chain:
        cycle = " -> ".join(_display(p) for p in (*chain, resolved_path))
        raise ConfigError(f"{origin}: `extends` forms a cycle: {cycle}")
    if not path.is_file() and not path.exists():
        if chain:
            raise ConfigError(f"{_display(chain[-1])}: extends {origin}, which does not exist")
        raise ConfigError(f"{origin}: recipe file not found")
    values = _read_yaml(path, origin)
    extends = values.pop("extends", None)
    if extends is None:
        bases: list[Any] = []
    elif isinstance(extends, str):
        bases = [extends]
    elif isinstance(extends, list) and all(isinstance(b, str) for b in extends):
        bases = list(extends)
    else:
        raise ConfigError(
            f"{origin}: extends: expected a path or a list of paths, got {_describe_value(extends)}"
        )
    layers: list[_Layer] = []
    for base in bases:
        base_path = Path(base).expanduser()
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        layers.extend(_file_layers(base_path, (*chain, resolved_path)))
    layers.append(_Layer(origin, values))
    return layers


def _dedupe(layers: list[_Layer]) -> list[_Layer]:
    """Keep the first appearance of a base file shared by several branches of ``extends``, so a
    later branch cannot silently undo what an earlier one changed."""
    seen: set[str] = set()
    kept = []
    for layer in layers:
        if layer.origin in seen:
            continue
        seen.add(layer.origin)
        kept.append(layer)
    return kept


def _override_layer(overrides: Sequence[str]) -> _Layer:
    if isinstance(overrides, str):
        overrides = [overrides]
    merged = OmegaConf.create({})
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"{COMMAND_LINE}: override {item!r} is not of the form key=value")
        key = item.split("=", 1)[0].strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{COMMAND_LINE}: override {item!r} has no valid key before '='")
        if key == "extends":
            raise ConfigError(f"{COMMAND_LINE}: `extends` cannot be overridden; pass another recipe file")
        try:
            parsed = OmegaConf.from_dotlist([item])
            merged = OmegaConf.merge(merged, parsed)
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
            raise ConfigError(
                f"{COMMAND_LINE}: override {item!r} cannot be parsed: {_first_line(exc)}"
            ) from None
    return _Layer(COMMAND_LINE, OmegaConf.to_container(merged, resolve=False))  # type: ignore[arg-type]


def _default_layer() -> _Layer:
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
        values[section] = dataclasses.asdict(options())
    return _Layer(DEFAULTS, values)


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
    file_layers = _dedupe(_file_layers(path))
    leaf = file_layers[-1]
    layers = [
        _default_layer(),
        *file_layers[:-1],
        # The name comes from the recipe file itself, never from a base it extends.
        _Layer(leaf.origin, {"name": path.stem}),
        leaf,
        _override_layer(overrides),
    ]
    return _build_recipe(layers, path)


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
    layers = [_default_layer(), _Layer(origin, {"name": "recipe"}), _Layer(origin, values)]
    layers.append(_override_layer(overrides))
    return _build_recipe(layers, None)


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_copy(v) for v in value]
    return value


def _build_recipe(layers: list[_Layer], path: Path | None) -> Recipe:
    validator = _Validator(layers)
    merged = validator.merge()
    return validator.validate(merged, path)


# ----------------------------------------------------------------------------------------------
# Validation


class _Validator:
    """Merges the layers, resolves interpolations and checks every key against the schema."""

    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers

    # -- where a value came from

    def origin(self, dotted: str) -> str:
        """The last layer that sets ``dotted`` (or its closest set parent)."""
        parts = dotted.split(".")
        while parts:
            key = ".".join(parts)
            for layer in reversed(self.layers):
                if layer.has(key):
                    return layer.origin
            parts.pop()
        return self._main_origin()

    def _main_origin(self) -> str:
        for layer in reversed(self.layers):
            if layer.origin not in (COMMAND_LINE, DEFAULTS):
                return layer.origin
        return DEFAULTS

    def fail(self, dotted: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin(dotted)}: {dotted}: {message}")

    def unknown(self, dotted: str, valid: Iterable[str], what: str) -> ConfigError:
        prefix, _, key = dotted.rpartition(".")
        valid = list(valid)
        close = [f"{prefix}.{c}" if prefix else c for c in closest(key, valid)]
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
        listing = f" (valid keys: {', '.join(valid)})" if not close and len(valid) <= 20 else ""
        return ConfigError(f"{self.origin(dotted)}: unknown key {dotted!r} {what}{hint}{listing}")

    # -- merging

    def merge(self) -> dict[str, Any]:
        try:
            merged = OmegaConf.merge(*[OmegaConf.create(layer.values) for layer in self.layers])
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or ""
            raise ConfigError(
                f"{self.origin(key) if key else self._main_origin()}: {_first_line(exc)}"
            ) from None
        try:
            resolved = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:
            key = getattr(exc, "full_key", "") or "?"
            raise self.fail(key, "must be set (it is '???')") from None
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", "") or "?"
            raise self.fail(key, f"cannot resolve interpolation: {_first_line(exc)}") from None
        return resolved  # type: ignore[return-value]

    # -- the schema

    def validate(self, config: dict[str, Any], path: Path | None) -> Recipe:
        config.pop("meta", None)
        config.pop("extends", None)
        for key in config:
            if key not in TOP_LEVEL_KEYS:
                raise self.unknown(str(key), [k for k in TOP_LEVEL_KEYS if k != "meta"], "at the top level")
        for key, annotation in _TOP_LEVEL_TYPES.items():
            self.check_type(key, config[key], annotation)
        self.check_top_level(config)
        for section in ("model", "data"):
            if section not in config:
                raise ConfigError(f"{self._main_origin()}: the recipe has no `{section}` section")

        model = self.named_section(config, "model")
        data = self.named_section(config, "data")
        loss = self.named_section(config, "loss")
        optimizer = self.named_section(config, "optimizer")
        scheduler_values = self.mapping(config, "scheduler")
        interval = scheduler_values.pop("interval", "step")
        self.check_type("scheduler.interval", interval, Literal["step", "epoch"])
        scheduler = self.named_section(config, "scheduler", scheduler_values)
        trainer = self.trainer_section(self.mapping(config, "trainer"))
        fixed = {section: self.fixed_section(config, section) for section in _FIXED_SECTIONS}
        self.check_ranges(config)

        resolved: dict[str, Any] = {
            "name": config["name"],
            "seed": config["seed"],
            "sources": list(config["sources"]),
            # Written only when it narrows the sources, so that the hash of every run that
            # estimates all of its sources does not depend on this key.
            **({"targets": list(config["targets"])} if config["targets"] != config["sources"] else {}),
            "sample_rate": config["sample_rate"],
            "audio_channels": config["audio_channels"],
            "model": {"name": model.name, **model.kwargs},
            "data": {"name": data.name, **data.kwargs},
            "loss": {"name": loss.name, **loss.kwargs},
            "optimizer": {"name": optimizer.name, **optimizer.kwargs},
            "scheduler": {"name": scheduler.name, "interval": interval, **scheduler.kwargs},
            "trainer": trainer,
            **{section: dataclasses.asdict(options) for section, options in fixed.items()},
        }
        scheduler_spec = SchedulerSpec(scheduler.name, scheduler.kwargs, interval)
        self.try_build(optimizer, scheduler_spec)
        return Recipe(
            name=config["name"],
            path=path,
            seed=config["seed"],
            sources=list(config["sources"]),
            targets=list(config["targets"]),
            sample_rate=config["sample_rate"],
            audio_channels=config["audio_channels"],
            model=model,
            data=data,
            loss=loss,
            optimizer=optimizer,
            scheduler=scheduler_spec,
            trainer=trainer,
            train=fixed["train"],
            inference=fixed["inference"],
            logger=fixed["logger"],
            run=fixed["run"],
            resolved=_plain_copy(resolved),
        )

    def check_type(self, dotted: str, value: Any, annotation: Any) -> None:
        if check_value_type(value, annotation):
            return
        expected = describe_type(annotation)
        hint = ""
        literal_strings = _literal_strings(annotation)
        if isinstance(value, str) and literal_strings:
            hint = suggestion(value, literal_strings)
        raise self.fail(dotted, f"expected {expected}, got {_describe_value(value)}{hint}")

    def check_top_level(self, config: dict[str, Any]) -> None:
        name = config["name"]
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise self.fail("name", f"expected a non-empty name without path separators, got {name!r}")
        sources = config["sources"]
        if not sources:
            raise self.fail("sources", "expected at least one source name")
        duplicates = sorted({s for s in sources if sources.count(s) > 1})
        if duplicates:
            raise self.fail("sources", f"source names must be unique; repeated: {', '.join(duplicates)}")
        targets = config.get("targets")
        if targets is None:
            config["targets"] = list(sources)
            return
        if not targets:
            raise self.fail("targets", "expected at least one source name (or leave it out for all sources)")
        repeated = sorted({s for s in targets if targets.count(s) > 1})
        if repeated:
            raise self.fail("targets", f"target names must be unique; repeated: {', '.join(repeated)}")
        for target in targets:
            if target not in sources:
                raise self.fail(
                    "targets",
                    f"{target!r} is not one of the sources {sources}{suggestion(target, sources)}",
                )

    def check_ranges(self, config: dict[str, Any]) -> None:
        for dotted, (accepts, expected) in _RANGES.items():
            node: Any = config
            for part in dotted.split("."):
                node = node[part]
            if not accepts(node):
                raise self.fail(dotted, f"expected {expected}, got {node!r}")
        run_name = config["run"]["name"]
        if run_name is not None and (not run_name or "/" in run_name or "\\" in run_name):
            raise self.fail("run.name", f"expected a folder name without path separators, got {run_name!r}")

    def mapping(self, config: dict[str, Any], section: str) -> dict[str, Any]:
        values = config.get(section)
        if not isinstance(values, dict):
            raise self.fail(section, f"expected a mapping of keys to values, got {_describe_value(values)}")
        for key in values:
            if not isinstance(key, str):
                raise self.fail(section, f"keys must be strings, got {_describe_value(key)}")
        return dict(values)

    # -- sections of registered names

    def named_section(
        self, config: dict[str, Any], section: str, values: dict[str, Any] | None = None
    ) -> NamedSpec:
        values = self.mapping(config, section) if values is None else values
        registry, target_kind = _section_registry(section)
        name = values.pop("name", None)
        if name is None:
            raise self.fail(section, f"`{section}.name` is required: the registered {target_kind} name")
        self.check_type(f"{section}.name", name, str)
        if name not in registry:
            known = registry.names()
            raise self.fail(
                f"{section}.name",
                f"unknown {target_kind} {name!r}{suggestion(name, known)} "
                f"(registered: {', '.join(known) or 'none'})",
            )
        target = registry.get(name)
        kwargs = self.injected(config, section, target, values)
        self.check_kwargs(section, name, target_kind, target, kwargs)
        if section == "loss" and isinstance(kwargs.get("weights"), dict):
            for source in kwargs["weights"]:
                if source not in config["targets"]:
                    raise self.fail(
                        f"loss.weights.{source}",
                        f"{source!r} is not one of the targets {config['targets']}"
                        f"{suggestion(source, config['targets'])}",
                    )
        return NamedSpec(name, kwargs)

    def injected(
        self, config: dict[str, Any], section: str, target: Any, values: dict[str, Any]
    ) -> dict[str, Any]:
        """Fill ``sources``, ``sample_rate`` and ``audio_channels`` of models and data sets from the
        top level, and refuse values that disagree with it."""
        if section not in ("model", "data"):
            return values
        hints, _, _ = _parameter_table(target)
        for key in _SHARED_MODEL_KEYS:
            if key not in hints:
                continue
            # The model estimates the targets; the data holds every source of the mixture.
            top = "targets" if (section, key) == ("model", "sources") else key
            if key not in values:
                values[key] = config[top]
            elif values[key] != config[top] and check_value_type(values[key], hints[key]):
                raise self.fail(
                    f"{section}.{key}",
                    f"{values[key]!r} differs from the top-level {top} {config[top]!r}; "
                    f"set it once at the top level (or write `{section}.{key}: ${{{top}}}`)",
                )
        return values

    def check_kwargs(self, section: str, name: str, kind: str, target: Any, kwargs: dict[str, Any]) -> None:
        hints, required, names = _parameter_table(target)
        supplied = _SUPPLIED.get(section, {})
        for key, value in kwargs.items():
            dotted = f"{section}.{key}"
            if key in supplied:
                raise self.fail(dotted, f"is not a recipe key: {supplied[key]}")
            if key not in hints:
                valid = ["name", *[n for n in names if n not in supplied]]
                raise self.unknown(dotted, valid, f"for {kind} {name!r}")
            self.check_type(dotted, value, hints[key])
        for key in required:
            if key not in kwargs and key not in supplied:
                raise self.fail(
                    f"{section}.name", f"{kind} {name!r} requires `{section}.{key}`, which is not set"
                )

    # -- the trainer

    def trainer_section(self, values: dict[str, Any]) -> dict[str, Any]:
        from lightning.pytorch import Trainer

        hints, _, names = _parameter_table(Trainer)
        for key, value in values.items():
            dotted = f"trainer.{key}"
            if key in MANAGED_TRAINER_KEYS:
                raise self.fail(dotted, f"is set by sepzoo: {MANAGED_TRAINER_KEYS[key]}")
            if key not in hints:
                valid = [n for n in names if n not in MANAGED_TRAINER_KEYS]
                raise self.unknown(dotted, valid, "for Lightning's Trainer")
            if key == "precision" and value == "auto":
                continue
            annotation = hints[key]
            if not _understood(annotation) and is_plain(value):
                continue  # an annotation too complex to judge: Lightning checks the value itself
            self.check_type(dotted, value, annotation)
        return values

    # -- fixed sections

    def fixed_section(self, config: dict[str, Any], section: str) -> Any:
        options_class = _FIXED_SECTIONS[section]
        values = self.mapping(config, section)
        hints = typing.get_type_hints(options_class)
        field_names = [f.name for f in dataclasses.fields(options_class)]
        for key, value in values.items():
            if key not in hints:
                raise self.unknown(f"{section}.{key}", field_names, f"in the `{section}` section")
            self.check_type(f"{section}.{key}", value, hints[key])
        return options_class(**values)

    # -- a dry run of the optimizer and scheduler, whose arguments torch checks itself

    def try_build(self, optimizer: NamedSpec, scheduler: SchedulerSpec) -> None:
        probe = [torch.nn.Parameter(torch.zeros(1))]
        try:
            built = build_optimizer(optimizer, probe)
        except (ValueError, TypeError) as exc:
            raise self.fail("optimizer", f"invalid {optimizer.name} settings: {_first_line(exc)}") from None
        try:
            build_scheduler(scheduler, built)
        except SepzooError:
            raise
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            raise self.fail("scheduler", f"invalid {scheduler.name} settings: {_first_line(exc)}") from None


_SUPPLIED: dict[str, dict[str, str]] = {
    "loss": {"sources": "the loss gets the top-level `targets`"},
    "optimizer": {"params": "sepzoo passes the model's parameters"},
    "scheduler": {"optimizer": "sepzoo passes the optimizer"},
}
"""Arguments sepzoo passes itself, per section, with the reason a recipe may not set them."""


def _section_registry(section: str) -> tuple[Registry[Any], str]:
    if section == "model":
        from sepzoo.models import MODELS

        return MODELS, "model"
    if section == "data":
        from sepzoo.data import DATASETS

        return DATASETS, "data set"
    if section == "loss":
        from sepzoo.training.losses import LOSSES

        return LOSSES, "loss"
    if section == "optimizer":
        return OPTIMIZERS, "optimizer"
    return SCHEDULERS, "scheduler"


def _literal_strings(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is Literal:
        return [a for a in typing.get_args(annotation) if isinstance(a, str)]
    if _is_union(annotation):
        return [s for a in typing.get_args(annotation) for s in _literal_strings(a)]
    return []


__all__ = [
    "COMMAND_LINE",
    "DEFAULT_TRAINER",
    "MANAGED_TRAINER_KEYS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "InferenceOptions",
    "LoggerOptions",
    "NamedSpec",
    "Recipe",
    "RunOptions",
    "SchedulerSpec",
    "TrainOptions",
    "build_optimizer",
    "build_scheduler",
    "check_value_type",
    "config_hash",
    "describe_type",
    "load_recipe",
    "recipe_from_dict",
    "resolve_precision",
]
