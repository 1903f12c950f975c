"""MoisesDB as a registered data set (``data.name: moisesdb``): songs of per-instrument tracks,
summed into any list of sources.

The layout, the taxonomy of stems and track types, the routing of tracks to sources and the
split live in :mod:`sepzoo.data.moisesdb_songs`.

**Sources.** Every track goes to at most one source, as
:class:`~sepzoo.data.moisesdb_songs.StemRouting` decides from ``data.stems``. By default a source
named after a MoisesDB stem takes that stem and ``other`` takes every track no other source
takes, so ``[drums, bass, other, vocals]`` is the loader's own four-stem mix and
``[vocals, guitar, piano, bass, drums, other]`` its six-stem mix. A source a song has no track
for reads as silence.

**Reading.** Training reads random windows, and summing a song's dozen or so per-instrument
files for each window would multiply the reads. Each song's tracks are therefore summed once
per source, at the song's own rate, into a float WAV per source in a cache
(``<root>/.sepzoo-moisesdb-cache/<routing>/<song id>/``, as MUSDB18's decoded tracks are), and
training reads windows of those. An entry is made again when the song's files change; each
routing has its own folder.

**Splits.** MoisesDB has no official split. The test songs are the ``data.test_fraction`` of the
songs whose ids hash lowest (SHA-256): the same songs on every machine, whatever the listing
order. ``data.test_songs`` and ``data.train_songs`` name songs by id instead; a list given alone
takes the other songs as the other side. Validation tracks are chosen from the training songs
as for every data set (``valid``, ``valid_count``, ``valid_tracks``).
"""

from __future__ import annotations

import collections
import logging
import math
from pathlib import Path
from typing import Any

import torch

from sepzoo import DEFAULT_SOURCES
from sepzoo.data import register_dataset
from sepzoo.data.base import StemDataModule
from sepzoo.data.cache import cache_folder, is_current, write_marker
from sepzoo.data.moisesdb_songs import Song, SongTrack, StemRouting, find_songs, hashed_test_songs
from sepzoo.data.tracks import Track, make_track
from sepzoo.errors import ConfigError, DataError, suggestion
from sepzoo.io.atomic import atomic_folder, write_json_atomic
from sepzoo.io.audio import audio_info, read_audio, write_audio

log = logging.getLogger(__name__)

CACHE_NAME = ".sepzoo-moisesdb-cache"
_CACHE_FORMAT = 1


