"""A data set of stem files in folders: ``root/<split>/<track>/<source>.wav|flac``."""

from __future__ import annotations

from pathlib import Path

from sepzoo.data import register_dataset
from sepzoo.data.augment import AugmentConfig
from sepzoo.data.base import StemDataModule
from sepzoo.data.tracks import Track, scan_stem_folder
from sepzoo.errors import DataError


@register_dataset("folder")
class StemFolderDataModule(StemDataModule):
    """Any set of stems laid out as ``root/{train,valid,test}/<track>/<source>.wav`` (or ``.flac``).

    Source names are free (e.g. ``[vocals, accompaniment]``). Files may be mono or stereo, 16
    or 24-bit or float, at any rate: they are resampled to ``sample_rate`` as they are read.
    ``root/valid`` is optional; ``root/test`` is needed only for evaluation.

    Args:
        root: The data set folder.
        sources: Source names (file stems), in the order the model outputs them.
        sample_rate: Rate of the audio handed to the model in Hz. (Default: ``44100``)
        audio_channels: Channels handed to the model (1 or 2). (Default: ``2``)
        segment: Training segment length in seconds. (Default: ``10.0``)
        batch_size: Training batch size per process. (Default: ``16``)
        num_workers: Data loader worker processes. (Default: ``4``)
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
        valid: Validation tracks: ``"auto"`` (``root/valid`` if it exists, else
            ``"train-tail"``), ``"train-tail"`` (the last ``valid_count`` training tracks by
            name), ``"test"`` (the test tracks) or ``"none"``. (Default: ``"auto"``)
        valid_count: Number of tracks ``"train-tail"`` takes. (Default: ``1``)
        valid_tracks: Explicit validation track names from ``root/train`` or ``root/valid``,
            taken out of training. (Default: ``None``)
        valid_max_seconds: Crop validation tracks to this many seconds. (Default: ``None``)
    """

    valid_choices = ("auto", "train-tail", "test", "none")

    def __init__(
        self,
        root: str,
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
        valid: str = "auto",
        valid_count: int = 1,
        valid_tracks: list[str] | None = None,
        valid_max_seconds: float | None = None,
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
        )
        super().__init__(
            sources=sources,
            sample_rate=sample_rate,
            audio_channels=audio_channels,
            segment=segment,
            batch_size=batch_size,
            num_workers=num_workers,
            samples_per_epoch=samples_per_epoch,
            seed=seed,
            augment=augment,
            valid=valid,
            valid_count=valid_count,
            valid_tracks=valid_tracks,
            valid_max_seconds=valid_max_seconds,
        )
        self.root = Path(root).expanduser()

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such data folder")

    def list_tracks(self) -> tuple[list[Track], list[Track] | None]:
        """Tracks of ``root/train``, and of ``root/valid`` when it exists."""
        self._check_root()
        pool = scan_stem_folder(self.root / "train", self.sources)
        valid_folder = self.root / "valid"
        own_valid = scan_stem_folder(valid_folder, self.sources) if valid_folder.is_dir() else None
        return pool, own_valid

    def list_test_tracks(self) -> list[Track]:
        """Tracks of ``root/test``."""
        self._check_root()
        return scan_stem_folder(self.root / "test", self.sources)
