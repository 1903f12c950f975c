"""Chunking: how a track is cut into the chunks a model sees, and how the outputs are joined.

Whole-tensor separation (:mod:`sepzoo.engine.apply`) and file streaming
(:mod:`sepzoo.engine.streaming`) both ask one :class:`ChunkPlan` which chunks to run, walk them
in the same batches (:func:`group_batches`), draw the same shifts (:func:`draw_shifts`) and
join the outputs with the same :class:`OverlapAdd`, so a model is fed the same chunks, and gives
the same stems, whichever way its input arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepzoo.deploy.plan import chunk_stride, left_context, triangular_weights
from sepzoo.deploy.plan import plan_chunks as plan_chunks  # re-exported: the engine's planning API
from sepzoo.errors import SepzooError
from sepzoo.models.bag import BagOfModels
from sepzoo.models.base import Separator, seconds_to_samples

MAX_SHIFT_SECONDS = 0.5
"""Largest random time shift of the shift trick, in seconds."""


# ----------------------------------------------------------------------------------------------
# Building blocks


def extract_chunk(signal: Tensor, offset: int, length: int, target_length: int) -> Tensor:
    """Cut ``signal[..., offset:offset + length]`` widened to ``target_length`` samples.

    The extra ``target_length - length`` samples are split around the chunk as
    :func:`left_context` says and taken from the real neighbouring audio; only positions outside
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
    start = offset - left_context(length, target_length)
    end = start + target_length
    inside = signal[..., max(0, start) : min(total, end)]
    return F.pad(inside, (max(0, -start), max(0, end - total)))


def center_crop(signal: Tensor, length: int) -> Tensor:
    """Keep the central ``length`` samples of ``signal`` (the inverse of :func:`extract_chunk`).

    Args:
        signal: Any tensor with time as its last dimension.
        length: Samples to keep, ``<= signal.shape[-1]``.
    """
    if signal.shape[-1] < length:
        raise ValueError(f"cannot crop {signal.shape[-1]} samples to {length}")
    left = left_context(length, signal.shape[-1])
    return signal[..., left : left + length]


