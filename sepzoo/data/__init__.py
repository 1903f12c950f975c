"""Data sets, chosen in recipes by registered name (``data.name``).

Each registered data set is a LightningDataModule class whose init arguments are the recipe's
``data`` keys. The files in this package register themselves on the first look-up.
"""

from __future__ import annotations

import importlib
import pkgutil

from sepzoo.registry import Registry


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


DATASETS: Registry[type] = Registry("data set", discover=_discover)


def register_dataset(name: str):  # noqa: ANN201 - decorator factory
    """Register a LightningDataModule class under a stable name.

    Args:
        name: The name recipes use in ``data.name``.
    """
    return DATASETS.register(name)


__all__ = ["DATASETS", "register_dataset"]
