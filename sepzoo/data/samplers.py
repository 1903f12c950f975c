"""Samplers that shard data across distributed ranks reproducibly.

The training sampler's order is a function of ``(seed, epoch)`` only, so a run resumed in the
middle of an epoch can skip what it already saw and see exactly what an uninterrupted run
would have seen; the batch sampler over it gives each batch a segment length that is a
function of ``(seed, epoch, batch number)``, which a resumed run counts on from where it
stopped. The evaluation sampler hands each item to exactly one rank, so no track is scored
twice.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from sepzoo.data.augment import random_stream


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


class EpochSampler(Sampler):
    """Training sampler: a seeded permutation per epoch, split across ranks.

    Rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of the epoch's permutation,
    dropping the last ``length % W`` positions so every rank gets the same count.

    Args:
        length: Number of items in an epoch (the data set length).
        seed: Seed of the order. (Default: ``0``)
        rank: This process's rank. (Default: ``0``)
        world_size: Number of ranks. (Default: ``1``)
        shuffle: Permute the items; ``False`` yields them in order. (Default: ``True``)
        tag_epoch: Yield ``(epoch, index)`` pairs instead of plain indices, so data sets in
            persistent worker processes know the epoch without being told. (Default: ``False``)
    """

    def __init__(
        self,
        length: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        tag_epoch: bool = False,
    ) -> None:
        _check_rank(rank, world_size)
        if length < world_size:
            raise ValueError(f"an epoch of {length} items cannot be split over {world_size} ranks")
        self.length = length
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.tag_epoch = tag_epoch
        self.epoch = 0
        self._skip = 0
        self._skip_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order is yielded next.

        Args:
            epoch: Epoch number, from 0.
        """
        self.epoch = int(epoch)

    def skip(self, n_samples: int) -> None:
        """Leave out the first samples of the current epoch on its next pass (for resuming).

        The skip applies once, to the next iteration over the epoch set when it was asked
        for; later epochs are complete.

        Args:
            n_samples: Samples of the current epoch already used, counted over all ranks
                (batches done x batch size x world size).
        """
        if n_samples < 0:
            raise ValueError(f"cannot skip a negative number of samples ({n_samples})")
        self._skip = n_samples // self.world_size
        self._skip_epoch = self.epoch

    @property
    def pending_skip(self) -> int:
        """How many of this rank's items the next pass over the current epoch leaves out."""
        return self._skip if self._skip_epoch == self.epoch else 0

    @property
    def samples_per_rank(self) -> int:
        """Items each rank gets in a full epoch."""
        return self.length // self.world_size

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """This rank's indices for a whole epoch, without any skip.

        Args:
            epoch: Epoch number.
        """
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
        else:
            order = np.arange(self.length)
        used = self.samples_per_rank * self.world_size
        return order[self.rank : used : self.world_size]

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        indices = self.epoch_indices(epoch)
        if self._skip and self._skip_epoch == epoch:
            indices = indices[self._skip :]
            self._skip = 0
        for index in indices.tolist():
            yield (epoch, index) if self.tag_epoch else index

    def __len__(self) -> int:
        # A resumed epoch yields fewer items; the length stays that of a full epoch so that
        # loops which size themselves once see the same number every epoch.
        return self.samples_per_rank


class SegmentBatchSampler(Sampler):
    """Batches of an :class:`EpochSampler`'s ``(epoch, index)`` keys, the last incomplete one
    dropped; with ``lengths``, every item of a batch gets the same segment length.

    The length of batch ``n`` of an epoch (counted on each rank from the epoch's start, so all
    ranks take the same length at the same step) is drawn uniformly from ``lengths`` by
    :func:`~sepzoo.data.augment.random_stream` of ``(seed, epoch, n)``: it is the same whatever
    the number of loader workers, and a run resumed mid-epoch (the inner sampler skipping what
    was done) draws on from the batch it stopped at. Keys then read ``(epoch, index, frames)``.

    Args:
        sampler: The item order; it must yield ``(epoch, index)`` pairs (``tag_epoch=True``).
        batch_size: Items per batch.
        lengths: Segment lengths in frames to draw from; ``None`` keeps the data set's own.
            (Default: ``None``)
        seed: Seed of the length draws. (Default: ``0``)
    """

    def __init__(
        self, sampler: EpochSampler, batch_size: int, lengths: list[int] | None = None, seed: int = 0
    ) -> None:
        if not sampler.tag_epoch:
            raise ValueError("SegmentBatchSampler needs an EpochSampler with tag_epoch=True")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if lengths is not None and (not lengths or min(lengths) < 1):
            raise ValueError(f"lengths must be positive frame counts, got {lengths}")
        self.sampler = sampler  # Lightning calls sampler.set_epoch at each epoch's start
        self.batch_size = batch_size
        self.lengths = None if lengths is None else [int(n) for n in lengths]
        self.seed = seed

    def batch_length(self, epoch: int, number: int) -> int | None:
        """The segment length of batch ``number`` of ``epoch``, or ``None`` without ``lengths``.

        Args:
            epoch: Epoch number.
            number: Batch number in the epoch, from 0.
        """
        if self.lengths is None:
            return None
        rng = random_stream((self.seed, epoch, number), "batch_segment")
        return self.lengths[int(rng.integers(len(self.lengths)))]

    def __iter__(self) -> Iterator[list]:
        number = self.sampler.pending_skip // self.batch_size  # read before the pass clears it
        batch: list = []
        for key in self.sampler:
            batch.append(key)
            if len(batch) == self.batch_size:
                yield self._with_length(batch, number)
                number += 1
                batch = []

    def _with_length(self, batch: list, number: int) -> list:
        frames = self.batch_length(batch[0][0], number)
        return batch if frames is None else [(epoch, index, frames) for epoch, index in batch]

    def __len__(self) -> int:
        return self.sampler.samples_per_rank // self.batch_size


PADDING_INDEX = -1
"""What :class:`ShardedEvalSampler` yields, with ``pad=True``, in place of an item a rank lacks."""


class ShardedEvalSampler(Sampler):
    """Evaluation sampler: rank ``r`` of ``W`` gets indices ``r, r + W, ...``.

    Unlike ``DistributedSampler`` it never repeats an item: over all ranks every index is
    yielded exactly once. With ``pad=True`` the ranks that would get one item fewer than the
    others get :data:`PADDING_INDEX` instead, so every rank runs the same number of steps (a
    rank with no step at all would skip the collective end of the loop and stall the others);
    the data set returns a placeholder for it, which is not scored.

    Args:
        length: Number of items.
        rank: This process's rank. (Default: ``0``)
        world_size: Number of ranks. (Default: ``1``)
        pad: Even out the ranks with :data:`PADDING_INDEX`. (Default: ``False``)
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1, pad: bool = False) -> None:
        _check_rank(rank, world_size)
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.length = length
        self.rank = rank
        self.world_size = world_size
        self.pad = pad

    def __iter__(self) -> Iterator[int]:
        indices = list(range(self.rank, self.length, self.world_size))
        return iter(indices + [PADDING_INDEX] * (len(self) - len(indices)))

    def __len__(self) -> int:
        if self.pad:
            return -(-self.length // self.world_size)
        return len(range(self.rank, self.length, self.world_size))
