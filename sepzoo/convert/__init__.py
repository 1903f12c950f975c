"""Import of checkpoints saved by other projects, as documented key mappings.

Each converter reads a foreign file without importing or running anything from it (see
:func:`sepzoo.models.files.safe_load`), maps every key of its state to our module names, refuses
(naming them) keys it cannot map, and returns a sepzoo model or bag of models that the model
file, ``separate``, ``eval`` and ``train`` (``train.init_from``) accept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from sepzoo.errors import CheckpointError

_MAX_LISTED = 6


def rename_state(
    state: Mapping[str, Any],
    rename: Callable[[str], str | None],
    expected: Mapping[str, Tensor],
    source: str,
) -> dict[str, Tensor]:
    """Apply a key mapping to a foreign state dict, refusing anything that does not fit.

    Args:
        state: The foreign state dict.
        rename: Maps a foreign key to ours, or returns ``None`` for a key it cannot map.
        expected: Our model's state dict (its keys and shapes).
        source: The file, for error messages.

    Raises:
        CheckpointError: Naming the foreign keys that map to nothing, our keys that nothing
            maps to, and keys whose shapes differ.
    """
    renamed: dict[str, Tensor] = {}
    unmapped = []
    for key, value in state.items():
        target = rename(key)
        if target is None or target not in expected:
            unmapped.append(key)
            continue
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{source}: {key} holds a {type(value).__name__}, not a tensor")
        renamed[target] = value
    missing = [key for key in expected if key not in renamed]
    mismatched = [
        f"{key} {list(value.shape)} vs {list(expected[key].shape)}"
        for key, value in renamed.items()
        if value.shape != expected[key].shape
    ]
    problems = []
    for label, keys in (
        ("cannot map", unmapped),
        ("nothing maps to", missing),
        ("shape mismatch", mismatched),
    ):
        if keys:
            more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
            problems.append(f"{label}: {', '.join(keys[:_MAX_LISTED])}{more}")
    if problems:
        raise CheckpointError(f"{source}: {'; '.join(problems)}")
    return {key: value.float() if value.is_floating_point() else value for key, value in renamed.items()}


__all__ = ["rename_state"]
