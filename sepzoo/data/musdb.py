"""MUSDB18 and MUSDB18-HQ through the ``musdb`` package.

MUSDB18-HQ (``root/{train,test}/<track>/<source>.wav``) is read in place. MUSDB18
(``root/{train,test}/<track>.stem.mp4``) is decoded once per track to WAV in a cache folder;
training then reads windows of those files, so no sample ever waits for ffmpeg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from sepzoo import DEFAULT_SOURCES
from sepzoo.data import register_dataset
from sepzoo.data.base import StemDataModule
from sepzoo.data.cache import cache_folder, file_stamp, is_current, write_marker
from sepzoo.data.tracks import Track, make_track
from sepzoo.errors import ConfigError, DataError, suggestion
from sepzoo.io.atomic import atomic_folder

MUSDB_SOURCES: tuple[str, ...] = DEFAULT_SOURCES
STEM_SUFFIX = ".stem.mp4"
SUBSETS = ("train", "test")


@register_dataset("musdb")
class MusdbDataModule(StemDataModule):
    """MUSDB18 (``.stem.mp4``) or MUSDB18-HQ (WAV folders), read with the ``musdb`` package.

    Args:
        root: The MUSDB18 or MUSDB18-HQ folder (holding ``train/`` and ``test/``).
        sources: Any of ``drums``, ``bass``, ``other``, ``vocals``, in the order the model
            outputs them; ``None`` takes all four in that order. (Default: ``None``)
        is_wav: ``True`` for MUSDB18-HQ, ``False`` for MUSDB18; ``None`` tells them apart by
            the files in ``root``. (Default: ``None``)
        cache_dir: Where MUSDB18 tracks are decoded to WAV; ``None`` uses
            ``<root>/.sepzoo-wav-cache``, or a folder in the user's cache when ``root`` is not
            writable. Unused for MUSDB18-HQ. (Default: ``None``)
        subset_test: The subset evaluated as the test set. (Default: ``"test"``)
        **options: The options every data set shares (segment, batch size, augmentations,
            validation choice, where ``valid="auto"`` takes the official MUSDB18 validation
            tracks when present): see :class:`~sepzoo.data.base.StemDataModule`.
    """

    def __init__(
        self,
        root: str,
        sources: list[str] | None = None,
        is_wav: bool | None = None,
        cache_dir: str | None = None,
        subset_test: str = "test",
        **options: Any,
    ) -> None:
        sources = list(MUSDB_SOURCES) if sources is None else list(sources)
        for source in sources:
            if source not in MUSDB_SOURCES:
                raise ConfigError(
                    f"data.sources: MUSDB18 has no source {source!r}{suggestion(source, MUSDB_SOURCES)} "
                    f"(valid: {', '.join(MUSDB_SOURCES)})"
                )
        if subset_test not in SUBSETS:
            raise ConfigError(f"data.subset_test must be one of {', '.join(SUBSETS)}, got {subset_test!r}")
        super().__init__(sources=sources, **options)
        self.root = Path(root).expanduser()
        self.is_wav = is_wav
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.subset_test = subset_test

    # -- listing ---------------------------------------------------------------------------------

    def detect_is_wav(self) -> bool:
        """Whether ``root`` is MUSDB18-HQ (WAV folders) rather than MUSDB18 (``.stem.mp4``).

        Raises:
            DataError: ``root`` is missing or holds neither kind of track.
        """
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such MUSDB18 folder")
        if self.is_wav is not None:
            return self.is_wav
        for subset in SUBSETS:
            folder = self.root / subset
            if not folder.is_dir():
                continue
            if any(folder.glob(f"*{STEM_SUFFIX}")):
                return False
            if any(folder.glob("*/*.wav")):
                return True
        raise DataError(
            f"{self.root}: holds no MUSDB18 tracks; expected {self.root}/train/<track>{STEM_SUFFIX} "
            f"(MUSDB18) or {self.root}/train/<track>/<source>.wav (MUSDB18-HQ)"
        )

    def list_tracks(self) -> tuple[list[Track], list[Track] | None]:
        """Tracks of the training subset, and those of them on musdb's official validation list."""
        pool, official_names = self._subset_tracks("train")
        if not pool:
            raise DataError(f"{self.root}: holds no MUSDB18 tracks in {self.root / 'train'}")
        own_valid = [t for t in pool if t.name in official_names]
        return pool, own_valid or None

    def list_test_tracks(self) -> list[Track]:
        """Tracks of ``subset_test``."""
        tracks, _ = self._subset_tracks(self.subset_test)
        if not tracks:
            raise DataError(f"{self.root}: holds no MUSDB18 tracks in {self.root / self.subset_test}")
        return tracks

    def prepare_data(self) -> None:
        """Decode MUSDB18 training tracks to the WAV cache (once; nothing to do for MUSDB18-HQ)."""
        if not self.detect_is_wav():
            self._decode_subset(self._open_db("train", is_wav=False), "train")

    def _open_db(self, subset: str, is_wav: bool) -> Any:
        import musdb  # needs ffmpeg on the PATH at import time; only this data set pays for it

        return musdb.DB(root=str(self.root), is_wav=is_wav, subsets=subset)

    def _subset_tracks(self, subset: str) -> tuple[list[Track], set[str]]:
        is_wav = self.detect_is_wav()
        db = self._open_db(subset, is_wav)
        official = set(db.setup.get("validation_tracks", [])) if subset == "train" else set()
        if not is_wav:
            return self._decode_subset(db, subset), official
        tracks = []
        for music_track in db.tracks:
            folder = self.root / subset / music_track.name
            files = {}
            for source in self.sources:
                entry = music_track.sources.get(source)
                if entry is None:
                    expected = folder / f"{source}.wav"
                    raise DataError(f"track {music_track.name!r}: missing source file {expected}")
                files[source] = Path(entry.path)
            tracks.append(make_track(music_track.name, files))
        return tracks, official

    # -- MUSDB18 decoding ------------------------------------------------------------------------

    def cache_root(self) -> Path:
        """The folder MUSDB18 tracks are decoded to."""
        return cache_folder(self.root, self.cache_dir, ".sepzoo-wav-cache", "musdb")

    def _decode_subset(self, db: Any, subset: str) -> list[Track]:
        folder = self.cache_root() / subset
        todo = [t for t in db.tracks if not is_current(folder / t.name, file_stamp(Path(t.path)))]
        if todo:
            from tqdm.auto import tqdm

            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"{folder}: cannot create the MUSDB18 WAV cache ({exc.strerror})") from None
            for music_track in tqdm(todo, desc=f"decoding MUSDB18 {subset} to {folder}", unit="track"):
                _decode_track(music_track, folder / music_track.name)
        tracks = []
        for music_track in db.tracks:
            track_folder = folder / music_track.name
            tracks.append(make_track(music_track.name, {s: track_folder / f"{s}.wav" for s in self.sources}))
        return tracks


def _decode_track(music_track: Any, track_folder: Path) -> None:
    """Decode every source of a ``.stem.mp4`` track to ``<source>.wav`` in ``track_folder``.

    The files are written to a temporary folder that is renamed into place with its
    completion marker, so an interrupted decode leaves nothing that looks finished.
    """
    stem_file = Path(music_track.path)
    try:
        stems = np.asarray(music_track.stems)  # [stream, time, channel], decoded to 16-bit
    except Exception as exc:
        raise DataError(f"{stem_file}: cannot decode this MUSDB18 track ({exc})") from None
    # Only a stale decode of an older file can be at track_folder: it has no current marker.
    with atomic_folder(track_folder) as partial:
        for name, source in music_track.sources.items():
            audio = np.clip(stems[source.stem_id], -1.0, 1.0)
            sf.write(partial / f"{name}.wav", audio, int(music_track.rate), subtype="PCM_16")
        write_marker(partial, file_stamp(stem_file))
