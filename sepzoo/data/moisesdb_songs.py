"""MoisesDB's layout and taxonomy: reading songs, routing their tracks to sources, splitting them.

MoisesDB (Pereira et al. 2023, "Moisesdb: A dataset for source separation beyond 4-stems")
holds 240 songs. The moises-db project's loader reads it as::

    root/<provider>/<song id>/data.json
    root/<provider>/<song id>/<stemName>/<track id>.<extension>

The download unpacks to ``moisesdb/moisesdb_v0.1/<song id>/``; ``root`` may be ``moisesdb`` or
``moisesdb_v0.1`` itself (song folders are looked for one and two levels down). ``data.json``
lists the song's stems, each with the tracks summed into it::

    {"artist": "...", "song": "...", "genre": "...",
     "stems": [{"stemName": "vocals",
                "tracks": [{"id": "<uuid>", "trackType": "lead female singer",
                            "extension": "wav", "has_bleed": false}, ...]}, ...]}

Stem names and track types follow the loader's taxonomy (:data:`MOISESDB_STEMS`); other keys
(``has_bleed``, ...) are not used, as the loader's own mixes do not use them.

This module needs neither Lightning nor the data module (:mod:`sepzoo.data.moisesdb`), so that
``sepzoo eval`` can tell a MoisesDB root apart cheaply.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sepzoo.errors import ConfigError, DataError, suggestion
from sepzoo.schema import validate

MOISESDB_STEMS: dict[str, tuple[str, ...]] = {
    "vocals": (
        "lead male singer",
        "lead female singer",
        "human choir",
        "background vocals",
        "other (vocoder, beatboxing etc)",
    ),
    "bass": (
        "bass guitar",
        "bass synthesizer (moog etc)",
        "contrabass/double bass (bass of instrings)",
        "tuba (bass of brass)",
        "bassoon (bass of woodwind)",
    ),
    "drums": (
        "snare drum",
        "toms",
        "kick drum",
        "cymbals",
        "overheads",
        "full acoustic drumkit",
        "drum machine",
    ),
    "other": ("fx/processed sound, scratches, gun shots, explosions etc", "click track"),
    "guitar": (
        "clean electric guitar",
        "distorted electric guitar",
        "lap steel guitar or slide guitar",
        "acoustic guitar",
    ),
    "other_plucked": ("banjo, mandolin, ukulele, harp etc",),
    "percussion": (
        "a-tonal percussion (claps, shakers, congas, cowbell etc)",
        "pitched percussion (mallets, glockenspiel, ...)",
    ),
    "piano": ("grand piano", "electric piano (rhodes, wurlitzer, piano sound alike)"),
    "other_keys": (
        "organ, electric organ",
        "synth pad",
        "synth lead",
        "other sounds (hapischord, melotron etc)",
    ),
    "bowed_strings": (
        "violin (solo)",
        "viola (solo)",
        "cello (solo)",
        "violin section",
        "viola section",
        "cello section",
        "string section",
        "other strings",
    ),
    "wind": (
        "brass (trumpet, trombone, french horn, brass etc)",
        "flutes (piccolo, bamboo flute, panpipes, flutes etc)",
        "reeds (saxophone, clarinets, oboe, english horn, bagpipe)",
        "other wind",
    ),
}
"""MoisesDB's stems (``stemName``, as folder names) and the track types (``trackType``) of each,
as the moises-db loader's ``defaults.py`` lists them."""

REST = "*"
"""The pattern that takes every track no other pattern takes."""

# ----------------------------------------------------------------------------------------------
# From tracks to sources


@dataclass(frozen=True)
class _Pattern:
    source: str
    text: str
    stem: str
    track_type: str | None

    @property
    def rank(self) -> int:
        """How specific the pattern is: 0 for the rest, 1 for a stem, 2 for a stem's track type."""
        if self.text == REST:
            return 0
        return 1 if self.track_type is None else 2

    def matches(self, stem: str, track_type: str) -> bool:
        if self.text == REST:
            return True
        if not fnmatchcase(stem, self.stem):
            return False
        return self.track_type is None or fnmatchcase(track_type, self.track_type)


def default_patterns(source: str) -> tuple[str, ...]:
    """The patterns a source takes when ``data.stems`` does not list it: the MoisesDB stem of
    its own name, or every track no other source takes for ``other``.

    Args:
        source: The source name.

    Raises:
        ConfigError: The source is neither ``other`` nor a MoisesDB stem.
    """
    if source == "other":
        return (REST,)
    if source in MOISESDB_STEMS:
        return (source,)
    raise ConfigError(
        f"data.sources: {source!r} is not a MoisesDB stem, so data.stems.{source} must name the stems "
        f"it takes{suggestion(source, MOISESDB_STEMS)} (stems: {', '.join(MOISESDB_STEMS)})"
    )


