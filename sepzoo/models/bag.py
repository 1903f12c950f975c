"""Bags of models: several separators whose outputs are combined per source with weights.

A bag is a model like any other to the code that holds one; only the engine looks inside, so
that each member is chunked with its own segment and valid length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sepzoo.models.base import Separator, seconds_to_samples


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
    """Weighted per-source average of the bag members' outputs, ``[B, S, C, T]``.

    Args:
        bag: The bag.
        mix: The mixture ``[B, C, T]``.
        references: The true stems of the bag's sources ``[B, S, C, T]``, or ``None``.
        run: Runs one member given its references, returning ``[B, S_member, C, T]``.
    """
    batch, channels, length = mix.shape
    total = mix.new_zeros(batch, len(bag.sources), channels, length)
    for index in bag.serving():
        member, weight = bag.members[index], bag.weights[index]
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
