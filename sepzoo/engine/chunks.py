"""Chunking: how a track is cut into the chunks a model sees, and how the outputs are joined.

Whole-tensor separation (:mod:`sepzoo.engine.apply`) and file streaming
(:mod:`sepzoo.engine.streaming`) both cut tracks with these rules, so a model is always fed the
same chunks whichever way its input arrives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepzoo.errors import SepzooError
from sepzoo.models.bag import BagOfModels
from sepzoo.models.base import Separator

T = TypeVar("T")

MAX_SHIFT_SECONDS = 0.5
"""Largest random time shift of the shift trick, in seconds."""


# ----------------------------------------------------------------------------------------------
# Building blocks


def plan_chunks(length: int, chunk_length: int, overlap: float) -> list[int]:
    """Start offsets of overlapping chunks that cover ``length`` samples.

    Consecutive chunks start ``stride = int((1 - overlap) * chunk_length)`` samples apart
    (at least 1), from 0 to the last offset before ``length``, as ``demucs.apply.apply_model``
    plans them; chunks that run past the end are cut short there.

    Args:
        length: Number of samples to cover.
        chunk_length: Samples per chunk.
        overlap: Fraction of a chunk shared with the next one, in ``[0, 1)``.
    """
    if length <= 0:
        raise ValueError(f"cannot plan chunks over a signal of length {length}")
    if chunk_length <= 0:
        raise ValueError(f"chunk length must be positive, got {chunk_length}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    stride = max(1, int((1 - overlap) * chunk_length))
    return list(range(0, length, stride))


def extract_chunk(signal: Tensor, offset: int, length: int, target_length: int) -> Tensor:
    """Cut ``signal[..., offset:offset + length]`` widened to ``target_length`` samples.

    The extra ``target_length - length`` samples are split evenly around the chunk (one more
    on the right when odd) and taken from the real neighbouring audio; only positions outside
    the signal are zeros. :func:`center_crop` undoes the widening.

    Args:
        signal: Any tensor with time as its last dimension.
        offset: First sample of the chunk.
        length: Samples in the chunk.
        target_length: Samples to return, ``>= length``.
    """
    if target_length < length:
        raise ValueError(f"target length {target_length} is shorter than the chunk length {length}")
    total = signal.shape[-1]
    start = offset - (target_length - length) // 2
    end = start + target_length
    inside = signal[..., max(0, start) : min(total, end)]
    return F.pad(inside, (max(0, -start), max(0, end - total)))


def center_crop(signal: Tensor, length: int) -> Tensor:
    """Keep the central ``length`` samples of ``signal`` (the inverse of :func:`extract_chunk`).

    Args:
        signal: Any tensor with time as its last dimension.
        length: Samples to keep, ``<= signal.shape[-1]``.
    """
    excess = signal.shape[-1] - length
    if excess < 0:
        raise ValueError(f"cannot crop {signal.shape[-1]} samples to {length}")
    left = excess // 2
    return signal[..., left : left + length]


def triangular_weight(length: int, power: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """Cross-fade window: a triangle peaking at 1 in the middle, raised to ``power``.

    Every value is positive (the edges are ``(1 / peak) ** power``), so any sample covered by
    a chunk gets a non-zero weight; larger ``power`` makes the transitions between chunks
    sharper.

    Args:
        length: Number of samples.
        power: Exponent applied to the triangle. (Default: ``1.0``)
        device: Device of the returned tensor. (Default: ``None``, the CPU)
    """
    if length <= 0:
        raise ValueError(f"window length must be positive, got {length}")
    position = torch.arange(length, device=device)
    triangle = torch.minimum(position + 1, length - position).float()
    return (triangle / triangle.max()) ** power


class OverlapAdd:
    """Accumulates weighted chunk outputs and returns their weighted average.

    Args:
        leading_shape: Shape of the output without its time dimension (e.g. ``[B, S, C]``).
        length: Total number of output samples.
        window: Weight of each sample of a full chunk (e.g. :func:`triangular_weight`).
        device: Where the accumulators live. (Default: ``None``, the CPU)
    """

    def __init__(
        self,
        leading_shape: Sequence[int],
        length: int,
        window: Tensor,
        device: torch.device | str | None = None,
    ) -> None:
        self.length = length
        self.window = window.to(device)
        self.total = torch.zeros(*leading_shape, length, device=device)
        self.weight_sum = torch.zeros(length, device=device)

    def add(self, chunk: Tensor, offset: int) -> None:
        """Add one chunk output that starts at sample ``offset``; samples past the end are dropped.

        Args:
            chunk: Output for the chunk, ``[*leading_shape, window length]``.
            offset: Position of the chunk's first sample in the output.
        """
        count = min(chunk.shape[-1], self.length - offset)
        weight = self.window[:count]
        self.total[..., offset : offset + count] += chunk[..., :count].to(self.total.device) * weight
        self.weight_sum[offset : offset + count] += weight

    def result(self) -> Tensor:
        """The weighted average of everything added so far, ``[*leading_shape, length]``."""
        if bool((self.weight_sum <= 0).any()):
            raise RuntimeError("some output samples were not covered by any chunk")
        return self.total / self.weight_sum



# ----------------------------------------------------------------------------------------------
# Per-model rules


@dataclass
class EngineSettings:
    """Options shared by every level of one :func:`apply_model` call."""

    segment: float | None
    overlap: float
    transition_power: float
    batch_size: int
    device: torch.device | None
    progress: bool


def model_name(model: Separator | BagOfModels) -> str:
    return model.registry_name or type(model).__name__


def segment_samples(model: Separator, settings: EngineSettings) -> int | None:
    """Chunk length in samples, or ``None`` to process whole tracks."""
    if model.whole_track:
        return None
    segment = settings.segment if settings.segment is not None else model.segment
    if segment is None:
        return None
    # Truncated, not rounded, as the official Demucs engine does: same chunks, same outputs.
    return max(1, int(segment * model.sample_rate))


def model_device(model: nn.Module, requested: torch.device | None) -> torch.device:
    if requested is not None:
        return requested
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_input_length(model: Separator, segment_length: int, chunk_length: int) -> int:
    """Length a chunk of ``chunk_length`` samples reaches the model at, real context included."""
    padded_length = model.valid_length(segment_length if model.fixed_chunk_length else chunk_length)
    if padded_length < chunk_length:
        raise ValueError(
            f"{model_name(model)}.valid_length({chunk_length}) returned {padded_length}, which is shorter"
        )
    return padded_length


def check_segment(model: Separator, segment_length: int) -> None:
    """Refuse, naming both, a chunk longer than the model accepts."""
    limit = model.max_segment
    if limit is not None and segment_length > int(limit * model.sample_rate):
        raise SepzooError(
            f"segment {segment_length / model.sample_rate:g} s is longer than {model_name(model)} accepts "
            f"({limit:g} s, the segment it was trained on); pass a shorter --segment"
        )


def in_groups(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def call_model(model: Separator, mix: Tensor, references: Tensor | None, device: torch.device) -> Tensor:
    """One forward pass on ``device``; returns float32 stems on ``mix``'s device."""
    mix_on_device = mix.to(device)
    if references is None:
        out = model(mix_on_device)
    else:
        out = model(mix_on_device, references.to(device))
    expected = [mix.shape[0], len(model.sources), *mix.shape[1:]]
    if list(out.shape) != expected:
        raise ValueError(
            f"{model_name(model)} returned stems of shape {list(out.shape)} for input {list(mix.shape)}; "
            f"expected {expected}"
        )
    return out.float().to(mix.device)


def check_engine_options(
    overlap: float, shifts: int, transition_power: float, batch_size: int, segment: float | None
) -> None:
    """Raise ``ValueError`` naming the first engine option out of its range.

    Args:
        overlap: Chunk overlap, in ``[0, 1)``.
        shifts: Random shifts, ``>= 0``.
        transition_power: Cross-fade exponent, ``>= 1``.
        batch_size: Chunks per forward pass, ``>= 1``.
        segment: Chunk length in seconds, positive, or ``None``.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if shifts < 0:
        raise ValueError(f"shifts must be >= 0, got {shifts}")
    if transition_power < 1:
        raise ValueError(
            f"transition_power must be >= 1 (smaller values favour chunk edges), got {transition_power}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if segment is not None and segment <= 0:
        raise ValueError(f"segment must be positive seconds or None, got {segment}")