def triangular_weight(length: int, power: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """Cross-fade window: a triangle peaking at 1 in the middle, raised to ``power``.

    The weights of :func:`~sepzoo.deploy.plan.triangular_weights` (which the torch-free runtime
    of exported models uses too) as a tensor. Every value is positive (the edges are
    ``(1 / peak) ** power``), so any sample covered by a chunk gets a non-zero weight; larger
    ``power`` makes the transitions between chunks sharper.

    Args:
        length: Number of samples.
        power: Exponent applied to the triangle. (Default: ``1.0``)
        device: Device of the returned tensor. (Default: ``None``, the CPU)
    """
    return torch.from_numpy(triangular_weights(length, power)).to(device)


class OverlapAdd:
    """Accumulates weighted chunk outputs and returns their weighted average.

    With a known ``length`` the accumulators are allocated once and :meth:`result` gives the
    whole output. With ``length=None`` (a stream whose end is not known yet) they grow as chunks
    are added and :meth:`pop` hands out, and forgets, the samples no later chunk touches, so only
    the chunks in flight are held. Either way every sample is the same sum of the same products.

    Args:
        leading_shape: Shape of the output without its time dimension (e.g. ``[B, S, C]``).
        length: Total number of output samples, or ``None`` when not known in advance.
        window: Weight of each sample of a full chunk (e.g. :func:`triangular_weight`), or
            ``None`` to weigh every sample 1 (a single chunk: nothing to cross-fade).
        device: Where the accumulators live. (Default: ``None``, the CPU)
    """

    def __init__(
        self,
        leading_shape: Sequence[int],
        length: int | None,
        window: Tensor | None,
        device: torch.device | str | None = None,
    ) -> None:
        self.length = length
        self.window = None if window is None else window.to(device)
        self.start = 0  # output position of the first sample held
        held = 0 if length is None else length
        self.total = torch.zeros(*leading_shape, held, device=device)
        self.weight_sum = torch.zeros(held, device=device)

    @property
    def end(self) -> int:
        """Output position just past the last sample held."""
        return self.start + self.total.shape[-1]

    @property
    def held(self) -> int:
        """Samples held (time steps), not yet handed out."""
        return self.total.shape[-1]

    def add(self, chunk: Tensor, offset: int) -> None:
        """Add one chunk output that starts at sample ``offset``; samples past a known length are dropped.

        Args:
            chunk: Output for the chunk, ``[*leading_shape, n]`` with ``n`` at most the window's length.
            offset: Position of the chunk's first sample in the output.
        """
        if offset < self.start:
            raise ValueError(f"a chunk at {offset} reaches samples already handed out (up to {self.start})")
        count = chunk.shape[-1] if self.length is None else min(chunk.shape[-1], self.length - offset)
        grow = offset + count - self.end
        if grow > 0:
            self.total = torch.cat([self.total, self.total.new_zeros(*self.total.shape[:-1], grow)], dim=-1)
            self.weight_sum = torch.cat([self.weight_sum, self.weight_sum.new_zeros(grow)])
        weight = self.window[:count] if self.window is not None else self.weight_sum.new_ones(count)
        start = offset - self.start
        self.total[..., start : start + count] += chunk[..., :count].to(self.total.device) * weight
        self.weight_sum[start : start + count] += weight

    def pop(self, until: int) -> Tensor:
        """Hand out the weighted average of the samples held before position ``until``, and forget them.

        Args:
            until: Output position to stop at; samples not added yet are not handed out.

        Returns:
            ``[*leading_shape, n]``, the samples from :attr:`start` (before this call) on.
        """
        count = max(0, min(until, self.end) - self.start)
        weight = self.weight_sum[:count]
        if bool((weight <= 0).any()):
            raise RuntimeError("some output samples were not covered by any chunk")
        final = self.total[..., :count] / weight
        self.total = self.total[..., count:]
        self.weight_sum = self.weight_sum[count:]
        self.start += count
        return final

    def result(self) -> Tensor:
        """The weighted average of everything added, ``[*leading_shape, length]`` (a known length only)."""
        if self.length is None:
            raise RuntimeError("the output's length is not known; pop the final samples instead")
        if self.start != 0:
            raise RuntimeError("part of the output has already been handed out")
        return self.pop(self.length)


@dataclass(frozen=True)
class Chunk:
    """One chunk of a track, as a :class:`ChunkPlan` plans it."""

    offset: int  # first sample it contributes
    length: int  # samples it contributes
    padded_length: int  # samples it reaches the model with, real context included

    @property
    def window_start(self) -> int:
        """First sample of the model's input, context included (negative: zeros before the track)."""
        return self.offset - left_context(self.length, self.padded_length)

    def cut(self, signal: Tensor) -> Tensor:
        """The model's input for this chunk from a whole ``signal`` ``[..., T]``, context included.

        Args:
            signal: The track (time last).
        """
        return extract_chunk(signal, self.offset, self.length, self.padded_length)

    def crop(self, output: Tensor) -> Tensor:
        """The ``length`` samples of the model's ``output`` ``[..., padded_length]`` this chunk contributes.

        Args:
            output: The model's output for this chunk (time last).
        """
        return center_crop(output, self.length)


def group_batches(chunks: Iterable[Chunk], batch_size: int) -> Iterator[list[Chunk]]:
    """Cut a run of chunks into the batches that go through the model together.

    A batch is up to ``batch_size`` consecutive chunks of one padded length (the short last
    chunks of a track may reach the model shorter, and cannot share a tensor with full ones).
    Both engines batch with this rule, so their chunks meet the same neighbours in a batch.

    Args:
        chunks: Chunks in order of their offsets (e.g. :meth:`ChunkPlan.chunks`).
        batch_size: Most chunks in one batch, ``>= 1``.
    """
    batch: list[Chunk] = []
    for chunk in chunks:
        if batch and chunk.padded_length != batch[0].padded_length:
            yield batch
            batch = []
        batch.append(chunk)
        if len(batch) == batch_size:  # yielded at once: a stream need not wait for the next chunk
            yield batch
            batch = []
    if batch:
        yield batch


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
    """Chunk length in samples, or ``None`` to process whole tracks.

    Args:
        model: The separator.
        settings: The engine options; their ``segment`` overrides the model's.
    """
    if model.whole_track:
        return None
    segment = settings.segment if settings.segment is not None else model.segment
    if segment is None:
        return None
    return max(1, seconds_to_samples(segment, model.sample_rate))


def model_device(model: nn.Module, requested: torch.device | None) -> torch.device:
    if requested is not None:
        return requested
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_input_length(model: Separator, segment_length: int, chunk_length: int) -> int:
    """Length a chunk of ``chunk_length`` samples reaches the model at, real context included.

    Args:
        model: The separator.
        segment_length: Samples of a full chunk (what a ``fixed_chunk_length`` model always sees).
        chunk_length: Samples of this chunk, ``<= segment_length``.
    """
    padded_length = model.valid_length(segment_length if model.fixed_chunk_length else chunk_length)
    if padded_length < chunk_length:
        raise ValueError(
            f"{model_name(model)}.valid_length({chunk_length}) returned {padded_length}, which is shorter"
        )
    return padded_length


def check_segment(model: Separator, segment_length: int) -> None:
    """Refuse, naming both, a chunk longer than the model accepts.

    Args:
        model: The separator.
        segment_length: Samples of a full chunk.
    """
    limit = model.max_segment
    if limit is not None and segment_length > seconds_to_samples(limit, model.sample_rate):
        raise SepzooError(
            f"segment {segment_length / model.sample_rate:g} s is longer than {model_name(model)} accepts "
            f"({limit:g} s, the segment it was trained on); pass a shorter --segment"
        )


class ChunkPlan:
    """How one model's tracks are cut into chunks, for a whole track or one still arriving.

    Chunks start every :attr:`stride` samples from 0 (the offsets of :func:`plan_chunks`) and
    are :attr:`segment_length` long, cut short at the end of the track; each reaches the model
    widened with real neighbouring audio to the length its ``valid_length`` asks for (a
    ``fixed_chunk_length`` model always gets the full segment's). Models with ``whole_track``,
    or with no segment from the model or the settings, get one chunk: the whole track.

    Args:
        model: The separator (a bag member, not a bag).
        settings: The engine options (``segment``, ``overlap``, ``transition_power``).

    Raises:
        SepzooError: The segment is longer than the model accepts.
    """

    def __init__(self, model: Separator, settings: EngineSettings) -> None:
        self.model = model
        self.segment_length: int | None = segment_samples(model, settings)
        """Samples of a full chunk, or ``None`` for one chunk over the whole track."""
        self.stride: int | None = None
        """Samples between consecutive chunk offsets (``None`` for a whole-track plan)."""
        self.padded_segment_length: int | None = None
        """Samples a full chunk reaches the model with (``None`` for a whole-track plan)."""
        self.window: Tensor | None = None
        """Overlap-add weight of a full chunk's samples, ``None`` (all 1) for a whole-track plan."""
        if self.segment_length is not None:
            check_segment(model, self.segment_length)
            self.stride = chunk_stride(self.segment_length, settings.overlap)
            self.padded_segment_length = model_input_length(model, self.segment_length, self.segment_length)
            self.window = triangular_weight(self.segment_length, settings.transition_power)

    def chunk_at(self, offset: int, length: int | None, available: int | None = None) -> Chunk | None:
        """The chunk that starts at ``offset``, or ``None`` when there is none (yet).

        Args:
            offset: First sample of the chunk, one of the plan's offsets.
            length: The track's length, or ``None`` while it is not known (a stream).
            available: With ``length=None``, samples of the track known to exist: the chunk is
                given only once its whole input window (context included) lies before that, so it
                is a full one whatever the length turns out to be. (Default: ``None``, none)
        """
        if self.segment_length is None or self.padded_segment_length is None:
            if length is None or offset > 0:  # the one chunk waits for the whole track
                return None
            return Chunk(0, length, model_input_length(self.model, length, length))
        if length is not None:
            if offset >= length:
                return None
            chunk_length = min(self.segment_length, length - offset)  # the last ones are cut short
            padded_length = model_input_length(self.model, self.segment_length, chunk_length)
            return Chunk(offset, chunk_length, padded_length)
        chunk = Chunk(offset, self.segment_length, self.padded_segment_length)
        if available is None or chunk.window_start + chunk.padded_length > available:
            return None
        return chunk

    def next_offset(self, chunk: Chunk) -> int:
        """Offset of the chunk after ``chunk`` (for a whole-track plan, past the track's end).

        Args:
            chunk: A chunk of this plan.
        """
        return chunk.offset + (self.stride if self.stride is not None else chunk.length)

    def chunks(self, length: int | None, *, start: int = 0, available: int | None = None) -> Iterator[Chunk]:
        """The chunks from offset ``start`` on, in order, up to the first that is not there (yet).

        Args:
            length: The track's length, or ``None`` while it is not known (see :meth:`chunk_at`).
            start: Offset of the first chunk, one of the plan's offsets. (Default: ``0``)
            available: With ``length=None``, samples of the track known to exist. (Default: ``None``)
        """
        if length is not None and length <= 0:
            raise ValueError(f"cannot plan chunks over a signal of length {length}")
        offset = start
        while (chunk := self.chunk_at(offset, length, available)) is not None:
            yield chunk
            offset = self.next_offset(chunk)

    def first_input(self, offset: int) -> float:
        """Earliest sample the chunks from ``offset`` on may read (``-inf``: the whole track).

        A stream keeps its input from there on. A chunk's window reaches back at most one full
        padded chunk before its offset (a short last chunk of a ``fixed_chunk_length`` model
        reaches back the farthest).

        Args:
            offset: Offset of the next chunk to run.
        """
        if self.padded_segment_length is None:
            return float("-inf")
        return float(offset - self.padded_segment_length)


# ----------------------------------------------------------------------------------------------
# Shifts and bag members


@dataclass(frozen=True)
class Shift:
    """One time shift of the shift trick: ``delay`` zeros before the track, ``padding - delay`` after."""

    delay: int
    padding: int

    def pad(self, signal: Tensor) -> Tensor:
        """``signal`` ``[..., T]`` delayed, ``[..., T + padding]`` (itself when there is no shift).

        Args:
            signal: The track (time last).
        """
        if self.padding == 0:
            return signal
        return F.pad(signal, (self.delay, self.padding - self.delay))


def draw_shifts(model: Separator, shifts: int, generator: torch.Generator) -> list[Shift]:
    """The time shifts to average one model's outputs over, drawn from ``generator``.

    Every shifted copy is padded by the same ``int(MAX_SHIFT_SECONDS * sample_rate)`` samples,
    ``delay`` of them in front, with ``delay`` drawn uniformly from ``[1, padding]``, as
    ``demucs.apply.apply_model`` draws them. Both engines draw every member's shifts here, in the
    order the members run, so one seed gives the same shifts either way.

    Args:
        model: The separator.
        shifts: Number of shifts; 0 gives one pass without a shift.
        generator: The seeded generator of the call.
    """
    if shifts == 0:
        return [Shift(0, 0)]
    padding = max(1, int(MAX_SHIFT_SECONDS * model.sample_rate))
    draws = []
    for _ in range(shifts):
        offset = int(torch.randint(0, padding, (1,), generator=generator))
        draws.append(Shift(padding - offset, padding))
    return draws


def running_members(model: Separator | BagOfModels) -> list[Separator]:
    """The separators a call runs, in the order it runs them: the model, or the bag's members
    that serve some source (:meth:`BagOfModels.serving`, the order :func:`combine_members`
    asks for them in, so that a stream, which runs members ahead and combines their outputs
    later, runs exactly the members combining will ask for).

    Args:
        model: A separator or a bag.
    """
    if not isinstance(model, BagOfModels):
        return [model]
    return [model.members[index] for index in model.serving()]


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
