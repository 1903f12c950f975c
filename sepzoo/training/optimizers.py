"""Optimizers and learning-rate schedules that recipes choose by name, and their builders.

``optimizer.name`` picks a torch optimizer from :data:`OPTIMIZERS`; ``scheduler.name`` picks a
schedule function from :data:`SCHEDULERS`. The other keys of each section are the keyword
arguments of what the name stands for, checked against its signature when the recipe is read
(see :mod:`sepzoo.training.recipe`). ``optimizer.param_groups`` gives the parameters some glob
patterns match settings of their own (:func:`group_parameters`).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from sepzoo.errors import ConfigError, closest
from sepzoo.registry import Registry

if TYPE_CHECKING:
    from sepzoo.training.recipe import NamedSpec, ParamGroupSpec, SchedulerSpec

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


def build_optimizer(spec: NamedSpec, params: Iterable[Any]) -> torch.optim.Optimizer:
    """Build the optimizer a recipe names.

    Args:
        spec: ``Recipe.optimizer``.
        params: The model's ``(name, parameter)`` pairs, grouped by the recipe's
            ``param_groups`` with the frozen ones left out (:func:`group_parameters`); or
            parameters (or parameter groups) taken as they are.
    """
    params = list(params)
    if params and isinstance(params[0], tuple):
        params = group_parameters(params, getattr(spec, "param_groups", ()))
    return OPTIMIZERS.get(spec.name)(params, **_torch_values(spec.kwargs))


def _torch_values(options: Mapping[str, Any]) -> dict[str, Any]:
    # Torch optimizers take their pairs (``betas``, ``etas``) as tuples; YAML only has lists.
    return {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}


def group_parameters(
    named: Sequence[tuple[str, torch.nn.Parameter]],
    groups: Sequence[ParamGroupSpec],
    where: str = "optimizer.param_groups",
) -> list[dict[str, Any]]:
    """Sort the trainable parameters into the recipe's parameter groups.

    Each group takes the trainable parameters whose names match one of its patterns, with its
    own settings; the trainable parameters no group takes form the last group, with the
    optimizer's settings. Frozen parameters (``requires_grad`` false: ``train.freeze``,
    ``train.lora``) are left out: weight decay would move them.

    Args:
        named: The model's ``(name, parameter)`` pairs (``model.named_parameters()``).
        groups: ``Recipe.optimizer.param_groups``.
        where: What names the groups in error messages. (Default: ``"optimizer.param_groups"``)

    Returns:
        Torch parameter groups: ``{"params": [...], **settings}`` per recipe group, in the
        recipe's order, then the rest (when any parameter is left).

    Raises:
        ConfigError: A pattern matches no trainable parameter, or two groups match one parameter.
    """
    trainable = {name: parameter for name, parameter in named if parameter.requires_grad}
    frozen = [name for name, parameter in named if not parameter.requires_grad]
    owner: dict[str, int] = {}
    for index, group in enumerate(groups):
        for pattern in group.params:
            matched = [name for name in trainable if fnmatch.fnmatchcase(name, pattern)]
            if not matched:
                raise ConfigError(f"{where}[{index}].params: {_no_match(pattern, list(trainable), frozen)}")
            for name in matched:
                first = owner.setdefault(name, index)
                if first != index:
                    raise ConfigError(
                        f"{where}: parameter {name!r} is matched by groups {first} and {index}; "
                        "a parameter belongs to one group"
                    )
    torch_groups = [
        {
            "params": [p for name, p in trainable.items() if owner.get(name) == index],
            **_torch_values(group.options),
        }
        for index, group in enumerate(groups)
    ]
    rest = [parameter for name, parameter in trainable.items() if name not in owner]
    if rest or not torch_groups:
        torch_groups.append({"params": rest})
    return torch_groups


def _no_match(pattern: str, trainable: list[str], frozen: list[str]) -> str:
    frozen_matches = [name for name in frozen if fnmatch.fnmatchcase(name, pattern)]
    if frozen_matches:
        return (
            f"{pattern!r} matches only frozen parameters (train.freeze or train.lora), e.g. "
            f"{frozen_matches[0]!r}; they stay out of the optimizer"
        )
    guesses = (closest(pattern, trainable) or trainable)[:3]
    listed = f"; trainable parameters are named like {', '.join(map(repr, guesses))}" if guesses else ""
    return f"{pattern!r} matches no trainable parameter{listed}"


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
    for index, group in enumerate(optimizer.param_groups):
        base_lr = float(group["lr"])
        if min_lr > base_lr:
            whose = (
                "the optimizer's lr"
                if base_lr == optimizer.defaults["lr"]
                else f"the lr of parameter group {index}"
            )
            raise ValueError(f"min_lr ({min_lr}) is larger than {whose} ({base_lr})")
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


__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "SchedulerBuilder",
    "build_optimizer",
    "build_scheduler",
    "group_parameters",
]
