"""Data sets of training segments and whole tracks, and the data module they share.

:class:`StemDataModule` holds everything the registered data sets have in common: choosing the
validation tracks, building reproducible training segments, sharding over distributed ranks
and resuming in the middle of an epoch. A registered data set only lists its tracks.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from sepzoo.data.augment import (
    AugmentConfig,
    ProductionAugmentConfig,
    augment_production,
    augment_stems,
    db_to_gain,
    degrade_mixture,
    random_stream,
)
from sepzoo.data.samplers import PADDING_INDEX, EpochSampler, SegmentBatchSampler, ShardedEvalSampler
from sepzoo.data.tracks import Track, read_stems
from sepzoo.errors import ConfigError, DataError, suggestion

VALID_CHOICES: tuple[str, ...] = ("auto", "official", "train-tail", "test", "none")

NO_AUGMENT = AugmentConfig(shift=0.0, channel_swap=False, sign_flip=False, scale=None, remix=False)
"""An :class:`AugmentConfig` with every augmentation off."""

NO_PRODUCTION = ProductionAugmentConfig()
"""A :class:`ProductionAugmentConfig` with every augmentation off (its defaults)."""


class SegmentDataset(Dataset):
    """Random training segments ``[S, C, T]``, a deterministic function of ``(seed, epoch, index)``.

    Each item draws a track (with probability proportional to its length) and an offset, reads
    only that window and augments it. With ``augment.remix`` each source comes from its own
    track and offset. Tracks shorter than a segment are zero-padded at the end.

    Items are addressed by ``index`` (in the epoch set with :meth:`set_epoch`), by an
    ``(epoch, index)`` pair, as yielded by :class:`EpochSampler` with ``tag_epoch=True`` (the
    pair form keeps worker processes right without telling them the epoch), or by an
    ``(epoch, index, frames)`` triple, as :class:`SegmentBatchSampler` yields to give a batch a
    shorter length: the item is then the first ``frames`` of the augmented segment, before the
    augmentations of ``production``.

    An item is a tensor ``[S, C, T]``, whose sum over sources the model hears. With
    ``production.mixture_codec`` above 0 it is a pair ``(stems, mixture)`` instead, the mixture
    ``[C, T]`` the sum of the stems, degraded by a codec with that probability.

    Args:
        tracks: The training tracks.
        sources: Source names, in output order.
        segment_frames: Length of a segment in frames.
        sample_rate: Rate of the returned audio.
        channels: Channel count of the returned audio.
        samples_per_epoch: Number of items in an epoch.
        seed: Seed of every random draw. (Default: ``0``)
        augment: The augmentations; ``None`` applies none. (Default: ``None``)
        production: The augmentations of the MSST set; ``None`` applies none.
            (Default: ``None``)
    """

    def __init__(
        self,
        tracks: list[Track],
        sources: list[str],
        segment_frames: int,
        sample_rate: int,
        channels: int,
        samples_per_epoch: int,
        seed: int = 0,
        augment: AugmentConfig | None = None,
        production: ProductionAugmentConfig | None = None,
    ) -> None:
        if not tracks:
            raise DataError("no training tracks")
        if segment_frames <= 0 or samples_per_epoch <= 0:
            raise ValueError(
                "segment_frames and samples_per_epoch must be positive, "
                f"got {segment_frames}, {samples_per_epoch}"
            )
        self.tracks = list(tracks)
        self.sources = list(sources)
        self.segment_frames = segment_frames
        self.sample_rate = sample_rate
        self.channels = channels
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.augment = augment if augment is not None else NO_AUGMENT
        self.production = production if production is not None else NO_PRODUCTION
        self.window_frames = self.augment.window_frames(segment_frames, sample_rate)
        lengths = np.array([max(1, t.frames_at(sample_rate)) for t in self.tracks], dtype=np.float64)
        self.track_weights = lengths / lengths.sum()
        self.voice_indices = tuple(i for i, s in enumerate(self.sources) if s == "vocals")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that plain integer indices refer to.

        Args:
            epoch: Epoch number, from 0.
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, key: int | tuple[int, ...]) -> Tensor | tuple[Tensor, Tensor]:
        frames = None
        if isinstance(key, (tuple, list)):
            epoch, index = int(key[0]), int(key[1])
            frames = int(key[2]) if len(key) > 2 else None
        else:
            epoch, index = self.epoch, int(key)
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"index {index} out of range for an epoch of {self.samples_per_epoch}")
        return self.item(epoch, index, frames)

    def item(self, epoch: int, index: int, frames: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Segment ``index`` of ``epoch``, float32 ``[S, C, frames]`` (or a pair with its mixture,
        see the class).

        Args:
            epoch: Epoch number.
            index: Position in the epoch.
            frames: Length of the segment, at most ``segment_frames``; ``None`` is
                ``segment_frames``. (Default: ``None``)
        """
        segment = self._segment(epoch, index)
        if frames is not None:
            if not 0 < frames <= self.segment_frames:
                raise ValueError(f"frames must be in [1, {self.segment_frames}], got {frames}")
            segment = segment[..., :frames].contiguous()
        if not self.production.enabled:
            return segment
        entropy = (self.seed, epoch, index)
        if self.production.mixup > 0:
            segment = self._mixup(segment, random_stream(entropy, "mixup"))
        segment = augment_production(segment, self.production, entropy, self.sample_rate, self.sources)
        segment = segment.float()
        if self.production.mixture_codec <= 0:
            return segment
        rng = random_stream(entropy, "mixture_codec")
        mixture = degrade_mixture(segment.sum(dim=0), self.production, rng, self.sample_rate)  # C, T
        return segment, mixture.float()

    def _segment(self, epoch: int, index: int) -> Tensor:
        """The segment as the Demucs set of augmentations makes it, ``[S, C, segment_frames]``."""
        rng = np.random.default_rng([self.seed, epoch, index])
        count = len(self.sources) if self.augment.remix else 1
        picks = rng.choice(len(self.tracks), size=count, p=self.track_weights)
        offsets = [self._random_offset(self.tracks[pick], rng) for pick in picks]
        if self.augment.remix:
            parts = [
                self._read(self.tracks[pick], [source], offset)
                for pick, offset, source in zip(picks, offsets, self.sources)
            ]
            window = torch.cat(parts)
        else:
            window = self._read(self.tracks[picks[0]], self.sources, offsets[0])
        return self._augment(window, rng)

    def _read(self, track: Track, sources: list[str], offset: int) -> Tensor:
        return read_stems(track, sources, offset, self.window_frames, self.sample_rate, self.channels)

    def _random_offset(self, track: Track, rng: np.random.Generator, frames: int | None = None) -> int:
        room = track.frames_at(self.sample_rate) - (frames or self.window_frames)
        return int(rng.integers(0, room, endpoint=True)) if room > 0 else 0

    def _mixup(self, segment: Tensor, rng: np.random.Generator) -> Tensor:
        """Add to each source, with ``production.mixup``'s probability, the same source read from
        a random track (drawn as segments draw theirs) at a random offset, at a random gain."""
        count, frames = segment.shape[0], segment.shape[-1]
        chosen = rng.random(count) < self.production.mixup
        gains = db_to_gain(rng.uniform(*self.production.mixup_db, size=count))
        parts = list(segment)
        for position in np.flatnonzero(chosen):
            track = self.tracks[int(rng.choice(len(self.tracks), p=self.track_weights))]
            offset = self._random_offset(track, rng, frames)
            source = self.sources[position]
            extra = read_stems(track, [source], offset, frames, self.sample_rate, self.channels)[0]
            parts[position] = parts[position] + float(gains[position]) * extra
        return torch.stack(parts)

    def _augment(self, window: Tensor, rng: np.random.Generator) -> Tensor:
        segment = augment_stems(
            window, self.augment, rng, self.segment_frames, self.sample_rate, self.voice_indices
        )
        return segment.float()