@register_dataset("moisesdb")
class MoisesDbDataModule(StemDataModule):
    """MoisesDB: each song's per-instrument tracks summed into the recipe's sources.

    Example ``data`` section for six sources, with a-tonal percussion counted as drums and
    every other track not named (wind, strings, other keys, ...) as ``other``::

        sources: [vocals, guitar, piano, bass, drums, other]   # top level
        data:
          name: moisesdb
          root: /data/moisesdb
          stems:
            drums: [drums, "percussion/a-tonal*"]

    Args:
        root: The MoisesDB folder (the download's ``moisesdb`` or its ``moisesdb_v0.1``).
        sources: Source names, in the order the model outputs them; ``None`` takes
            ``[drums, bass, other, vocals]``. (Default: ``None``)
        stems: The patterns of each source: a stem (``guitar``), a stem's track type
            (``percussion/a-tonal*``, globs allowed) or ``*`` (every track no other source
            takes); see :class:`~sepzoo.data.moisesdb_songs.StemRouting`. A source it does not
            list takes the stem of its own name, and ``other`` takes ``*``. (Default: ``None``)
        test_fraction: The share of songs set apart for testing, by a hash of their ids, in
            ``[0, 1)``; unused when ``train_songs`` or ``test_songs`` is given. (Default: ``0.1``)
        train_songs: Song ids to train on (with ``test_songs`` unset, every other song is a test
            song). (Default: ``None``)
        test_songs: Song ids to test on (with ``train_songs`` unset, every other song is a
            training song). (Default: ``None``)
        cache_dir: Where the summed stems are kept; ``None`` uses
            ``<root>/.sepzoo-moisesdb-cache``, or a folder in the user's cache when ``root`` is
            not writable. (Default: ``None``)
        **options: The options every data set shares (segment, batch size, augmentations,
            validation choice): see :class:`~sepzoo.data.base.StemDataModule`.
    """

    valid_choices = ("auto", "train-tail", "test", "none")

    def __init__(
        self,
        root: str,
        sources: list[str] | None = None,
        stems: dict[str, list[str]] | None = None,
        test_fraction: float = 0.1,
        train_songs: list[str] | None = None,
        test_songs: list[str] | None = None,
        cache_dir: str | None = None,
        **options: Any,
    ) -> None:
        sources = list(DEFAULT_SOURCES) if sources is None else list(sources)
        super().__init__(sources=sources, **options)
        self.routing = StemRouting(self.sources, stems)
        if not 0 <= test_fraction < 1:
            raise ConfigError(f"data.test_fraction must be in [0, 1), got {test_fraction}")
        self.train_songs = None if train_songs is None else sorted(dict.fromkeys(train_songs))
        self.test_songs = None if test_songs is None else sorted(dict.fromkeys(test_songs))
        both = sorted(set(self.train_songs or ()) & set(self.test_songs or ()))
        if both:
            raise ConfigError(
                f"data.train_songs and data.test_songs both list {', '.join(map(repr, both[:3]))}"
                f"{' and more' if len(both) > 3 else ''}; a song is either trained or tested on"
            )
        self.test_fraction = float(test_fraction)
        self.root = Path(root).expanduser()
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self._songs: dict[str, Song] | None = None

    # -- songs and splits ------------------------------------------------------------------------

    def songs(self) -> dict[str, Song]:
        """Every song by id, read once."""
        if self._songs is None:
            self._songs = {song.song_id: song for song in find_songs(self.root)}
            left_out = self.routing.left_out()
            if left_out:
                log.info(
                    "MoisesDB: no source takes %s; they are left out of the mixture", ", ".join(left_out)
                )
        return self._songs

    def split(self) -> tuple[list[str], list[str]]:
        """The ids of the training songs and of the test songs.

        Raises:
            ConfigError: ``train_songs`` or ``test_songs`` names a song that is not in ``root``.
        """
        ids = sorted(self.songs())
        for key, names in (("train_songs", self.train_songs), ("test_songs", self.test_songs)):
            for name in names or ():
                if name not in self.songs():
                    raise ConfigError(f"data.{key}: no song {name!r} in {self.root}{suggestion(name, ids)}")
        if self.train_songs is None and self.test_songs is None:
            test = hashed_test_songs(ids, self.test_fraction)
            return [i for i in ids if i not in test], test
        test = self.test_songs if self.test_songs is not None else []
        train = self.train_songs if self.train_songs is not None else [i for i in ids if i not in test]
        if self.test_songs is None:
            test = [i for i in ids if i not in train]
        return list(train), list(test)

    def list_tracks(self) -> tuple[list[Track], list[Track] | None]:
        """The training songs; MoisesDB has no validation split of its own."""
        train, _ = self.split()
        if not train:
            raise DataError(f"{self.root}: the split leaves no training songs")
        return self._tracks(train, "training"), None

    def list_test_tracks(self) -> list[Track]:
        """The test songs."""
        _, test = self.split()
        if not test:
            raise DataError(
                f"{self.root}: the split leaves no test songs ({len(self.songs())} songs, "
                f"data.test_fraction={self.test_fraction:g}); "
                "raise data.test_fraction or list data.test_songs"
            )
        return self._tracks(test, "test")

    def subset_tracks(self, subset: str) -> list[Track]:
        """The tracks of a subset, as ``sepzoo eval --subset`` names it.

        Args:
            subset: ``"train"`` (every training song) or ``"test"``.
        """
        if subset == "train":
            return self.list_tracks()[0]
        if subset == "test":
            return self.test_tracks()
        raise DataError(
            f"{self.root}: MoisesDB has the subsets train and test (split by data.test_fraction), "
            f"not {subset!r}"
        )

    def prepare_data(self) -> None:
        """Sum the stems of the training songs (and of the test songs when they validate) into
        the cache, once."""
        train, test = self.split()
        self._cache([self.songs()[i] for i in train + (test if self.valid == "test" else [])])

    # -- the cache of summed stems ---------------------------------------------------------------

    def cache_root(self) -> Path:
        """The folder holding the summed stems of every routing."""
        return cache_folder(self.root, self.cache_dir, CACHE_NAME, "moisesdb")

    def entry(self, song: Song) -> Path:
        """The cache folder of one song under this routing.

        Args:
            song: The song.
        """
        return self.cache_root() / self.routing.key() / song.song_id

    def _tracks(self, song_ids: list[str], which: str) -> list[Track]:
        songs = [self.songs()[song_id] for song_id in song_ids]
        self._cache(songs)
        tracks, lacking, empty = [], collections.Counter(), []
        for song in songs:
            present = {self.routing.source_of(t.stem, t.track_type) for t in song.tracks} - {None}
            if not present:
                empty.append(song.song_id)
                continue
            silent = [s for s in self.sources if s not in present]
            lacking.update(silent)
            files = {s: self.entry(song) / f"{s}.wav" for s in self.sources if s in present}
            tracks.append(make_track(song.song_id, files, silent=silent))
        counts = ", ".join(f"{source} {lacking[source]}" for source in self.sources if lacking[source])
        log.info(
            "MoisesDB %s songs: %d; songs lacking a source, read as silence: %s",
            which,
            len(tracks),
            counts or "none",
        )
        if empty:
            log.warning(
                "MoisesDB: %d %s song(s) have no track of any source and are left out: %s",
                len(empty),
                which,
                ", ".join(empty),
            )
        return tracks

    def _cache(self, songs: list[Song]) -> None:
        stamps = {song.song_id: self._stamp(song) for song in songs}
        todo = [
            s
            for s in songs
            if stamps[s.song_id]["files"] and not is_current(self.entry(s), stamps[s.song_id])
        ]
        if not todo:
            return
        from tqdm.auto import tqdm

        folder = self.cache_root() / self.routing.key()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                folder / "routing.json", {"stems": {k: list(v) for k, v in self.routing.patterns.items()}}
            )
        except OSError as exc:
            raise DataError(f"{folder}: cannot create the MoisesDB stem cache ({exc.strerror})") from None
        for song in tqdm(todo, desc=f"summing MoisesDB stems into {folder}", unit="song"):
            self._sum_song(song, stamps[song.song_id])

    def _routed(self, song: Song) -> list[tuple[str, SongTrack]]:
        routed = []
        for track in song.tracks:
            try:
                source = self.routing.source_of(track.stem, track.track_type)
            except DataError as exc:
                raise DataError(f"song {song.song_id!r}: {exc}") from None
            if source is not None:
                routed.append((source, track))
        return routed

    def _stamp(self, song: Song) -> dict[str, Any]:
        """What a song's cache entry is made from: each routed file, its source, size and time."""
        files = []
        for source, track in self._routed(song):
            try:
                stat = track.path.stat()
            except OSError:
                raise DataError(
                    f"song {song.song_id!r}: data.json lists {track.path}, which does not exist"
                ) from None
            relative = track.path.relative_to(song.folder).as_posix()
            files.append([source, relative, stat.st_size, stat.st_mtime_ns])
        return {"format": _CACHE_FORMAT, "files": files}

    def _sum_song(self, song: Song, stamp: dict[str, Any]) -> None:
        """Sum a song's tracks per source at its highest rate and write them with their marker.

        Mono tracks are up-mixed when any track is stereo; tracks shorter than the longest are
        zero-padded at the end; tracks at another rate are resampled.
        """
        routed = self._routed(song)
        infos = [audio_info(track.path) for _, track in routed]
        rate = max(info.sample_rate for info in infos)
        channels = max(info.channels for info in infos)
        length = max(math.ceil(info.frames * rate / info.sample_rate) for info in infos)
        sums: dict[str, torch.Tensor] = {}
        for source, track in routed:
            wav, _ = read_audio(track.path, sample_rate=rate, channels=channels)  # C, T
            total = sums.setdefault(source, torch.zeros(channels, length))
            frames = min(length, wav.shape[-1])
            total[:, :frames] += wav[:, :frames]
        # Only a stale entry can be there: it has no current marker.
        with atomic_folder(self.entry(song)) as partial:
            for source, total in sums.items():
                write_audio(partial / f"{source}.wav", total, rate, subtype="FLOAT")
            write_marker(partial, stamp)


__all__ = ["CACHE_NAME", "MoisesDbDataModule"]
