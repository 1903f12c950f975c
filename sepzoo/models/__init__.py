"""The model registry.

Every file in this package that defines a separator registers it with ``@register_model``;
the files are imported on the first registry look-up. Third-party packages register their
models through the ``sepzoo.models`` entry-point group: each entry point names a module (or
any object) whose import registers models.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any

from sepzoo.errors import SepzooError
from sepzoo.models.base import DOMAINS, Separator
from sepzoo.registry import Registry

ENTRY_POINT_GROUP = "sepzoo.models"

# Modules of this package that hold no architecture: the contract, bags, model files, adapters.
_NOT_ARCHITECTURES = frozenset({"base", "bag", "files", "lora"})


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _NOT_ARCHITECTURES and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except SepzooError:
            raise
        except Exception as exc:  # a broken plugin must not hide the others' error messages
            raise SepzooError(
                f"model plugin {entry.name!r} ({entry.value}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc


MODELS: Registry[type[Separator]] = Registry("model", discover=_discover)


def register_model(name: str):  # noqa: ANN201 - decorator factory
    """Register a :class:`Separator` subclass under a stable name.

    Args:
        name: The name recipes and the CLI use to pick the model.
    """
    decorate = MODELS.register(name)

    def decorator(cls: type[Separator]) -> type[Separator]:
        if not (isinstance(cls, type) and issubclass(cls, Separator)):
            raise TypeError(f"@register_model({name!r}) must decorate a Separator subclass")
        if cls.domain not in DOMAINS:
            raise ValueError(f"{cls.__name__}.domain must be one of {DOMAINS}, got {cls.domain!r}")
        return decorate(cls)

    return decorator


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return MODELS.names()


def get_model_class(name: str) -> type[Separator]:
    """The class registered under ``name``.

    Args:
        name: A registered model name.
    """
    return MODELS.get(name)


def create_model(name: str, **kwargs: Any) -> Separator:
    """Build the model registered under ``name``.

    Args:
        name: A registered model name.
        **kwargs: Init arguments overriding the model's defaults.
    """
    return MODELS.get(name)(**kwargs)


# In-place random fills of a tensor, which parameter initialisation ends in.
_RANDOM_FILLS = frozenset({"normal_", "uniform_", "trunc_normal_", "bernoulli_", "exponential_"})


def count_parameters(name: str, **kwargs: Any) -> int:
    """Trainable parameters of a model, counted without allocating or initialising weights.

    Weights are allocated on the meta device, where tensors have shapes but no storage: torch's
    layers make them with ``torch.empty``, which is redirected there, and their random
    initialisation is skipped. Everything else a constructor computes (band tables, rotary
    frequencies, windows) runs on the CPU as usual: computing on the meta device goes through
    torch's reference kernels, which load its whole compiler stack for values never used.

    Args:
        name: A registered model name.
        **kwargs: Init arguments overriding the model's defaults.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    class _MetaWeights(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            kwargs = kwargs or {}
            if func is torch.empty and kwargs.get("device") is None:
                return func(*args, **{**kwargs, "device": "meta"})
            target = args[0] if args else kwargs.get("tensor")
            name = getattr(func, "__name__", "")
            is_fill = getattr(func, "__module__", None) == "torch.nn.init" or name in _RANDOM_FILLS
            if is_fill and isinstance(target, torch.Tensor) and target.is_meta:
                return target
            return func(*args, **kwargs)

    with _MetaWeights():
        return create_model(name, **kwargs).num_parameters()


__all__ = [
    "ENTRY_POINT_GROUP",
    "MODELS",
    "Separator",
    "count_parameters",
    "create_model",
    "get_model_class",
    "list_models",
    "register_model",
]