class WholeTrackDataset(Dataset):
    """Whole tracks for validation and evaluation: ``{"name": str, "stems": Tensor[S, C, T],
    "padding": bool}``; index :data:`~sepzoo.data.samplers.PADDING_INDEX` gives an unscored
    placeholder (``padding`` true).

    Args:
        tracks: The tracks.
        sources: Source names, in output order.
        sample_rate: Rate of the returned audio.
        channels: Channel count of the returned audio.
        max_seconds: Keep only the first this many seconds of each track; ``None`` keeps all.
            (Default: ``None``)
    """

    def __init__(
        self,
        tracks: list[Track],
        sources: list[str],
        sample_rate: int,
        channels: int,
        max_seconds: float | None = None,
    ) -> None:
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
        self.tracks = list(tracks)
        self.sources = list(sources)
        self.sample_rate = sample_rate
        self.channels = channels
        self.max_seconds = max_seconds

    def __len__(self) -> int:
        return len(self.tracks)

    def frames(self, track: Track) -> int:
        """Number of frames returned for ``track``.

        Args:
            track: One of the tracks.
        """
        frames = track.frames_at(self.sample_rate)
        if self.max_seconds is not None:
            frames = min(frames, int(round(self.max_seconds * self.sample_rate)))
        return frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index == PADDING_INDEX:
            # A placeholder that evens out the ranks' step counts; it is never scored.
            stems = torch.zeros(len(self.sources), self.channels, 1)
            return {"name": "", "stems": stems, "padding": True}
        track = self.tracks[index]
        stems = read_stems(track, self.sources, 0, self.frames(track), self.sample_rate, self.channels)
        return {"name": track.name, "stems": stems, "padding": False}