class StemRouting:
    """Which source each MoisesDB track is summed into.

    A pattern is a stem (``guitar``), a stem and one of its track types
    (``percussion/a-tonal*``; each part an ``fnmatch`` glob), or ``*``: every track that no other
    pattern takes. A track goes to the source whose matching pattern is the most specific
    (track type, then stem, then ``*``); a track no pattern matches is left out of the mixture.

    Args:
        sources: The source names.
        stems: The patterns of each source (``data.stems``); a source it does not list takes
            :func:`default_patterns`. (Default: ``None``, every source at its default)

    Raises:
        ConfigError: A listed source is not in ``sources``, a pattern names a stem or track type
            MoisesDB does not have, two sources take the same track equally specifically, or a
            source would never get a track.
    """

    def __init__(self, sources: Sequence[str], stems: Mapping[str, Sequence[str]] | None = None) -> None:
        stems = dict(stems or {})
        for source in stems:
            if source not in sources:
                raise ConfigError(
                    f"data.stems: {source!r} is not one of data.sources {list(sources)}"
                    f"{suggestion(source, sources)}"
                )
        self.patterns: dict[str, tuple[str, ...]] = {}
        for source in sources:
            patterns = tuple(stems[source]) if source in stems else default_patterns(source)
            if not patterns:
                raise ConfigError(f"data.stems.{source}: lists no stems; name at least one")
            self.patterns[source] = patterns
        self._parsed = [_parse(source, text) for source, texts in self.patterns.items() for text in texts]
        self._check_taxonomy()

    def source_of(self, stem: str, track_type: str) -> str | None:
        """The source a track goes to, or ``None`` when it is left out.

        Args:
            stem: The track's stem (``stemName``).
            track_type: The track's type (``trackType``).

        Raises:
            DataError: Two sources take the track equally specifically (only for a track type
                outside the taxonomy; within it, the constructor refuses such patterns).
        """
        chosen, rivals = self._choose(stem, track_type)
        if rivals:
            raise DataError(_rivals_message(stem, track_type, rivals))
        return chosen

    def key(self) -> str:
        """Twelve hex digits naming the routing (e.g. its folder of summed stems); the order of
        sources and of patterns does not change it."""
        canonical = {source: sorted(set(patterns)) for source, patterns in self.patterns.items()}
        text = json.dumps(canonical, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def left_out(self) -> list[str]:
        """The taxonomy's stems (``stem``) and track types (``stem/type``) that go to no source."""
        found = []
        for stem, track_types in MOISESDB_STEMS.items():
            out = [t for t in track_types if self._choose(stem, t)[0] is None]
            if len(out) == len(track_types):
                found.append(stem)
            else:
                found += [f"{stem}/{t}" for t in out]
        return found

    def _choose(self, stem: str, track_type: str) -> tuple[str | None, list[_Pattern]]:
        matching = [p for p in self._parsed if p.matches(stem, track_type)]
        if not matching:
            return None, []
        top = max(p.rank for p in matching)
        best = [p for p in matching if p.rank == top]
        if len({p.source for p in best}) > 1:
            return None, best
        return best[0].source, []

    def _check_taxonomy(self) -> None:
        receiving = set()
        for stem, track_types in MOISESDB_STEMS.items():
            for track_type in track_types:
                chosen, rivals = self._choose(stem, track_type)
                if rivals:
                    raise ConfigError(_rivals_message(stem, track_type, rivals))
                receiving.add(chosen)
        for source, patterns in self.patterns.items():
            if source not in receiving:
                raise ConfigError(
                    f"data.stems.{source}: {list(patterns)} takes no MoisesDB track: other sources "
                    "name every track it matches more specifically"
                )


def _parse(source: str, text: str) -> _Pattern:
    """Check one pattern of ``data.stems`` against the taxonomy."""
    key = f"data.stems.{source}"
    if text == REST:
        return _Pattern(source, text, REST, None)
    stem, slash, track_type = text.partition("/")
    stems = [name for name in MOISESDB_STEMS if fnmatchcase(name, stem)]
    if not stems:
        raise ConfigError(
            f"{key}: MoisesDB has no stem {stem!r}{suggestion(stem, MOISESDB_STEMS)} "
            f"(stems: {', '.join(MOISESDB_STEMS)})"
        )
    if not slash:
        return _Pattern(source, text, stem, None)
    track_types = [t for name in stems for t in MOISESDB_STEMS[name]]
    if not any(fnmatchcase(t, track_type) for t in track_types):
        raise ConfigError(
            f"{key}: MoisesDB stem {stem!r} has no track type {track_type!r}"
            f"{suggestion(track_type, track_types)} (track types: {'; '.join(track_types)})"
        )
    return _Pattern(source, text, stem, track_type)


def _rivals_message(stem: str, track_type: str, rivals: list[_Pattern]) -> str:
    claims = " and ".join(f"{p.source!r} ({p.text!r})" for p in rivals)
    return (
        f"data.stems: {claims} both take MoisesDB track '{stem}/{track_type}'; give it to one source "
        "(a stem/track type pattern is more specific than a stem, and a stem than '*')"
    )


# ----------------------------------------------------------------------------------------------
# Songs on disk


class _Entry(BaseModel):
    # data.json is another project's file: keys sepzoo does not use are passed over.
    model_config = ConfigDict(extra="ignore", strict=True)


class _TrackEntry(_Entry):
    model_config = ConfigDict(title="a MoisesDB track")

    id: str
    track_type: str = Field(alias="trackType")
    extension: str


class _StemEntry(_Entry):
    model_config = ConfigDict(title="a MoisesDB stem")

    stem_name: str = Field(alias="stemName")
    tracks: list[_TrackEntry]


class _SongFile(_Entry):
    model_config = ConfigDict(title="a MoisesDB data.json")

    stems: list[_StemEntry]


@dataclass(frozen=True)
class SongTrack:
    """One per-instrument track of a song.

    Args:
        stem: Its stem (``stemName``).
        track_type: Its type (``trackType``).
        path: Its audio file.
    """

    stem: str
    track_type: str
    path: Path


@dataclass(frozen=True)
class Song:
    """One MoisesDB song, as its ``data.json`` describes it.

    Args:
        song_id: The folder name (a UUID), used as the track name.
        folder: The song folder.
        tracks: Its per-instrument tracks.
    """

    song_id: str
    folder: Path
    tracks: tuple[SongTrack, ...]


def is_moisesdb_root(root: Path) -> bool:
    """Whether ``root`` holds MoisesDB song folders (``<song>/data.json`` one or two levels down).

    Args:
        root: A folder.
    """
    return root.is_dir() and bool(_data_files(root))


def _data_files(root: Path) -> list[Path]:
    found = []
    for pattern in ("*/data.json", "*/*/data.json"):
        for path in root.glob(pattern):
            if not any(part.startswith(".") for part in path.relative_to(root).parts):
                found.append(path)
    return sorted(found)


def find_songs(root: Path) -> list[Song]:
    """Every song under ``root``, sorted by id.

    Args:
        root: The MoisesDB folder (holding provider folders, or song folders).

    Raises:
        DataError: ``root`` is missing or holds no ``data.json``, a ``data.json`` is malformed,
            or two songs share an id.
    """
    if not root.is_dir():
        raise DataError(f"{root}: no such MoisesDB folder")
    files = _data_files(root)
    if not files:
        raise DataError(
            f"{root}: holds no MoisesDB songs; expected {root}/<provider>/<song id>/data.json "
            "(the download's moisesdb_v0.1/<song id>/data.json)"
        )
    songs: dict[str, Song] = {}
    for path in files:
        song = read_song(path.parent)
        if song.song_id in songs:
            raise DataError(
                f"{root}: song id {song.song_id!r} appears twice: "
                f"{songs[song.song_id].folder} and {song.folder}"
            )
        songs[song.song_id] = song
    return [songs[song_id] for song_id in sorted(songs)]


def read_song(folder: Path) -> Song:
    """Read a song folder's ``data.json``.

    Args:
        folder: The song folder.

    Raises:
        DataError: The file cannot be read, is not JSON, lacks a key the loader needs, or names
            a path outside the song folder.
    """
    path = folder / "data.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise DataError(f"{path}: is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with a 'stems' list")
    try:
        record = validate(_SongFile, data, str(path))
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    tracks = []
    for stem in record.stems:
        for track in stem.tracks:
            name = f"{track.id}.{track.extension}"
            for part in (stem.stem_name, name):
                if not part or "/" in part or "\\" in part or part in (".", ".."):
                    raise DataError(f"{path}: {part!r} is not a plain file or folder name")
            tracks.append(SongTrack(stem.stem_name, track.track_type, folder / stem.stem_name / name))
    return Song(folder.name, folder, tuple(tracks))


def hashed_test_songs(song_ids: Sequence[str], test_fraction: float) -> list[str]:
    """The test songs of the hashed split, sorted.

    They are the ``round(test_fraction x count)`` songs whose ids have the lowest SHA-256, at
    least one when ``test_fraction > 0``, and never every song.

    Args:
        song_ids: Every song id.
        test_fraction: The share of songs set apart for testing, in ``[0, 1)``.
    """
    if test_fraction <= 0 or len(song_ids) < 2:
        return []
    count = min(len(song_ids) - 1, max(1, math.floor(test_fraction * len(song_ids) + 0.5)))
    ranked = sorted(song_ids, key=lambda song_id: (hashlib.sha256(song_id.encode()).hexdigest(), song_id))
    return sorted(ranked[:count])


__all__ = [
    "MOISESDB_STEMS",
    "REST",
    "Song",
    "SongTrack",
    "StemRouting",
    "default_patterns",
    "find_songs",
    "hashed_test_songs",
    "is_moisesdb_root",
    "read_song",
]
