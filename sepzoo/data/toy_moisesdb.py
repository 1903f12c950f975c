"""A synthetic data set in MoisesDB's layout, played by the toy set's instruments.

``sepzoo toy-moisesdb OUT`` writes what the published MoisesDB unpacks to, as the moises-db
project's loader reads it::

    OUT/moisesdb_v0.1/<song id>/data.json
    OUT/moisesdb_v0.1/<song id>/<stemName>/<track id>.wav

``data.json`` names the song (``artist``, ``song``, ``genre``) and lists its stems, each with the
per-instrument tracks summed into it (``id``, ``trackType``, ``extension``, ``has_bleed``). Song
and track ids are UUIDs drawn from the seed.

Each song plays parts of :mod:`sepzoo.data.toy` over one musical plan (tempo, key, chords),
filed under MoisesDB's stems and track types. Which parts a song has depends on its index, so
that stems hold several tracks and some songs lack a stem:

=========== ============================================ =========================
stem        track type                                   songs (by index ``i``)
=========== ============================================ =========================
vocals      lead female singer / lead male singer        even / odd ``i``
vocals      background vocals                            even ``i``
bass        bass guitar (a mono file)                    all but ``i % 4 == 3``
drums       full acoustic drumkit                        all but ``i % 6 == 5``
guitar      clean electric guitar                        all but ``i % 3 == 1``
guitar      acoustic guitar                              ``i % 3 == 0``
piano       grand piano                                  odd ``i``
percussion  a-tonal percussion (claps, shakers, ...)     ``i % 3 == 2``
other_keys  synth pad                                    ``i % 4 == 0``
=========== ============================================ =========================

Files are 44.1 kHz 16-bit PCM over the toy set's noise floor. Like the toy MUSDB set, this is a
smoke test of the machinery; numbers measured on it say nothing about real music.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sepzoo.data.toy import (
    MARKER_FILE,
    SAMPLE_RATE,
    TrackPlan,
    plan_track,
    render_stems,
    staged_data_set,
    synth_bass,
    synth_drums,
    synth_other,
    synth_vocals,
)
from sepzoo.errors import SepzooError

PROVIDER = "moisesdb_v0.1"
"""The folder the published MoisesDB keeps its songs in (the loader's "provider")."""

_SEED_STREAM = 2
"""Keeps the songs' random streams apart from the toy MUSDB set's train (0) and test (1) tracks."""

Synth = Callable[[TrackPlan, int, np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class ToyPart:
    """One instrument track of a toy MoisesDB song.

    Args:
        stem: MoisesDB stem (``stemName``), the folder the file goes to.
        track_type: MoisesDB track type (``trackType``).
        synth: The toy instrument that plays it.
        in_song: Whether the song of a given index has this track.
        mono: Write a mono file (the loader up-mixes mono files). (Default: ``False``)
    """

    stem: str
    track_type: str
    synth: Synth
    in_song: Callable[[int], bool]
    mono: bool = False


TOY_PARTS: tuple[ToyPart, ...] = (
    ToyPart("vocals", "lead female singer", synth_vocals, lambda i: i % 2 == 0),
    ToyPart("vocals", "lead male singer", synth_vocals, lambda i: i % 2 == 1),
    ToyPart("vocals", "background vocals", synth_vocals, lambda i: i % 2 == 0),
    ToyPart("bass", "bass guitar", synth_bass, lambda i: i % 4 != 3, mono=True),
    ToyPart("drums", "full acoustic drumkit", synth_drums, lambda i: i % 6 != 5),
    ToyPart("guitar", "clean electric guitar", synth_other, lambda i: i % 3 != 1),
    ToyPart("guitar", "acoustic guitar", synth_other, lambda i: i % 3 == 0),
    ToyPart("piano", "grand piano", synth_other, lambda i: i % 2 == 1),
    ToyPart(
        "percussion",
        "a-tonal percussion (claps, shakers, congas, cowbell etc)",
        synth_drums,
        lambda i: i % 3 == 2,
    ),
    ToyPart("other_keys", "synth pad", synth_other, lambda i: i % 4 == 0),
)
"""Every track a toy song may have, in the order ``data.json`` lists them."""


@dataclass(frozen=True)
class ToySong:
    """One synthesized song.

    Args:
        song_id: Its folder name, a UUID.
        index: Its position in the set.
        tracks: ``(part, track id, int16 samples [T, C])`` for each of its tracks.
    """

    song_id: str
    index: int
    tracks: list[tuple[ToyPart, str, np.ndarray]]


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def synthesize_song(index: int, seconds: float, rng: np.random.Generator) -> ToySong:
    """The tracks of toy song ``index``, played over one plan and levelled together.

    Args:
        index: The song's position in the set (chooses its parts).
        seconds: Song length.
        rng: The song's random generator.
    """
    song_id = _uuid(rng)
    length = int(round(seconds * SAMPLE_RATE))
    plan = plan_track(rng)
    parts = [part for part in TOY_PARTS if part.in_song(index)]
    track_ids = [_uuid(rng) for _ in parts]
    raw = {key: part.synth(plan, length, rng, SAMPLE_RATE) for key, part in zip(track_ids, parts)}
    pans = {key: float(rng.uniform(-0.5, 0.5)) for key in track_ids}
    levels = {key: float(rng.uniform(-24, -16)) for key in track_ids}
    rendered = render_stems(raw, pans, levels, rng)
    tracks = []
    for key, part in zip(track_ids, parts):
        samples = rendered[key]
        if part.mono:
            samples = np.round(samples.astype(np.float64).mean(axis=1, keepdims=True)).astype(np.int16)
        tracks.append((part, key, samples))
    return ToySong(song_id, index, tracks)


def song_record(song: ToySong) -> dict:
    """The song's ``data.json``, in MoisesDB's format.

    Args:
        song: The song.
    """
    stems: dict[str, list[dict]] = {}
    for part, track_id, _ in song.tracks:
        stems.setdefault(part.stem, []).append(
            {"id": track_id, "trackType": part.track_type, "extension": "wav", "has_bleed": False}
        )
    return {
        "artist": f"Toy Artist {song.index:03d}",
        "song": f"Synthetic Song {song.index:03d}",
        "genre": "Toy",
        "stems": [{"stemName": stem, "tracks": tracks} for stem, tracks in stems.items()],
    }


def generate_toy_moisesdb(
    out: str | Path,
    songs: int = 8,
    seconds: float = 10.0,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write a toy data set in MoisesDB's layout.

    The set is written to a temporary folder beside ``out`` and renamed into place, so an
    interrupted run leaves nothing that looks finished.

    Args:
        out: The data set folder to create.
        songs: Number of songs. (Default: ``8``)
        seconds: Length of every song. (Default: ``10.0``)
        seed: Seed of every random choice. (Default: ``0``)
        force: Replace an existing ``out``. (Default: ``False``)
        progress: Show a progress bar. (Default: ``False``)

    Raises:
        OutputExistsError: ``out`` exists and ``force`` is False.
        SepzooError: A count or length is invalid, or ``out`` cannot be created.
    """
    from tqdm.auto import tqdm

    if songs < 1:
        raise SepzooError(f"--songs must be >= 1, got {songs}")
    out = Path(out)
    with staged_data_set(out, seconds, seed, force) as staging:
        for index in tqdm(range(songs), desc="toy-moisesdb", unit="song", disable=not progress):
            song = synthesize_song(index, seconds, np.random.default_rng([seed, _SEED_STREAM, index]))
            _write_song(staging / PROVIDER / song.song_id, song)
        (staging / MARKER_FILE).write_text(
            "Synthetic data set written by `sepzoo toy-moisesdb` "
            f"(--songs {songs} --seconds {seconds:g} --seed {seed}).\n"
            f"MoisesDB layout: {PROVIDER}/<song id>/data.json and <stemName>/<track id>.wav, "
            "44.1 kHz 16-bit.\n"
            "Results on it are a smoke test of the machinery, not evidence about any model.\n"
        )
    return out


def _write_song(folder: Path, song: ToySong) -> None:
    for part, track_id, samples in song.tracks:
        (folder / part.stem).mkdir(parents=True, exist_ok=True)
        sf.write(folder / part.stem / f"{track_id}.wav", samples, SAMPLE_RATE, subtype="PCM_16")
    (folder / "data.json").write_text(json.dumps(song_record(song), indent=2) + "\n")


__all__ = [
    "PROVIDER",
    "TOY_PARTS",
    "ToyPart",
    "ToySong",
    "generate_toy_moisesdb",
    "song_record",
    "synthesize_song",
]
