"""Bags of models: several separators whose outputs are combined per source.

A bag is a model like any other to the code that holds one; only the engine looks inside, so
that each member is chunked with its own segment and valid length.

How the members' outputs become the bag's is the bag's :class:`Combination`: a weighted mean
(the default, which also joins one-model-per-target bags), or the median, minimum or maximum,
taken per sample of the waveforms or per bin of their spectrograms. :class:`MemberCombiner` is
the one place that combines, for whole tracks and for streams alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepzoo.dsp.stft import hann_window, real_edge_bins
from sepzoo.models.base import Separator, seconds_to_samples

MODES = ("mean", "median", "min", "max")
DOMAINS = ("wave", "spec")


@dataclass(frozen=True)
class Combination:
    """How a bag combines its members' outputs for each source.

    * ``mean``: the weighted average (the only mode that takes weights, and the only one whose
      members may estimate different sources);
    * ``median``: the median over the members (the mean of the two middle ones for an even
      number of members);
    * ``min`` / ``max``: the member value of smallest / largest absolute value.

    In the ``wave`` domain a mode is taken per sample. In the ``spec`` domain each member's
    stem is transformed with a centred STFT (``n_fft``, ``hop``, periodic Hann window, zero
    padding at the ends), the mode is taken per complex bin (``median``, ``min`` and ``max``
    choose bins by magnitude, as MSST's ``min_fft`` and ``max_fft`` do, so the chosen bin keeps
    its member's phase) and the result is inverted back to the stem's length.

    Args:
        mode: One of ``mean``, ``median``, ``min``, ``max``. (Default: ``"mean"``)
        domain: ``wave`` or ``spec``. (Default: ``"wave"``)
        n_fft: FFT size in the spectrogram domain. (Default: ``2048``)
        hop: Samples between STFT frames, at most ``n_fft // 2``. (Default: ``512``)
    """

    mode: str = "mean"
    domain: str = "wave"
    n_fft: int = 2048
    hop: int = 512

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"bag mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.domain not in DOMAINS:
            raise ValueError(f"bag domain {self.domain!r} is not one of {', '.join(DOMAINS)}")
        for name in ("n_fft", "hop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"bag {name} must be an integer, got {value!r}")
        if self.n_fft < 2 or not 1 <= self.hop <= self.n_fft // 2:
            raise ValueError(
                f"bag STFT needs n_fft >= 2 and 1 <= hop <= n_fft // 2, "
                f"got n_fft={self.n_fft}, hop={self.hop}"
            )

    def as_dict(self) -> dict[str, str | int]:
        """The settings as plain values, as a model file stores them."""
        return {"mode": self.mode, "domain": self.domain, "n_fft": self.n_fft, "hop": self.hop}

    @property
    def is_default(self) -> bool:
        """True for the weighted mean of waveforms, what every bag did before modes existed."""
        return self.mode == "mean" and self.domain == "wave"


class BagOfModels(nn.Module):
    """Several separators whose outputs are combined per source: by default averaged with weights.

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
        combination: How the outputs are combined. A mode other than ``mean`` needs members
            that all estimate the same sources, and takes no weights (``None``, or every
            weight 1). (Default: ``None``, the weighted mean of the waveforms)
    """

    registry_name: str | None = None

    def __init__(
        self,
        models: Sequence[Separator],
        weights: Sequence[Sequence[float]] | None = None,
        sources: Sequence[str] | None = None,
        combination: Combination | None = None,
    ) -> None:
        super().__init__()
        combination = combination or Combination()
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
        if combination.mode != "mean":
            _check_same_sources(models, combination.mode)
        self.weights: list[list[float]] = _check_bag_weights(weights, models, self.sources)
        if combination.mode != "mean" and any(w != 1.0 for row in self.weights for w in row):
            raise ValueError(
                f"bag weights apply to mode 'mean' only; mode {combination.mode!r} got weights {self.weights}"
            )
        self.combination = combination
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
        return seconds_to_samples(self.segment, self.sample_rate)

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

    def serving(self) -> list[int]:
        """Positions of the members that serve some source, in the order they run: a member
        whose weights are all zero is never run."""
        return [index for index, weight in enumerate(self.weights) if any(weight)]

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
    """The bag's stems ``[B, S, C, T]`` from its members' outputs on the whole of ``mix``,
    combined as :attr:`BagOfModels.combination` says (by :class:`MemberCombiner`).

    Args:
        bag: The bag.
        mix: The mixture ``[B, C, T]``.
        references: The true stems of the bag's sources ``[B, S, C, T]``, or ``None``.
        run: Runs one member given its references, returning ``[B, S_member, C, T]``; called
            for the serving members in order (:meth:`BagOfModels.serving`).
    """
    outputs = (run(bag.members[i], bag.member_references(i, references)) for i in bag.serving())
    combiner = MemberCombiner(bag)
    stems = combiner.push(outputs)
    return torch.cat([stems, combiner.finish()], dim=-1)


# Frames transformed at once in the spectrogram domain, to bound the memory of a whole track's.
_FRAMES_PER_STEP = 256


class MemberCombiner:
    """Combines the serving members' outputs into the bag's stems, for a whole track or block by block.

    Feed it consecutive, equally long pieces of every serving member's output with
    :meth:`push` and call :meth:`finish` at the end; concatenated, what they return is the same
    whether the track came in one piece or many. In the waveform domain every piece is combined
    at once. In the spectrogram domain a sample is final only once every STFT frame over it has
    been combined, so the stems lag up to ``n_fft`` samples behind the input, and the frames at
    the track's end (which the STFT pads with zeros) wait for :meth:`finish`. This is the
    whole-track STFT's combination, frame for frame, with none of it held whole.

    Args:
        bag: The bag whose members' outputs are combined.
    """

    def __init__(self, bag: BagOfModels) -> None:
        self.bag = bag
        self.combination = bag.combination
        self.serving = bag.serving()
        self.received = 0
        self._shape: tuple[int, ...] = (1, len(bag.sources), bag.audio_channels)
        self._dtype = torch.float32
        self._device = torch.device("cpu")
        # Spectrogram domain, in samples of the track padded with n_fft // 2 zeros in front:
        # the members' samples not yet needed by a frame, from _pending_start on, and the
        # overlap-added frames (with their window envelope) from _sum_start on.
        self._pending: Tensor | None = None
        self._pending_start = 0
        self._next_frame = 0
        self._sum: Tensor | None = None
        self._envelope: Tensor | None = None
        self._sum_start = 0

    def push(self, outputs: Iterable[Tensor]) -> Tensor:
        """Add the next samples of every serving member; the bag's stems finished so far.

        Args:
            outputs: One tensor ``[B, S_member, C, n]`` per serving member, in the order of
                :meth:`BagOfModels.serving`, all with the same ``n``.

        Returns:
            The next stems ``[B, S, C, n']``, in the members' dtype; ``n' = n`` in the
            waveform domain.
        """
        combination = self.combination
        if combination.domain == "wave" and combination.mode == "mean":
            stems = self._weighted_sum(outputs)
            self._note(stems)
            return stems
        stack = self._stack(outputs)  # M, B, S, C, n
        self._note(stack[0])
        if combination.domain == "wave":
            return _reduce(stack, self._weights(stack), combination.mode)
        if self._pending is None:
            self._pending = F.pad(stack, (combination.n_fft // 2, 0))
        else:
            self._pending = torch.cat([self._pending, stack], dim=-1)
        return self._transform(final=False)

    def finish(self) -> Tensor:
        """The stems still held at the track's end, ``[B, S, C, n]`` (``n`` is 0 in the waveform domain)."""
        if self.combination.domain == "wave" or self._pending is None:
            return self._empty()
        return self._transform(final=True)

    def _empty(self) -> Tensor:
        """No samples of the stems, ``[B, S, C, 0]``."""
        return torch.zeros(*self._shape, 0, dtype=self._dtype, device=self._device)

    def _note(self, stems: Tensor) -> None:
        """Count the samples of ``stems`` ``[B, S, C, n]`` and remember their shape and dtype."""
        self.received += stems.shape[-1]
        self._shape, self._dtype, self._device = tuple(stems.shape[:-1]), stems.dtype, stems.device

    def _weights(self, like: Tensor) -> Tensor:
        """The serving members' weights ``[M, S]`` in ``like``'s real dtype."""
        rows = [self.bag.weights[index] for index in self.serving]
        return torch.tensor(rows, dtype=like.real.dtype, device=like.device)

    def _weighted_sum(self, outputs: Iterable[Tensor]) -> Tensor:
        """The weighted mean of the waveforms, adding one member at a time."""
        bag, total = self.bag, None
        for index, out in zip(self.serving, outputs, strict=True):
            if total is None:
                total = out.new_zeros(out.shape[0], len(bag.sources), *out.shape[2:])
            weight = bag.weights[index]
            for column, position in enumerate(bag.positions[index]):
                if position is not None and weight[position]:
                    total[:, position] += weight[position] * out[:, column]
        assert total is not None
        totals = [sum(column) for column in zip(*bag.weights)]
        return total / _source_weights(totals, total)

    def _stack(self, outputs: Iterable[Tensor]) -> Tensor:
        """The serving members' outputs in the bag's source order, ``[M, B, S, C, n]`` (zeros
        where a member does not estimate a source)."""
        rows = []
        for index, out in zip(self.serving, outputs, strict=True):
            row = out.new_zeros(out.shape[0], len(self.bag.sources), *out.shape[2:])
            for column, position in enumerate(self.bag.positions[index]):
                if position is not None:
                    row[:, position] = out[:, column]
            rows.append(row)
        return torch.stack(rows)

    def _transform(self, final: bool) -> Tensor:
        """Combine every STFT frame whose samples have all arrived (all frames when ``final``)
        and return the samples no later frame touches."""
        n_fft, hop = self.combination.n_fft, self.combination.hop
        half = n_fft // 2
        pending = self._pending
        assert pending is not None
        end = self._pending_start + pending.shape[-1]
        if final:
            last = self.received // hop  # torch.stft's centred frames: 1 + T // hop of them
            pending = F.pad(pending, (0, max(0, last * hop + n_fft - end)))
        else:
            last = (end - n_fft) // hop
        window = hann_window(n_fft, pending)
        while self._next_frame <= last:
            first, upto = self._next_frame, min(last, self._next_frame + _FRAMES_PER_STEP - 1)
            offset = first * hop - self._pending_start
            segment = pending[..., offset : offset + (upto - first) * hop + n_fft]
            self._add_frames(segment.unfold(-1, n_fft, hop), window, first * hop - self._sum_start)
            self._next_frame = upto + 1
        # Samples before the next frame's start are final; at the end, all up to the track's.
        ready = self.received + half if final else self._next_frame * hop
        stems = self._take(ready)
        drop = self._next_frame * hop - self._pending_start
        if drop > 0:
            self._pending, self._pending_start = pending[..., drop:], self._pending_start + drop
        else:
            self._pending = pending
        return stems

    def _add_frames(self, frames: Tensor, window: Tensor, at: int) -> None:
        """Combine ``frames`` ``[M, B, S, C, N, n_fft]`` bin by bin and overlap-add the result
        ``at`` samples after ``_sum_start``, as ``torch.istft`` does."""
        n_fft, hop = self.combination.n_fft, self.combination.hop
        spectra = torch.fft.rfft(frames * window, dim=-1)  # M, B, S, C, N, F
        combined = _reduce(spectra, self._weights(spectra), self.combination.mode)
        combined = real_edge_bins(combined.transpose(-1, -2), n_fft).transpose(-1, -2)
        signal = torch.fft.irfft(combined, n=n_fft, dim=-1) * window  # B, S, C, N, n_fft
        count = signal.shape[-2]
        length = (count - 1) * hop + n_fft
        fold = {"output_size": (1, length), "kernel_size": (1, n_fft), "stride": (1, hop)}
        added = F.fold(signal.reshape(-1, count, n_fft).transpose(1, 2), **fold).reshape(
            *signal.shape[:-2], -1
        )
        squares = (window**2).view(1, n_fft, 1).expand(1, n_fft, count)
        envelope = F.fold(squares, **fold).reshape(-1)
        if self._sum is None or self._envelope is None:
            self._sum, self._envelope = added.new_zeros(*added.shape[:-1], 0), envelope.new_zeros(0)
        longest = max(at + length, self._sum.shape[-1])
        self._sum = F.pad(self._sum, (0, longest - self._sum.shape[-1]))
        self._envelope = F.pad(self._envelope, (0, longest - self._envelope.shape[-1]))
        self._sum[..., at : at + length] += added
        self._envelope[at : at + length] += envelope

    def _take(self, ready: int) -> Tensor:
        """The finished samples before padded index ``ready``, without the front padding."""
        half = self.combination.n_fft // 2
        if self._sum is None or self._envelope is None or ready <= self._sum_start:
            return self._empty()
        count = ready - self._sum_start
        stems = self._sum[..., :count]
        envelope = self._envelope[:count]
        skip = max(0, half - self._sum_start)  # the front padding, never part of the stems
        stems = stems[..., skip:] / envelope[skip:]
        self._sum, self._envelope = self._sum[..., count:], self._envelope[count:]
        self._sum_start = ready
        return stems


def _reduce(stack: Tensor, weights: Tensor, mode: str) -> Tensor:
    """Combine ``stack`` ``[M, B, S, ...]`` over its first axis: per element for waveforms, per
    complex bin (choosing by magnitude) for spectra.

    Args:
        stack: The members' values, real or complex.
        weights: ``[M, S]`` per-member, per-source weights (``mean`` only).
        mode: ``mean``, ``median``, ``min`` or ``max``.
    """
    members = stack.shape[0]
    if mode == "mean":
        shaped = weights.view(members, 1, weights.shape[1], *[1] * (stack.dim() - 3))
        return (stack * shaped).sum(dim=0) / shaped.sum(dim=0)
    # Magnitudes order as their squares do, which skip a square root per bin.
    key = stack.real.square() + stack.imag.square() if stack.is_complex() else stack.abs()
    if mode in ("min", "max"):
        choice = key.argmin(dim=0, keepdim=True) if mode == "min" else key.argmax(dim=0, keepdim=True)
        return torch.take_along_dim(stack, choice, dim=0)[0]
    ordered = stack.sort(dim=0).values if not stack.is_complex() else stack.take_along_dim(key.argsort(0), 0)
    middle = members // 2
    return ordered[middle] if members % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _check_same_sources(models: Sequence[Separator], mode: str) -> None:
    first = list(models[0].sources)
    for index, model in enumerate(models[1:], start=1):
        if set(model.sources) != set(first):
            differing = sorted(set(model.sources) ^ set(first))
            raise ValueError(
                f"bag mode {mode!r} needs members that estimate the same sources, but member 0 estimates "
                f"{first} and member {index} {list(model.sources)} (differing: {differing}); only mode "
                "'mean' joins members with different sources"
            )


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
