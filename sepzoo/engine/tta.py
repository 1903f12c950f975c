"""Test-time augmentation (TTA): run a model on transformed copies of its input and average.

Each augmentation is its own inverse and acts on every sample alike, so a chunk of the
augmented track is the augmented chunk: :mod:`sepzoo.engine.apply` augments the whole (shifted)
track and its reference stems and undoes the variant on the stems, while
:mod:`sepzoo.engine.streaming` augments each chunk's input window and undoes it on the chunk's
outputs; the model sees the same numbers either way, so both give the same stems.

* ``flip``: reverse the order of the audio channels (swap left and right); undone by swapping
  the stems' channels back. Models with one channel have nothing to swap: asking for ``flip``
  there is an error, so that a setting that cannot act is never reported as used.
* ``polarity``: negate the input; undone by negating the stems.

Every combination of the named augmentations runs (identity included: ``flip,polarity`` gives
four variants), and each variant runs every shift of the shift trick (passes = variants x shifts).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from sepzoo.errors import SepzooError

TTA_NAMES = ("flip", "polarity")
"""The known augmentations, in the order their combinations are enumerated."""


@dataclass(frozen=True)
class Variant:
    """One combination of augmentations; each is its own inverse."""

    flip: bool = False
    polarity: bool = False

    def apply(self, signal: Tensor) -> Tensor:
        """Augment ``signal`` ``[..., C, T]`` (a mix or stems); applying it again undoes it.

        Args:
            signal: Audio with channels second to last.
        """
        if self.flip:
            signal = signal.flip(-2)
        if self.polarity:
            signal = -signal
        return signal

    undo = apply

    @property
    def name(self) -> str:
        """``identity``, ``flip``, ``polarity`` or ``flip+polarity``."""
        names = [n for n in TTA_NAMES if getattr(self, n)]
        return "+".join(names) or "identity"


def parse_tta(value: str | Sequence[str] | None, where: str = "--tta") -> tuple[str, ...]:
    """The augmentation names in ``value`` (a comma string or a list), checked, without duplicates.

    Args:
        value: ``"flip,polarity"``, ``["flip"]``, ``""`` or ``None`` (no augmentation).
        where: The option or key named in errors. (Default: ``"--tta"``)

    Raises:
        SepzooError: A name is not one of :data:`TTA_NAMES`.
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise SepzooError(f"{where}: expected augmentation names, got {item!r}")
        name = item.strip()
        if not name:
            continue
        if name not in TTA_NAMES:
            raise SepzooError(f"{where}: unknown augmentation {name!r}; known: {', '.join(TTA_NAMES)}")
        if name not in names:
            names.append(name)
    return tuple(n for n in TTA_NAMES if n in names)


def tta_variants(names: str | Sequence[str] | None, channels: int, model: str = "the model") -> list[Variant]:
    """Every combination of the named augmentations, identity first (one variant when none).

    Args:
        names: Augmentation names (see :func:`parse_tta`).
        channels: The model's audio channels.
        model: The model's name, for errors. (Default: ``"the model"``)

    Raises:
        SepzooError: A name is unknown, or ``flip`` is asked of a model with one channel.
    """
    chosen = parse_tta(names)
    if "flip" in chosen and channels < 2:
        raise SepzooError(
            f"--tta flip: {model} has {channels} audio channel; flip swaps channels and needs at least 2"
        )
    return [
        Variant(**dict(zip(chosen, flags))) for flags in itertools.product((False, True), repeat=len(chosen))
    ]
