"""A data set of stem files in folders: ``root/<split>/<track>/<source>.wav|flac``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sepzoo.data import register_dataset
from sepzoo.data.base import StemDataModule
from sepzoo.data.tracks import Track, scan_stem_folder
from sepzoo.errors import DataError


@register_dataset("folder")
class StemFolderDataModule(StemDataModule):
    """Any set of stems laid out as ``root/{train,valid,test}/<track>/<source>.wav`` (or ``.flac``).

    Source names are free (e.g. ``[vocals, accompaniment]``). Files may be mono or stereo, 16
    or 24-bit or float, at any rate: they are resampled to ``sample_rate`` as they are read.
    ``root/valid`` is optional (with ``valid="auto"`` it is the validation set; without it the
    last training tracks are); ``root/test`` is needed only for evaluation.

    Args:
        root: The data set folder.
        sources: Source names (file stems), in the order the model outputs them.
        **options: The options every data set shares (segment, batch size, augmentations,
            validation choice): see :class:`~sepzoo.data.base.StemDataModule`.
    """

    valid_choices = ("auto", "train-tail", "test", "none")

    def __init__(self, root: str, sources: list[str], **options: Any) -> None:
        super().__init__(sources=sources, **options)
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