class StemDataModule(L.LightningDataModule):
    """Shared logic and options of the multi-stem data modules; subclasses list the tracks.

    Subclasses implement :meth:`list_tracks` and :meth:`list_test_tracks`, may override
    :meth:`prepare_data` for one-time work such as decoding, and pass the options below on with
    ``**options``: every registered data set then takes them as recipe keys (``data.segment``,
    ``data.shift``, ...), checked against this signature.

    Args:
        sources: Source names, in output order.
        sample_rate: Rate of the audio handed to the model in Hz; tracks at other rates are
            resampled. (Default: ``44100``)
        audio_channels: Channels handed to the model (1 or 2); mono files are up-mixed.
            (Default: ``2``)
        segment: Training segment length in seconds. (Default: ``10.0``)
        batch_size: Training batch size per process. (Default: ``16``)
        num_workers: Data loader worker processes, kept alive across epochs. (Default: ``4``)
        samples_per_epoch: Training segments per epoch, over all processes. (Default: ``8000``)
        seed: Seed of segment draws, augmentations and epoch order. (Default: ``42``)
        shift: Largest random time shift per source in seconds; ``0`` disables it.
            (Default: ``1.0``)
        channel_swap: Randomly swap left/right per source. (Default: ``True``)
        sign_flip: Randomly negate each source. (Default: ``True``)
        scale: ``[low, high]`` range of a random gain per source; ``None`` disables it.
            (Default: ``[0.25, 1.25]``)
        remix: Draw each source from its own random track. (Default: ``True``)
        pitch_tempo: Random pitch/tempo changes with ``soundstretch`` (must be on the PATH).
            (Default: ``False``)
        pitch_tempo_probability: Probability of a pitch/tempo change per segment.
            (Default: ``0.2``)
        max_pitch: Largest pitch change in semitones. (Default: ``2``)
        max_tempo: Largest tempo change in percent. (Default: ``12.0``)
        polarity: Probability of negating each source; ``sign_flip`` is this at 1/2 (the same
            draws), so it needs ``sign_flip: false``. (Default: ``0.0``)
        channel_shuffle: Probability of swapping left/right of each source; ``channel_swap`` is
            this at 1/2, so it needs ``channel_swap: false``. (Default: ``0.0``)
        batch_segments: Segment lengths in seconds, each at most ``segment``: each batch is cut
            to one of them, drawn per batch (the first seconds of each item's segment, before
            the MSST-set augmentations); ``None`` keeps ``segment``. (Default: ``None``)
        loudness: Probability of a random gain in ``loudness_db`` per source. (Default: ``0.0``)
        loudness_db: ``[low, high]`` range of that gain in dB. (Default: ``[-6.0, 6.0]``)
        mixup: Probability of adding, per source, the same source from a random track and
            offset, at a gain in ``mixup_db``. (Default: ``0.0``)
        mixup_db: ``[low, high]`` range of the added part's gain in dB. (Default: ``[-6.0, 0.0]``)
        eq: Probability of random filters per source (pedalboard). (Default: ``0.0``)
        compressor: Probability of a random compressor per source. (Default: ``0.0``)
        distortion: Probability of a random distortion per source. (Default: ``0.0``)
        chorus: Probability of a random chorus per source. (Default: ``0.0``)
        phaser: Probability of a random phaser per source. (Default: ``0.0``)
        reverb: Probability of a random reverb per source. (Default: ``0.0``)
        effect_sources: Sources the effects may touch; ``None``: all. (Default: ``None``)
        codec: Probability that a source goes through a lossy codec (targets degraded too).
            (Default: ``0.0``)
        mixture_codec: Probability that only the model's input mixture goes through a lossy
            codec (targets stay clean). (Default: ``0.0``)
        codec_formats: Formats drawn from, per degradation: ``mp3``, ``aac``, ``opus`` (ffmpeg
            must have their encoders). (Default: ``[mp3]``)
        codec_bitrate: ``[low, high]`` bitrate range in kbit/s, within [8, 320].
            (Default: ``[32, 320]``)
        valid: How validation tracks are chosen: ``"auto"`` (the data set's own validation
            split when it has one, else ``"train-tail"``), ``"official"`` (that split),
            ``"train-tail"`` (the last ``valid_count`` training tracks by name), ``"test"`` (the
            test tracks) or ``"none"``. (Default: ``"auto"``)
        valid_count: Number of tracks ``"train-tail"`` takes. (Default: ``1``)
        valid_tracks: Explicit validation track names, taken out of training; needs
            ``valid="auto"``. (Default: ``None``)
        valid_max_seconds: Crop validation tracks to this many seconds; ``None`` keeps them
            whole. (Default: ``None``)
        pin_memory: Pin training batches in page-locked memory. (Default: ``False``)
    """

    valid_choices: ClassVar[tuple[str, ...]] = VALID_CHOICES

    def __init__(
        self,
        *,
        sources: list[str],
        sample_rate: int = 44100,
        audio_channels: int = 2,
        segment: float = 10.0,
        batch_size: int = 16,
        num_workers: int = 4,
        samples_per_epoch: int = 8000,
        seed: int = 42,
        shift: float = 1.0,
        channel_swap: bool = True,
        sign_flip: bool = True,
        scale: list[float] | None = [0.25, 1.25],  # noqa: B006 - never mutated
        remix: bool = True,
        pitch_tempo: bool = False,
        pitch_tempo_probability: float = 0.2,
        max_pitch: int = 2,
        max_tempo: float = 12.0,
        polarity: float = 0.0,
        channel_shuffle: float = 0.0,
        batch_segments: list[float] | None = None,
        loudness: float = 0.0,
        loudness_db: list[float] = [-6.0, 6.0],  # noqa: B006 - never mutated
        mixup: float = 0.0,
        mixup_db: list[float] = [-6.0, 0.0],  # noqa: B006 - never mutated
        eq: float = 0.0,
        compressor: float = 0.0,
        distortion: float = 0.0,
        chorus: float = 0.0,
        phaser: float = 0.0,
        reverb: float = 0.0,
        effect_sources: list[str] | None = None,
        codec: float = 0.0,
        mixture_codec: float = 0.0,
        codec_formats: list[str] = ["mp3"],  # noqa: B006 - never mutated
        codec_bitrate: list[int] = [32, 320],  # noqa: B006 - never mutated
        valid: str = "auto",
        valid_count: int = 1,
        valid_tracks: list[str] | None = None,
        valid_max_seconds: float | None = None,
        pin_memory: bool = False,
    ) -> None:
        augment = AugmentConfig(
            shift=shift,
            channel_swap=channel_swap,
            sign_flip=sign_flip,
            scale=None if scale is None else tuple(scale),
            remix=remix,
            pitch_tempo=pitch_tempo,
            pitch_tempo_probability=pitch_tempo_probability,
            max_pitch=max_pitch,
            max_tempo=max_tempo,
            polarity=polarity,
            channel_shuffle=channel_shuffle,
        )
        production = ProductionAugmentConfig(
            loudness=loudness,
            loudness_db=tuple(loudness_db),
            mixup=mixup,
            mixup_db=tuple(mixup_db),
            eq=eq,
            compressor=compressor,
            distortion=distortion,
            chorus=chorus,
            phaser=phaser,
            reverb=reverb,
            effect_sources=None if effect_sources is None else tuple(effect_sources),
            codec=codec,
            mixture_codec=mixture_codec,
            codec_formats=tuple(codec_formats),
            codec_bitrate=tuple(codec_bitrate),
        )
        super().__init__()
        sources = list(sources)
        if not sources:
            raise ConfigError("data.sources must name at least one source")
        duplicates = sorted({s for s in sources if sources.count(s) > 1})
        if duplicates:
            raise ConfigError(f"data.sources lists {duplicates} more than once")
        _positive("sample_rate", sample_rate)
        if audio_channels not in (1, 2):
            raise ConfigError(f"data.audio_channels must be 1 or 2, got {audio_channels}")
        _positive("segment", segment)
        production.check_sources(sources)
        if batch_segments is not None:
            _check_batch_segments(batch_segments, segment)
        _positive("batch_size", batch_size)
        _positive("samples_per_epoch", samples_per_epoch)
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        if valid not in self.valid_choices:
            raise ConfigError(
                f"data.valid={valid!r} is not one of {', '.join(self.valid_choices)}"
                f"{suggestion(valid, self.valid_choices)}"
            )
        _positive("valid_count", valid_count)
        if valid_tracks is not None and valid != "auto":
            raise ConfigError(
                f"data.valid_tracks lists tracks, so data.valid must stay 'auto' (got {valid!r})"
            )
        if valid_max_seconds is not None:
            _positive("valid_max_seconds", valid_max_seconds)
        if seed < 0:
            raise ConfigError(f"data.seed must be >= 0, got {seed}")
        self.sources = sources
        self.sample_rate = int(sample_rate)
        self.audio_channels = int(audio_channels)
        self.segment = float(segment)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(seed)
        self.augment = augment
        self.production = production
        self.batch_segments = None if batch_segments is None else [float(s) for s in batch_segments]
        self.valid = valid
        self.valid_count = int(valid_count)
        self.valid_tracks = None if valid_tracks is None else [str(n) for n in valid_tracks]
        self.valid_max_seconds = valid_max_seconds
        self.pin_memory = pin_memory
        self.train_tracks: list[Track] | None = None
        self.valid_set: list[Track] | None = None
        self._test_tracks: list[Track] | None = None
        self._train_sampler: EpochSampler | None = None
        self._pending_position: tuple[int, int] | None = None

    # -- to implement ------------------------------------------------------------------------

    def list_tracks(self) -> tuple[list[Track], list[Track] | None]:
        """The tracks available for training, and the data set's own validation tracks.

        Returns:
            ``(pool, own_valid)``: ``pool`` holds every track that may be trained on;
            ``own_valid`` the data set's own validation split (which may overlap ``pool``,
            e.g. MUSDB18's official validation tracks come from its training subset), or
            ``None`` when the data set has none.
        """
        raise NotImplementedError

    def list_test_tracks(self) -> list[Track]:
        """The test tracks."""
        raise NotImplementedError

    # -- shared logic --------------------------------------------------------------------------

    @property
    def segment_frames(self) -> int:
        """Training segment length in frames."""
        return int(round(self.segment * self.sample_rate))

    @property
    def batch_segment_frames(self) -> list[int] | None:
        """The lengths in frames that batches are cut to, or ``None`` (all at ``segment``)."""
        if self.batch_segments is None:
            return None
        return [int(round(seconds * self.sample_rate)) for seconds in self.batch_segments]

    def setup(self, stage: str | None = None) -> None:
        """List and check every track, and choose the validation tracks; runs once.

        Args:
            stage: Lightning's stage (``"fit"``, ``"validate"``, ``"test"``, ...). Test tracks
                are listed for ``"test"``; training and validation tracks otherwise.
        """
        self.augment.check_available()
        self.production.check_available()
        if stage == "test":
            self.test_tracks()
            return
        # Checked on every call: the first may come before the trainer (and its world size) is known.
        _, world_size = self._rank_world()
        if self.samples_per_epoch < self.batch_size * world_size:
            raise ConfigError(
                f"data.samples_per_epoch={self.samples_per_epoch} is smaller than one batch over all "
                f"processes ({self.batch_size} x {world_size})"
            )
        if self.train_tracks is not None:
            return
        pool, own_valid = self.list_tracks()
        train, valid = self._choose_valid(pool, own_valid)
        if not train:
            raise DataError(
                f"{self._describe()}: no training tracks left once the validation tracks are set apart"
            )
        self.train_tracks, self.valid_set = train, valid

    def _choose_valid(
        self, pool: list[Track], own_valid: list[Track] | None
    ) -> tuple[list[Track], list[Track]]:
        if self.valid_tracks is not None:
            candidates = {t.name: t for t in pool + (own_valid or [])}
            for name in self.valid_tracks:
                if name not in candidates:
                    raise ConfigError(
                        f"data.valid_tracks: no track named {name!r} in {self._describe()}"
                        f"{suggestion(name, candidates)}"
                    )
            chosen = [candidates[name] for name in dict.fromkeys(self.valid_tracks)]
            return [t for t in pool if t not in chosen], chosen
        choice = self.valid
        if choice == "auto":
            choice = "official" if own_valid else "train-tail"
        if choice == "official":
            if not own_valid:
                raise DataError(
                    f"{self._describe()}: data.valid='official' but the data set has no validation tracks"
                )
            return [t for t in pool if t not in own_valid], list(own_valid)
        if choice == "train-tail":
            if len(pool) <= self.valid_count:
                raise DataError(
                    f"{self._describe()}: data.valid='train-tail' with valid_count={self.valid_count} "
                    f"needs more than {self.valid_count} training tracks, found {len(pool)}"
                )
            return pool[: -self.valid_count], pool[-self.valid_count :]
        if choice == "test":
            return list(pool), self.test_tracks()
        return list(pool), []

    def test_tracks(self) -> list[Track]:
        """The test tracks, listed and checked on first use."""
        if self._test_tracks is None:
            self._test_tracks = self.list_test_tracks()
        return self._test_tracks

    def _describe(self) -> str:
        return getattr(self, "root", type(self).__name__)

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _require_setup(self) -> None:
        if self.train_tracks is None:
            self.setup("fit")

    @property
    def has_validation(self) -> bool:
        """Whether any validation tracks were chosen."""
        self._require_setup()
        return bool(self.valid_set)

    def train_dataset(self) -> SegmentDataset:
        """The training segments (built after :meth:`setup`)."""
        self._require_setup()
        assert self.train_tracks is not None
        return SegmentDataset(
            self.train_tracks,
            self.sources,
            self.segment_frames,
            self.sample_rate,
            self.audio_channels,
            self.samples_per_epoch,
            seed=self.seed,
            augment=self.augment,
            production=self.production,
        )

    def valid_dataset(self) -> WholeTrackDataset:
        """The validation tracks as whole (possibly cropped) tracks."""
        self._require_setup()
        return WholeTrackDataset(
            self.valid_set or [], self.sources, self.sample_rate, self.audio_channels, self.valid_max_seconds
        )

    def train_dataloader(self) -> DataLoader:
        """Batches ``[B, S, C, T]`` of training segments, sharded over ranks, in a seeded order
        (pairs of stems and mixtures ``[B, C, T]`` with ``mixture_codec`` on)."""
        dataset = self.train_dataset()
        rank, world_size = self._rank_world()
        sampler = EpochSampler(len(dataset), seed=self.seed, rank=rank, world_size=world_size, tag_epoch=True)
        if self._train_sampler is not None:
            sampler.set_epoch(self._train_sampler.epoch)
        self._train_sampler = sampler
        self._apply_position()
        batches = SegmentBatchSampler(sampler, self.batch_size, self.batch_segment_frames, seed=self.seed)
        return DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> DataLoader | list:
        """Whole validation tracks, one per batch, each on exactly one rank (``[]`` without any)."""
        dataset = self.valid_dataset()
        if len(dataset) == 0:
            return []
        rank, world_size = self._rank_world()
        workers = min(self.num_workers, math.ceil(len(dataset) / world_size))
        return DataLoader(
            dataset,
            batch_size=1,
            sampler=ShardedEvalSampler(len(dataset), rank=rank, world_size=world_size, pad=True),
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def set_position(self, epoch: int, samples_done: int) -> None:
        """Resume training at ``samples_done`` samples into ``epoch``.

        The rest of that epoch, and every later one, is then what an uninterrupted run sees.

        Args:
            epoch: The epoch to resume in.
            samples_done: Samples of that epoch already used, counted over all ranks (batches
                done x batch size x world size).
        """
        if epoch < 0 or samples_done < 0:
            raise ValueError(f"epoch and samples_done must be >= 0, got {epoch}, {samples_done}")
        self._pending_position = (int(epoch), int(samples_done))
        self._apply_position()

    def _apply_position(self) -> None:
        if self._train_sampler is None or self._pending_position is None:
            return
        epoch, samples_done = self._pending_position
        self._train_sampler.set_epoch(epoch)
        self._train_sampler.skip(samples_done)
        self._pending_position = None


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"data.{key} must be positive, got {value}")


def _check_batch_segments(lengths: list[float], segment: float) -> None:
    if not lengths:
        raise ConfigError("data.batch_segments must list at least one length in seconds, or be null")
    for seconds in lengths:
        if not 0 < seconds <= segment:
            raise ConfigError(
                f"data.batch_segments: {seconds} s is not in (0, {segment}]: batches are cut from "
                f"segments of data.segment={segment} s"
            )


ADDED_AUGMENT_KEYS: tuple[str, ...] = (
    "polarity",
    "channel_shuffle",
    "batch_segments",
    "loudness",
    "loudness_db",
    "mixup",
    "mixup_db",
    "eq",
    "compressor",
    "distortion",
    "chorus",
    "phaser",
    "reverb",
    "effect_sources",
    "codec",
    "mixture_codec",
    "codec_formats",
    "codec_bitrate",
)
"""Data keys added after runs were first named by hash; at their defaults (in
:class:`StemDataModule`'s signature) they change nothing, and run hashes leave them out."""
