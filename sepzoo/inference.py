"""The inference engine: apply a separator (or a bag of them) to tracks of any length.

Training validation, ``sepzoo eval`` and ``sepzoo separate`` all call :func:`apply_model`, so a
model is always evaluated the way it is used. The engine

* splits long tracks into overlapping chunks of the model's preferred segment, pads every
  chunk with *real* neighbouring audio up to ``model.valid_length`` (zeros only beyond the
  track's edges), runs the chunks through the model in batches and cross-fades the outputs
  with triangular weights (overlap-add);
* optionally averages over random time shifts of the input (the "shift trick"), with a
  seeded generator so that results are reproducible;
* optionally normalises the input by whole-track statistics and undoes it on the outputs;
* combines the members of a :class:`BagOfModels` per source with their weights.

The building blocks (:func:`plan_chunks`, :func:`extract_chunk`, :func:`center_crop`,
:func:`triangular_weight`, :class:`OverlapAdd`) are public so that a streaming front end can
reuse them.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch
import tqdm
from torch import Tensor, nn
from torch.nn import functional as F

from sepzoo.models.base import Separator

T = TypeVar("T")

MAX_SHIFT_SECONDS = 0.5
"""Largest random time shift of the shift trick, in seconds."""


class BagOfModels(nn.Module):
    """Several separators whose outputs are averaged per source with weights.

    A bag is also how one-model-per-target systems are used: members may estimate different
    sources (e.g. four one-target models make a four-source bag), and a member whose weight
    for a source is 0 does not contribute to it (a member with only zero weights is not run at
    all). Apply a bag with :func:`apply_model`: each member is then chunked with its own
    segment and valid length.

    Args:
        models: The members. They must share ``sample_rate`` and ``audio_channels``.
        weights: ``weights[m][s]`` is the weight of member ``m`` for the bag's source ``s``;
            weights are non-negative, zero where the member does not estimate the source, and
            every source needs a positive total. ``None`` gives every member weight 1 for each
            source it estimates. (Default: ``None``)
        sources: The bag's sources, in output order; every one must be estimated by some
            member. (Default: ``None``, the members' sources in order of first appearance)
    """

    registry_name: str | None = None

    def __init__(
        self,
        models: Sequence[Separator],
        weights: Sequence[Sequence[float]] | None = None,
        sources: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not models:
            raise ValueError("a bag of models needs at least one member")
        first = models[0]
        for index, other in enumerate(models[1:], start=1):
            for attribute in ("sample_rate", "audio_channels"):
                if getattr(other, attribute) != getattr(first, attribute):
                    raise ValueError(
                        f"bag member {index} has {attribute}={getattr(other, attribute)!r} but member 0 has "
                        f"{attribute}={getattr(first, attribute)!r}; all members must agree"
                    )
        estimated = list(dict.fromkeys(s for m in models for s in m.sources))
        if sources is None:
            sources = estimated
        unserved = [s for s in sources if s not in estimated]
        if unserved or len(set(sources)) != len(sources):
            raise ValueError(
                f"bag sources {list(sources)} must be unique and each estimated by a member "
                f"(the members estimate {estimated})"
            )
        self.members = nn.ModuleList(models)
        self.sources: list[str] = list(sources)
        self.sample_rate: int = first.sample_rate
        self.audio_channels: int = first.audio_channels
        # positions[m][j]: where member m's j-th output goes in the bag's sources (None: unused).
        self.positions: list[list[int | None]] = [
            [self.sources.index(s) if s in self.sources else None for s in m.sources] for m in models
        ]
        self.weights: list[list[float]] = _check_bag_weights(weights, models, self.sources)
        segments = [m.segment for m in models if m.segment is not None]
        self.segment: float | None = min(segments) if segments else None
        domains = {m.domain for m in models}
        self.domain: str = domains.pop() if len(domains) == 1 else "hybrid"

    @property
    def needs_references(self) -> bool:
        """True when any member needs the reference stems."""
        return any(m.needs_references for m in self.members)

    @property
    def whole_track(self) -> bool:
        """True when any member must see whole tracks."""
        return any(m.whole_track for m in self.members)

    @property
    def max_segment(self) -> float | None:
        """The smallest segment any member accepts, or ``None``."""
        limits = [m.max_segment for m in self.members if m.max_segment is not None]
        return min(limits) if limits else None

    @property
    def segment_length(self) -> int | None:
        """The smallest member segment in samples, or ``None``."""
        if self.segment is None:
            return None
        return int(round(self.segment * self.sample_rate))

    def valid_length(self, length: int) -> int:
        """Smallest length >= ``length`` that every member handles exactly.

        Args:
            length: A number of samples.
        """
        for _ in range(1000):
            longest = max(m.valid_length(length) for m in self.members)
            if longest == length:
                return length
            length = longest
        raise ValueError("the bag members' valid lengths do not agree on any length")

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        """Run every member on ``mix`` as is (no chunking) and combine the outputs.

        Prefer :func:`apply_model`, which honours each member's segment and valid length.

        Args:
            mix: The mixture, ``[batch, audio_channels, time]``.
            references: The true stems ``[batch, sources, audio_channels, time]`` (the bag's
                sources) for members that need them. (Default: ``None``)
        """
        return combine_members(
            self, mix, references, lambda member, member_references: member(mix, member_references)
        )

    def member_references(self, index: int, references: Tensor | None) -> Tensor | None:
        """The slice of the bag's ``references`` ``[B, S, C, T]`` that member ``index`` needs.

        Args:
            index: The member's position in the bag.
            references: The true stems of the bag's sources, or ``None``.
        """
        member = self.members[index]
        if not member.needs_references or references is None:
            return None
        positions = self.positions[index]
        if any(p is None for p in positions):
            raise ValueError(
                f"bag member {index} needs references for {list(member.sources)}, but the bag's sources "
                f"are {self.sources}"
            )
        return references[:, positions]

    def check_input(self, mix: Tensor, references: Tensor | None = None) -> None:
        """Raise ``ValueError`` naming the shape when the input does not fit every member.

        Args:
            mix: The mixture, ``[batch, audio_channels, time]``.
            references: The true stems of the bag's sources, or ``None``.
        """
        for index, member in enumerate(self.members):
            member.check_input(mix, self.member_references(index, references))

    def num_parameters(self) -> int:
        """Number of trainable parameters over all members."""
        return sum(m.num_parameters() for m in self.members)


def combine_members(
    bag: BagOfModels,
    mix: Tensor,
    references: Tensor | None,
    run: Callable[[Separator, Tensor | None], Tensor],
) -> Tensor:
    """Weighted per-source average of the bag members' outputs, ``[B, S, C, T]``.

    Args:
        bag: The bag.
        mix: The mixture ``[B, C, T]``.
        references: The true stems of the bag's sources ``[B, S, C, T]``, or ``None``.
        run: Runs one member given its references, returning ``[B, S_member, C, T]``.
    """
    batch, channels, length = mix.shape
    total = mix.new_zeros(batch, len(bag.sources), channels, length)
    for index, (member, weight) in enumerate(zip(bag.members, bag.weights)):
        if not any(weight):
            continue  # a member that serves no source is not run
        out = run(member, bag.member_references(index, references))  # B, S_member, C, T
        for column, position in enumerate(bag.positions[index]):
            if position is not None and weight[position]:
                total[:, position] += weight[position] * out[:, column]
    totals = [sum(column) for column in zip(*bag.weights)]
    return total / _source_weights(totals, total)


def _check_bag_weights(
    weights: Sequence[Sequence[float]] | None, models: Sequence[Separator], sources: list[str]
) -> list[list[float]]:
    if weights is None:
        rows = [[1.0 if s in m.sources else 0.0 for s in sources] for m in models]
    else:
        rows = [[float(w) for w in row] for row in weights]
    if len(rows) != len(models) or any(len(row) != len(sources) for row in rows):
        raise ValueError(
            f"bag weights must be {len(models)} lists (one per member) of {len(sources)} numbers (one per "
            f"source), got lists of lengths {[len(row) for row in rows]}"
        )
    if any(w < 0 for row in rows for w in row):
        raise ValueError(f"bag weights must be non-negative, got {rows}")
    for index, (model, row) in enumerate(zip(models, rows)):
        foreign = [s for s, w in zip(sources, row) if w > 0 and s not in model.sources]
        if foreign:
            raise ValueError(
                f"bag member {index} has a positive weight for {foreign}, which it does not estimate"
            )
    if any(sum(column) <= 0 for column in zip(*rows)):
        raise ValueError(f"every source needs a positive total weight over the bag members, got {rows}")
    return rows


def _source_weights(weights: Sequence[float], like: Tensor) -> Tensor:
    """Per-source weights shaped to broadcast over ``[B, S, C, T]``."""
    return torch.tensor(weights, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


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
# The engine


@dataclass
class _Settings:
    """Options shared by every level of one :func:`apply_model` call."""

    segment: float | None
    overlap: float
    transition_power: float
    batch_size: int
    device: torch.device | None
    progress: bool


def apply_model(
    model: Separator | BagOfModels,
    mix: Tensor,
    references: Tensor | None = None,
    *,
    segment: float | None = None,
    overlap: float = 0.25,
    shifts: int = 0,
    transition_power: float = 1.0,
    normalize: bool = False,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Tensor:
    """Separate ``mix`` with ``model``, chunking, shifting and normalising as asked.

    Runs under ``torch.no_grad()`` and leaves the model's train/eval mode alone (set it
    before calling). The model must already be on ``device``.

    Args:
        model: A separator or a bag of separators.
        mix: One track ``[C, T]`` or a batch ``[B, C, T]``.
        references: The true stems ``[S, C, T]`` / ``[B, S, C, T]``, required by models with
            ``needs_references``. (Default: ``None``)
        segment: Chunk length in seconds, overriding each model's own ``segment``. With no
            segment from either, or for models with ``whole_track``, the whole track is
            processed in one call. (Default: ``None``)
        overlap: Fraction of each chunk shared with the next. (Default: ``0.25``)
        shifts: Number of random time shifts (of up to 0.5 s) to average over; 0 disables
            the shift trick. (Default: ``0``)
        transition_power: Exponent of the triangular cross-fade; larger is sharper, must be
            ``>= 1``. (Default: ``1.0``)
        normalize: Normalise the input by the whole track's mean and standard deviation
            (of the channel average) and undo it on the outputs. (Default: ``False``)
        batch_size: Chunks run through the model at once. (Default: ``4``)
        device: Where the model runs; chunks are moved there and results back.
            (Default: ``None``, the device of the model's parameters, else the CPU)
        seed: Seed of the generator drawing the shifts. (Default: ``0``)
        progress: Show a progress bar over chunks on stderr. (Default: ``False``)

    Returns:
        Stems ``[S, C, T]`` (or ``[B, S, C, T]`` for a batch), float32 on ``mix``'s device.
    """
    check_engine_options(overlap, shifts, transition_power, batch_size, segment)
    batched = mix.dim() == 3
    mix, references = _as_batch(model, mix, references)
    settings = _Settings(
        segment=segment,
        overlap=overlap,
        transition_power=transition_power,
        batch_size=batch_size,
        device=None if device is None else torch.device(device),
        progress=progress,
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if normalize:
            mean, std = _track_statistics(mix)
            mix = (mix - mean) / std
            references = None if references is None else (references - mean.unsqueeze(1)) / std.unsqueeze(1)
        if isinstance(model, BagOfModels):
            stems = combine_members(
                model,
                mix,
                references,
                lambda member, member_references: _apply_shifted(
                    member, mix, member_references, shifts, generator, settings
                ),
            )
        else:
            stems = _apply_shifted(model, mix, references, shifts, generator, settings)
        if normalize:
            stems = stems * std.unsqueeze(1) + mean.unsqueeze(1)
    return stems if batched else stems[0]


def resolve_device(name: str | torch.device) -> torch.device:
    """The device a user named (``-d cpu``, ``-d cuda``, ``-d cuda:1``), checked to exist here.

    Args:
        name: A device name.

    Raises:
        SepzooError: The name is not a device, or no such device is available.
    """
    from sepzoo.errors import SepzooError

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SepzooError(f"-d {name}: not a device; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SepzooError(f"-d {name}: no CUDA device is available here; use -d cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SepzooError(f"-d {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise SepzooError(f"-d {name}: expected cpu, cuda or cuda:N")
    return device


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


def _model_name(model: Separator | BagOfModels) -> str:
    return model.registry_name or type(model).__name__


def _as_batch(
    model: Separator | BagOfModels, mix: Tensor, references: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Check shapes and return float32 ``[B, C, T]`` / ``[B, S, C, T]`` tensors."""
    if mix.dim() not in (2, 3) or mix.shape[-2] != model.audio_channels or mix.shape[-1] == 0:
        raise ValueError(
            f"expected mix of shape [{model.audio_channels}, time] or [batch, {model.audio_channels}, time] "
            f"for {_model_name(model)}, got {list(mix.shape)}"
        )
    if not model.needs_references:
        return (mix if mix.dim() == 3 else mix.unsqueeze(0)).float(), None
    if references is None:
        raise ValueError(f"{_model_name(model)} needs the reference stems; pass references")
    expected = [*mix.shape[:-2], len(model.sources), *mix.shape[-2:]]
    if list(references.shape) != expected:
        raise ValueError(f"expected references of shape {expected}, got {list(references.shape)}")
    if mix.dim() == 2:
        mix, references = mix.unsqueeze(0), references.unsqueeze(0)
    return mix.float(), references.float().to(mix.device)


def _track_statistics(mix: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of each track's channel average, shaped ``[B, 1, 1]``."""
    mono = mix.mean(dim=1)  # B, T
    mean = mono.mean(dim=-1)
    # The population std stays defined for one-sample tracks; a silent track keeps scale 1e-8.
    std = mono.std(dim=-1, correction=0).clamp_min(1e-8)
    return mean.view(-1, 1, 1), std.view(-1, 1, 1)


def _apply_shifted(
    model: Separator,
    mix: Tensor,
    references: Tensor | None,
    shifts: int,
    generator: torch.Generator,
    settings: _Settings,
) -> Tensor:
    """Average the outputs over ``shifts`` random delays of the input (or run once)."""
    if shifts == 0:
        return _apply_chunked(model, mix, references, settings)
    length = mix.shape[-1]
    max_shift = max(1, int(MAX_SHIFT_SECONDS * model.sample_rate))
    total = None
    for _ in range(shifts):
        offset = int(torch.randint(0, max_shift, (1,), generator=generator))
        delay = max_shift - offset
        shifted_mix = F.pad(mix, (delay, offset))
        shifted_references = None if references is None else F.pad(references, (delay, offset))
        out = _apply_chunked(model, shifted_mix, shifted_references, settings)
        out = out[..., delay : delay + length]
        total = out if total is None else total + out
    assert total is not None
    return total / shifts


def _chunk_length(model: Separator, settings: _Settings) -> int | None:
    """Chunk length in samples, or ``None`` to process whole tracks."""
    if model.whole_track:
        return None
    segment = settings.segment if settings.segment is not None else model.segment
    if segment is None:
        return None
    # Truncated, not rounded, as the official Demucs engine does: same chunks, same outputs.
    return max(1, int(segment * model.sample_rate))


def _model_device(model: nn.Module, requested: torch.device | None) -> torch.device:
    if requested is not None:
        return requested
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _apply_chunked(model: Separator, mix: Tensor, references: Tensor | None, settings: _Settings) -> Tensor:
    """Overlap-add the model's outputs over chunks of the whole input, ``[B, S, C, T]``.

    Each chunk is ``segment`` long (the last ones shorter, cut at the end of the track), widened
    with real neighbouring audio to ``model.valid_length`` of its own length, and weighted by
    the start of the triangular window; chunks of equal length run in batches.
    """
    length = mix.shape[-1]
    segment_length = _chunk_length(model, settings)
    if segment_length is None:
        segment_length, offsets = length, [0]
        window = torch.ones(length)  # a single call: nothing to cross-fade
    else:
        _check_segment(model, segment_length)
        offsets = plan_chunks(length, segment_length, settings.overlap)
        window = triangular_weight(segment_length, settings.transition_power)
    device = _model_device(model, settings.device)
    batch, channels = mix.shape[:2]
    accumulator = OverlapAdd([batch, len(model.sources), channels], length, window, device=mix.device)
    # Chunks that reach the model at the same length run in one batch, short last ones included.
    by_padded_length: dict[int, list[tuple[int, int]]] = {}
    for offset in offsets:
        chunk_length = min(segment_length, length - offset)
        padded_length = _padded_length(model, segment_length, chunk_length)
        by_padded_length.setdefault(padded_length, []).append((offset, chunk_length))
    bar = tqdm.tqdm(total=len(offsets), unit="chunk", disable=not settings.progress, leave=False)
    with bar:
        for padded_length, chunks in by_padded_length.items():
            for group in _groups(chunks, settings.batch_size):
                chunk_mix = torch.cat([extract_chunk(mix, o, n, padded_length) for o, n in group])
                chunk_references = None
                if references is not None:
                    pieces = [extract_chunk(references, o, n, padded_length) for o, n in group]
                    chunk_references = torch.cat(pieces)
                out = _call_model(model, chunk_mix, chunk_references, device)  # len(group) * B, S, C, T'
                for index, (offset, chunk_length) in enumerate(group):
                    piece = out[index * batch : (index + 1) * batch]
                    accumulator.add(center_crop(piece, chunk_length), offset)
                bar.update(len(group))
    return accumulator.result()


def _padded_length(model: Separator, segment_length: int, chunk_length: int) -> int:
    """Length a chunk of ``chunk_length`` samples reaches the model at, real context included."""
    padded_length = model.valid_length(segment_length if model.fixed_chunk_length else chunk_length)
    if padded_length < chunk_length:
        raise ValueError(
            f"{_model_name(model)}.valid_length({chunk_length}) returned {padded_length}, which is shorter"
        )
    return padded_length


def _check_segment(model: Separator, segment_length: int) -> None:
    """Refuse, naming both, a chunk longer than the model accepts."""
    from sepzoo.errors import SepzooError

    limit = model.max_segment
    if limit is not None and segment_length > int(limit * model.sample_rate):
        raise SepzooError(
            f"segment {segment_length / model.sample_rate:g} s is longer than {_model_name(model)} accepts "
            f"({limit:g} s, the segment it was trained on); pass a shorter --segment"
        )


def _groups(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _call_model(model: Separator, mix: Tensor, references: Tensor | None, device: torch.device) -> Tensor:
    """One forward pass on ``device``; returns float32 stems on ``mix``'s device."""
    mix_on_device = mix.to(device)
    if references is None:
        out = model(mix_on_device)
    else:
        out = model(mix_on_device, references.to(device))
    expected = [mix.shape[0], len(model.sources), *mix.shape[1:]]
    if list(out.shape) != expected:
        raise ValueError(
            f"{_model_name(model)} returned stems of shape {list(out.shape)} for input {list(mix.shape)}; "
            f"expected {expected}"
        )
    return out.float().to(mix.device)


# ----------------------------------------------------------------------------------------------
# Streaming


class RunningStatistics:
    """Mean and standard deviation of a track's channel average, gathered block by block.

    Gives what :func:`apply_model` uses with ``normalize=True`` (the population standard
    deviation, floored at 1e-8 so that a silent track keeps scale 1e-8), for a track that is
    never held in memory at once: feed it every block of a first pass, then read
    :meth:`result`. Blocks are merged with Chan's parallel update in float64, so long tracks lose
    no precision to a running sum of squares.
    """

    def __init__(self) -> None:
        self.count = 0
        self._mean = 0.0
        self._squares = 0.0  # sum of squared deviations from the running mean

    def update(self, block: Tensor) -> None:
        """Add one block ``[C, T]`` of the track.

        Args:
            block: The next samples of the track, ``[channels, time]``.
        """
        mono = block.detach().to("cpu", torch.float64).mean(dim=0)  # T
        count = mono.numel()
        if count == 0:
            return
        mean = float(mono.mean())
        squares = float(((mono - mean) ** 2).sum())
        total = self.count + count
        delta = mean - self._mean
        self._squares += squares + delta * delta * self.count * count / total
        self._mean += delta * count / total
        self.count = total

    def result(self) -> tuple[float, float]:
        """The track's ``(mean, std)``; raises ``ValueError`` when no sample was seen."""
        if self.count == 0:
            raise ValueError("cannot take the statistics of a signal of length 0")
        std = (self._squares / self.count) ** 0.5
        return self._mean, max(std, 1e-8)


def track_statistics(blocks: Iterable[Tensor]) -> tuple[float, float]:
    """``(mean, std)`` of a track given as blocks ``[C, T]``, as ``apply_model(normalize=True)``
    computes them on the whole track.

    Args:
        blocks: The track, block after block.
    """
    statistics = RunningStatistics()
    for block in blocks:
        statistics.update(block)
    return statistics.result()


class _Fifo:
    """Consecutive pieces ``[..., n]`` of one signal, taken from the front."""

    def __init__(self) -> None:
        self.pieces: list[Tensor] = []
        self.length = 0

    def push(self, piece: Tensor) -> None:
        if piece.shape[-1]:
            self.pieces.append(piece)
            self.length += piece.shape[-1]

    def pop(self, count: int) -> Tensor:
        taken: list[Tensor] = []
        needed = count
        while needed:
            head = self.pieces[0]
            if head.shape[-1] <= needed:
                taken.append(self.pieces.pop(0))
                needed -= head.shape[-1]
            else:
                taken.append(head[..., :needed])
                self.pieces[0] = head[..., needed:]
                needed = 0
        self.length -= count
        return taken[0] if len(taken) == 1 else torch.cat(taken, dim=-1)


@dataclass(frozen=True)
class _Chunk:
    offset: int  # first sample, in the lane's time
    length: int  # samples it contributes
    padded_length: int  # samples it reaches the model with, real context included


class _Lane:
    """One member of the model at one time shift: its chunk plan and overlap-add window.

    A lane sees the track delayed by ``delay`` samples and followed by ``extra - delay`` zeros
    (``extra`` is the largest shift, 0 without shifts), as :func:`apply_model` pads it: lane
    sample ``p`` is track sample ``p - delay``. Chunks are added in order of their offsets, so
    once the chunk at offset ``o`` has been added, every lane sample before the next offset is
    final.
    """

    def __init__(
        self,
        model: Separator,
        member: int,
        delay: int,
        extra: int,
        settings: _Settings,
        channels: int,
    ) -> None:
        self.model = model
        self.member = member
        self.delay = delay
        self.extra = extra
        segment_length = _chunk_length(model, settings)
        if segment_length is not None:
            _check_segment(model, segment_length)
            self.stride = max(1, int((1 - settings.overlap) * segment_length))
            self.window = triangular_weight(segment_length, settings.transition_power)
            # Chunks reach back at most this far before their offset (a short last chunk of a
            # fixed-length model is the widest); the input buffer keeps that much history.
            self.reach = _padded_length(model, segment_length, segment_length)
        else:
            self.stride = 0
            self.reach = 0
        self.segment_length = segment_length
        self.next_offset = 0  # the next chunk to claim
        self.added_offset = 0  # the next chunk to overlap-add (batches run ahead with jobs > 1)
        self.done = False  # no chunk left to claim
        self.total = torch.zeros(len(model.sources), channels, 0)  # S, C, n: from acc_start on
        self.weight_sum = torch.zeros(0)
        self.acc_start = 0
        self.output = _Fifo()  # final samples, in track time, from emitted on
        self.emitted = 0

    def lane_length(self, track_length: int) -> int:
        return track_length + self.extra

    def chunk_at(self, offset: int, received: int, track_length: int | None) -> _Chunk | None:
        """The chunk at ``offset`` if its input has arrived (``None``: not yet, or no chunk).

        Args:
            offset: Its first sample in lane time.
            received: Track samples that have arrived.
            track_length: The track's length once the input has ended, else ``None``.
        """
        if self.segment_length is None:  # one chunk over the whole track, once it is known
            if track_length is None or offset > 0:
                return None
            length = self.lane_length(track_length)
            return _Chunk(0, length, _padded_length(self.model, length, length))
        if track_length is not None:
            lane_length = self.lane_length(track_length)
            if offset >= lane_length:
                return None
            length = min(self.segment_length, lane_length - offset)
            return _Chunk(offset, length, _padded_length(self.model, self.segment_length, length))
        # The track goes on at least to `received`; a chunk whose whole window lies before it is
        # a full one (the shift's zeros only lengthen the lane).
        chunk = _Chunk(offset, self.segment_length, self.reach)
        if self.window_start(chunk) + chunk.padded_length > received:
            return None
        return chunk

    def window_start(self, chunk: _Chunk) -> int:
        """First track sample of the chunk's input, context included (may be negative)."""
        return chunk.offset - (chunk.padded_length - chunk.length) // 2 - self.delay

    def next_batch(self, received: int, track_length: int | None, batch_size: int) -> list[_Chunk]:
        """Claim the next chunks that run together: up to ``batch_size`` ready, consecutive ones of
        one padded length, grouped as :func:`apply_model` groups them."""
        if self.done:
            return []
        batch: list[_Chunk] = []
        offset = self.next_offset
        while len(batch) < batch_size:
            chunk = self.chunk_at(offset, received, track_length)
            if chunk is None or (batch and chunk.padded_length != batch[0].padded_length):
                break
            batch.append(chunk)
            if self.segment_length is None:
                offset = chunk.length  # past the lane's end: the one chunk is claimed
                break
            offset += self.stride
        ended = track_length is not None
        if not batch or (len(batch) < batch_size and not ended):
            return []  # before the end of the input, batches are only run full
        self.next_offset = offset
        if ended and self.chunk_at(offset, received, track_length) is None:
            self.done = True
        return batch

    def add(self, batch: Sequence[_Chunk], outputs: Tensor) -> None:
        """Overlap-add the model's outputs ``[len(batch), S, C, T']`` of a claimed batch."""
        for chunk, out in zip(batch, outputs):
            piece = center_crop(out, chunk.length)  # S, C, length
            end = chunk.offset + chunk.length - self.acc_start
            if end > self.total.shape[-1]:
                grow = end - self.total.shape[-1]
                self.total = torch.cat(
                    [self.total, self.total.new_zeros(*self.total.shape[:-1], grow)], dim=-1
                )
                self.weight_sum = torch.cat([self.weight_sum, self.weight_sum.new_zeros(grow)])
            start = chunk.offset - self.acc_start
            weight = (
                self.window[: chunk.length] if self.segment_length is not None else torch.ones(chunk.length)
            )
            self.total[..., start:end] += piece * weight
            self.weight_sum[start:end] += weight
            self.added_offset = chunk.offset + (
                self.stride if self.segment_length is not None else chunk.length
            )

    def flush(self, track_length: int | None) -> None:
        """Move the samples no later chunk touches into :attr:`output`, in track time."""
        finished = self.done and self.added_offset == self.next_offset and track_length is not None
        frontier = self.lane_length(track_length) if finished else self.added_offset
        count = min(frontier - self.acc_start, self.total.shape[-1])
        if count <= 0:
            return
        weight = self.weight_sum[:count]
        if bool((weight <= 0).any()):
            raise RuntimeError("some output samples were not covered by any chunk")
        final = self.total[..., :count] / weight  # S, C, count
        self.total = self.total[..., count:]
        self.weight_sum = self.weight_sum[count:]
        first = self.acc_start - self.delay  # track time of final[..., 0]
        self.acc_start += count
        end = first + count if track_length is None else min(first + count, track_length)
        begin = max(first, self.emitted + self.output.length)
        if end > begin:
            self.output.push(final[..., begin - first : end - first])

    @property
    def ready_until(self) -> int:
        """Track samples this lane has finished (from the start of the track)."""
        return self.emitted + self.output.length

    def keep_from(self) -> float:
        """First track sample this lane may still need as input."""
        if self.done:
            return float("inf")
        if self.segment_length is None:
            return float("-inf")
        return float(self.next_offset - self.delay - self.reach)

    @property
    def held(self) -> int:
        return self.total.shape[-1] + self.output.length


class StreamingEngine:
    """:func:`apply_model` for a track that arrives, and leaves, block by block.

    Push blocks ``[C, t]`` of one track in order and collect the stems that are finished after
    each push; :meth:`finish` marks the end of the track and returns the rest. The stems are
    those :func:`apply_model` gives on the whole track with the same options (same chunks, same
    batches, same shifts drawn from the same seed; they differ only by float rounding), while
    memory holds only what the chunks in flight need: the input from the earliest sample a
    pending chunk reads (its offset less one padded chunk) and, per member and shift, the
    overlap-add window of the chunks not yet final. Nothing depends on the track's length,
    which need not be known in advance (a truncated file simply ends early).

    Models with ``whole_track`` or without a segment see the whole track in one call, so the
    engine then holds all of it, as :func:`apply_model` does.

    Whole-track normalisation needs statistics before the first chunk: compute them in a first
    pass (:func:`track_statistics`) and pass them as ``statistics``.

    With ``jobs > 1`` up to ``jobs`` batches run at once in a thread pool (torch releases the
    GIL inside its kernels). Each thread then uses torch's intra-op threads as well, so lower
    ``torch.set_num_threads`` to about ``cores // jobs`` while the engine runs
    (:func:`sepzoo.separate.separate_files` does).

    Args:
        model: A separator or a bag of separators, in eval mode, on ``device``.
        segment: Chunk length in seconds, as in :func:`apply_model`. (Default: ``None``)
        overlap: Fraction of each chunk shared with the next. (Default: ``0.25``)
        shifts: Number of random time shifts to average over. (Default: ``0``)
        transition_power: Exponent of the triangular cross-fade. (Default: ``1.0``)
        statistics: ``(mean, std)`` of the whole track's channel average to normalise by, as
            ``apply_model(normalize=True)`` does; ``None`` does not normalise. (Default: ``None``)
        batch_size: Chunks run through the model at once. (Default: ``4``)
        device: Where the model runs. (Default: ``None``, the device of its parameters)
        seed: Seed of the generator drawing the shifts. (Default: ``0``)
        jobs: Batches run at the same time. (Default: ``1``)
    """

    def __init__(
        self,
        model: Separator | BagOfModels,
        *,
        segment: float | None = None,
        overlap: float = 0.25,
        shifts: int = 0,
        transition_power: float = 1.0,
        statistics: tuple[float, float] | None = None,
        batch_size: int = 4,
        device: str | torch.device | None = None,
        seed: int = 0,
        jobs: int = 1,
    ) -> None:
        check_engine_options(overlap, shifts, transition_power, batch_size, segment)
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        if model.needs_references:
            raise ValueError(f"{_model_name(model)} needs the reference stems, which a stream does not carry")
        self.model = model
        self.channels = model.audio_channels
        self.batch_size = batch_size
        self.jobs = jobs
        settings = _Settings(segment, overlap, transition_power, batch_size, None, False)
        self.device = _model_device(model, None if device is None else torch.device(device))
        self.members: list[Separator] = list(model.members) if isinstance(model, BagOfModels) else [model]
        weights = model.weights if isinstance(model, BagOfModels) else [[1.0] * len(model.sources)]
        self.shifts = shifts
        generator = torch.Generator().manual_seed(seed)
        self.lanes: list[_Lane] = []
        for index, (member, weight) in enumerate(zip(self.members, weights)):
            if not any(weight):
                continue  # as apply_model: a member that serves no source is not run
            if shifts == 0:
                self.lanes.append(_Lane(member, index, 0, 0, settings, self.channels))
                continue
            max_shift = max(1, int(MAX_SHIFT_SECONDS * member.sample_rate))
            for _ in range(shifts):
                offset = int(torch.randint(0, max_shift, (1,), generator=generator))
                self.lanes.append(
                    _Lane(member, index, max_shift - offset, max_shift, settings, self.channels)
                )
        self.statistics = None
        if statistics is not None:
            mean, std = statistics
            self.statistics = (
                torch.tensor(mean, dtype=torch.float32),
                torch.tensor(std, dtype=torch.float32),
            )
        # Consecutive input blocks [C, n], the first starting at track sample input_start: kept as
        # a list so that adding a block copies nothing.
        self.input: list[Tensor] = []
        self.input_start = 0
        self.buffered = 0
        self.received = 0
        self.emitted = 0
        self.track_length: int | None = None
        self.peak_held = 0
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(jobs) if jobs > 1 else None

    @property
    def held(self) -> int:
        """Samples (time steps) held now: the input buffer plus every lane's window and output."""
        return self.buffered + sum(lane.held for lane in self.lanes)

    def push(self, block: Tensor) -> Tensor:
        """Add the next samples of the track and return the stems finished so far.

        Args:
            block: ``[audio_channels, t]`` samples following the previous block.

        Returns:
            The next finished stems ``[S, C, n]`` (``n`` may be 0), float32 on the CPU.
        """
        if self.track_length is not None:
            raise RuntimeError("the stream has already finished")
        if block.dim() != 2 or block.shape[0] != self.channels:
            raise ValueError(
                f"expected blocks of shape [{self.channels}, time] for {_model_name(self.model)}, "
                f"got {list(block.shape)}"
            )
        block = block.detach().to("cpu", torch.float32)
        if self.statistics is not None:
            mean, std = self.statistics
            block = (block - mean) / std
        if block.shape[-1]:
            self.input.append(block)
            self.buffered += block.shape[-1]
            self.received += block.shape[-1]
        self._note_held()
        self._run_ready()
        return self._emit()

    def finish(self) -> Tensor:
        """Mark the end of the track and return the remaining stems ``[S, C, n]``."""
        if self.track_length is not None:
            raise RuntimeError("the stream has already finished")
        if self.received == 0:
            raise ValueError("cannot separate a signal of length 0")
        self.track_length = self.received
        try:
            self._run_ready()
            out = self._emit()
        finally:
            self.close()
        if self.emitted != self.track_length:
            raise RuntimeError(f"the stream gave {self.emitted} samples for a track of {self.track_length}")
        return out

    def close(self) -> None:
        """Stop the worker threads (also done by :meth:`finish`)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _note_held(self) -> None:
        self.peak_held = max(self.peak_held, self.held)

    def _fill_window(self, lane: _Lane, chunk: _Chunk, out: Tensor) -> None:
        """Copy the chunk's input into ``out`` ``[C, padded_length]`` (zeros), context included."""
        start = lane.window_start(chunk)
        inside_start, inside_end = max(start, 0), min(start + chunk.padded_length, self.received)
        if inside_end <= inside_start:
            return  # all of it in the shift's zeros
        if inside_start < self.input_start:
            raise RuntimeError("the streaming buffer no longer holds the input of a chunk")
        position = self.input_start
        for block in self.input:
            block_end = position + block.shape[-1]
            first, last = max(position, inside_start), min(block_end, inside_end)
            if first < last:
                out[:, first - start : last - start] = block[:, first - position : last - position]
            if block_end >= inside_end:
                break
            position = block_end

    def _claim(self) -> list[tuple[_Lane, list[_Chunk], Tensor]]:
        """Up to ``jobs`` batches whose input has arrived, lane after lane."""
        claimed: list[tuple[_Lane, list[_Chunk], Tensor]] = []
        for lane in self.lanes:
            while len(claimed) < self.jobs:
                batch = lane.next_batch(self.received, self.track_length, self.batch_size)
                if not batch:
                    break
                inputs = torch.zeros(len(batch), self.channels, batch[0].padded_length)  # N, C, P
                for chunk, row in zip(batch, inputs):
                    self._fill_window(lane, chunk, row)
                claimed.append((lane, batch, inputs))
            if len(claimed) == self.jobs:
                break
        return claimed

    def _run_ready(self) -> None:
        while True:
            claimed = self._claim()
            if not claimed:
                break
            calls = [(lane.model, inputs) for lane, _, inputs in claimed]
            if self._pool is None or len(calls) == 1:
                outputs = [self._forward(*call) for call in calls]
            else:
                outputs = list(self._pool.map(lambda call: self._forward(*call), calls))
            for (lane, batch, _), out in zip(claimed, outputs):
                lane.add(batch, out)
                lane.flush(self.track_length)
            self._note_held()
            self._trim_input()
            _release_free_memory()

    def _forward(self, model: Separator, inputs: Tensor) -> Tensor:
        with torch.no_grad():  # per thread: grad mode is thread-local
            return _call_model(model, inputs, None, self.device)

    def _trim_input(self) -> None:
        """Forget the input blocks that end before the earliest sample a lane may still read."""
        keep = min((lane.keep_from() for lane in self.lanes), default=float("inf"))
        while self.input and self.input_start + self.input[0].shape[-1] <= keep:
            dropped = self.input.pop(0).shape[-1]
            self.input_start += dropped
            self.buffered -= dropped

    def _emit(self) -> Tensor:
        """Combine the lanes' final samples over shifts and members, as :func:`apply_model` does."""
        ready = min(lane.ready_until for lane in self.lanes)
        count = ready - self.emitted
        sources = len(self.model.sources)
        if count <= 0:
            return torch.zeros(sources, self.channels, 0)
        pieces = [lane.output.pop(count) for lane in self.lanes]
        for lane in self.lanes:
            lane.emitted += count
        by_member: dict[int, Tensor] = {}
        for lane, piece in zip(self.lanes, pieces):
            by_member[lane.member] = piece if lane.member not in by_member else by_member[lane.member] + piece
        if self.shifts:
            by_member = {member: total / self.shifts for member, total in by_member.items()}
        if isinstance(self.model, BagOfModels):
            # combine_members asks for the members it uses in order: those that have lanes.
            in_order = iter([by_member[index] for index in sorted(by_member)])
            stems = combine_members(
                self.model, torch.empty(1, self.channels, count), None, lambda *_: next(in_order).unsqueeze(0)
            )[0]
        else:
            stems = by_member[0]
        if self.statistics is not None:
            mean, std = self.statistics
            stems = stems * std + mean
        self.emitted = ready
        return stems


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def _release_free_memory() -> None:
    """Hand the C allocator's free pages back to the system, where it is glibc.

    glibc keeps the memory of freed activations in its heap, where the next chunks' allocations
    of other sizes fragment it: over 600 s of Hybrid Demucs the peak crept up by 10% above the
    first chunk's. Trimming after each round of batches keeps it there, for a few milliseconds.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def stream_model(
    model: Separator | BagOfModels,
    blocks: Iterable[Tensor],
    *,
    segment: float | None = None,
    overlap: float = 0.25,
    shifts: int = 0,
    transition_power: float = 1.0,
    statistics: tuple[float, float] | None = None,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    seed: int = 0,
    jobs: int = 1,
) -> Iterator[Tensor]:
    """Separate a track given as blocks ``[C, t]``, yielding the stems ``[S, C, n]`` in order.

    A generator over :class:`StreamingEngine` (see it for the memory it holds and for every
    argument): concatenated, the yielded stems are :func:`apply_model`'s stems of the
    concatenated blocks, with ``normalize=True`` when ``statistics`` are given.

    Args:
        model: A separator or a bag, in eval mode, on ``device``.
        blocks: The track, block after block.
        segment: Chunk length in seconds. (Default: ``None``, each model's)
        overlap: Fraction of each chunk shared with the next. (Default: ``0.25``)
        shifts: Random time shifts to average over. (Default: ``0``)
        transition_power: Exponent of the cross-fade. (Default: ``1.0``)
        statistics: ``(mean, std)`` to normalise by (:func:`track_statistics`). (Default: ``None``)
        batch_size: Chunks per forward pass. (Default: ``4``)
        device: Where the model runs. (Default: ``None``, its parameters' device)
        seed: Seed of the shifts. (Default: ``0``)
        jobs: Batches run at the same time. (Default: ``1``)
    """
    engine = StreamingEngine(
        model,
        segment=segment,
        overlap=overlap,
        shifts=shifts,
        transition_power=transition_power,
        statistics=statistics,
        batch_size=batch_size,
        device=device,
        seed=seed,
        jobs=jobs,
    )
    try:
        for block in blocks:
            out = engine.push(block)
            if out.shape[-1]:
                yield out
        out = engine.finish()
        if out.shape[-1]:
            yield out
    finally:
        engine.close()


__all__ = [
    "MAX_SHIFT_SECONDS",
    "BagOfModels",
    "OverlapAdd",
    "RunningStatistics",
    "StreamingEngine",
    "apply_model",
    "center_crop",
    "check_engine_options",
    "extract_chunk",
    "plan_chunks",
    "resolve_device",
    "stream_model",
    "track_statistics",
    "triangular_weight",
]
