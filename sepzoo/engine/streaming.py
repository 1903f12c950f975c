"""Streaming separation: tracks that arrive and leave block by block, never held whole.

The streaming engine walks the :class:`~sepzoo.engine.chunks.ChunkPlan` that
:func:`sepzoo.engine.apply.apply_model` walks, in the same batches and at the same shifts, only
running each chunk once its input has arrived; so a file separated block by block gives the
stems a whole-tensor call gives.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from sepzoo.engine.chunks import (
    Chunk,
    ChunkPlan,
    EngineSettings,
    OverlapAdd,
    Shift,
    call_model,
    check_engine_options,
    draw_shifts,
    group_batches,
    model_device,
    model_name,
    running_members,
)
from sepzoo.engine.tta import Variant, tta_variants
from sepzoo.models.bag import BagOfModels, MemberCombiner
from sepzoo.models.base import Separator


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


class _Lane:
    """One member of the model at one TTA variant and one time shift: where it stands in its chunk plan.

    A lane sees the track delayed by ``shift.delay`` samples and followed by
    ``shift.padding - shift.delay`` zeros, as :func:`apply_model` pads it: lane sample ``p`` is
    track sample ``p - delay``. Its :class:`ChunkPlan` is the one :func:`apply_model` runs; chunks
    are added in order of their offsets, so once the chunk at offset ``o`` has been added, every
    lane sample before the next offset is final.
    """

    def __init__(self, plan: ChunkPlan, member: int, shift: Shift, channels: int, variant: Variant) -> None:
        self.plan = plan
        self.variant = variant
        self.model = plan.model
        self.member = member  # position among the members that run
        self.delay = shift.delay
        self.padding = shift.padding
        self.next_offset = 0  # the next chunk to claim
        self.added_offset = 0  # the next chunk to overlap-add (batches run ahead with jobs > 1)
        self.done = False  # no chunk left to claim
        self.accumulator = OverlapAdd([len(self.model.sources), channels], None, plan.window)  # lane time
        self.output = _Fifo()  # final samples, in track time, from emitted on
        self.emitted = 0

    def lane_length(self, track_length: int) -> int:
        return track_length + self.padding

    def window_start(self, chunk: Chunk) -> int:
        """First track sample of the chunk's input, context included (may be negative)."""
        return chunk.window_start - self.delay

    def next_batch(self, received: int, track_length: int | None, batch_size: int) -> list[Chunk]:
        """Claim the next chunks that run together: the plan's next batch, once its input has arrived.

        Args:
            received: Track samples that have arrived.
            track_length: The track's length once the input has ended, else ``None``.
            batch_size: Most chunks in one batch.
        """
        if self.done:
            return []
        length = None if track_length is None else self.lane_length(track_length)
        # The lane's first `delay` samples are the shift's zeros, there from the start.
        pending = self.plan.chunks(length, start=self.next_offset, available=self.delay + received)
        batch = next(group_batches(pending, batch_size), [])
        if not batch or (len(batch) < batch_size and length is None):
            return []  # before the end of the input, batches are only run full
        self.next_offset = self.plan.next_offset(batch[-1])
        if length is not None and self.plan.chunk_at(self.next_offset, length) is None:
            self.done = True
        return batch

    def add(self, batch: Sequence[Chunk], outputs: Tensor) -> None:
        """Overlap-add the model's outputs ``[len(batch), S, C, T']`` of a claimed batch."""
        for chunk, out in zip(batch, self.variant.undo(outputs)):
            self.accumulator.add(chunk.crop(out), chunk.offset)  # S, C, length
            self.added_offset = self.plan.next_offset(chunk)

    def flush(self, track_length: int | None) -> None:
        """Move the samples no later chunk touches into :attr:`output`, in track time."""
        frontier = self.added_offset
        if track_length is not None and self.done and self.added_offset == self.next_offset:
            frontier = self.lane_length(track_length)  # every chunk is in: the lane's end is final
        first = self.accumulator.start - self.delay  # track time of final[..., 0]
        final = self.accumulator.pop(frontier)  # S, C, count
        count = final.shape[-1]
        if count == 0:
            return
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
        return self.plan.first_input(self.next_offset) - self.delay

    @property
    def held(self) -> int:
        return self.accumulator.held + self.output.length


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
    (:func:`sepzoo.engine.separate.separate_files` does).

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
        tta: Test-time augmentations, as in :func:`apply_model`: one lane per member, variant
            and shift. (Default: ``None``)
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
        tta: str | Sequence[str] | None = None,
    ) -> None:
        check_engine_options(overlap, shifts, transition_power, batch_size, segment)
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        if model.needs_references:
            raise ValueError(f"{model_name(model)} needs the reference stems, which a stream does not carry")
        self.model = model
        self.channels = model.audio_channels
        self.batch_size = batch_size
        self.jobs = jobs
        settings = EngineSettings(segment, overlap, transition_power, batch_size, None, False)
        self.device = model_device(model, None if device is None else torch.device(device))
        variants = tta_variants(tta, self.channels, model_name(model))
        self.passes = len(variants) * max(1, shifts)  # lanes per member, averaged in _emit
        generator = torch.Generator().manual_seed(seed)
        self.lanes: list[_Lane] = []
        # As apply_model: the members that serve some source, in order, each drawing its shifts
        # once and running every TTA variant at all of them.
        for index, member in enumerate(running_members(model)):
            plan = ChunkPlan(member, settings)
            drawn = draw_shifts(member, shifts, generator)
            for variant in variants:
                for shift in drawn:
                    self.lanes.append(_Lane(plan, index, shift, self.channels, variant))
        # As apply_model's combine_members: one combiner for the whole track, fed as lanes finish.
        self.combiner = MemberCombiner(model) if isinstance(model, BagOfModels) else None
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
                f"expected blocks of shape [{self.channels}, time] for {model_name(self.model)}, "
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
            if self.combiner is not None:
                out = torch.cat([out, self._denormalize(self.combiner.finish()[0])], dim=-1)
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

    def _fill_window(self, lane: _Lane, chunk: Chunk, out: Tensor) -> None:
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

    def _claim(self) -> list[tuple[_Lane, list[Chunk], Tensor]]:
        """Up to ``jobs`` batches whose input has arrived, lane after lane."""
        claimed: list[tuple[_Lane, list[Chunk], Tensor]] = []
        for lane in self.lanes:
            while len(claimed) < self.jobs:
                batch = lane.next_batch(self.received, self.track_length, self.batch_size)
                if not batch:
                    break
                inputs = torch.zeros(len(batch), self.channels, batch[0].padded_length)  # N, C, P
                for chunk, row in zip(batch, inputs):
                    self._fill_window(lane, chunk, row)
                claimed.append((lane, batch, lane.variant.apply(inputs)))
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
            return call_model(model, inputs, None, self.device)

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
        if self.passes > 1:
            by_member = {member: total / self.passes for member, total in by_member.items()}
        if self.combiner is not None:
            # The combiner takes the serving members in running_members's order, that of the lanes.
            stems = self.combiner.push([by_member[index].unsqueeze(0) for index in sorted(by_member)])[0]
        else:
            stems = by_member[0]
        self.emitted = ready
        return self._denormalize(stems)

    def _denormalize(self, stems: Tensor) -> Tensor:
        """Undo the input's normalisation on ``stems``, where the engine normalises."""
        if self.statistics is None:
            return stems
        mean, std = self.statistics
        return stems * std + mean


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
    tta: str | Sequence[str] | None = None,
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
        tta: Test-time augmentations, as in :func:`apply_model`. (Default: ``None``)
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
        tta=tta,
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
