"""Multi-stem tracks on disk: listing, validation and windowed reading.

A :class:`Track` names one file per source. Everything about it that training needs (sample
rate, length, channel count) is read once from the file headers, so that a broken data set is
reported before training starts, and so that a training sample reads only its own window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sepzoo.errors import DataError
from sepzoo.io.audio import audio_info, read_audio, resample

DEFAULT_EXTENSIONS: tuple[str, ...] = (".wav", ".flac")

# Extra input frames read on each side of a window that is resampled, so that the filter's
# edge effects fall outside the frames that are kept.
_RESAMPLE_MARGIN = 256


@dataclass(frozen=True)
class Track:
    """One multi-stem track: a file per source, all of the same rate and length, and the sources
    it lacks, which read as silence.

    Args:
        name: Track name (its folder name, e.g. ``"Artist - Title"``).
        files: The file of each source.
        sample_rate: Sample rate of the files in Hz.
        frames: Length of every file in frames, at ``sample_rate``.
        channels: Largest channel count among the files (1 or 2).
        silent: Sources the track has no file for because it lacks them (e.g. a MoisesDB song
            without piano); they read as zeros. (Default: none)
    """

    name: str
    files: dict[str, Path]
    sample_rate: int
    frames: int
    channels: int
    silent: frozenset[str] = frozenset()

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate

    def frames_at(self, sample_rate: int) -> int:
        """Length of the track in frames once resampled to ``sample_rate``.

        Args:
            sample_rate: The rate the track is read at.
        """
        if sample_rate == self.sample_rate:
            return self.frames
        return self.frames * sample_rate // self.sample_rate


def make_track(name: str, files: Mapping[str, str | Path], silent: Iterable[str] = ()) -> Track:
    """Build a :class:`Track` from its files, checking that they agree.

    Args:
        name: Track name used in error messages.
        files: The file of each source.
        silent: Sources the track lacks, read as silence. (Default: none)

    Raises:
        DataError: A file is missing or unreadable, has more than two channels, or differs from
            the first one in sample rate or length.
    """
    if not files:
        raise DataError(f"track {name!r}: no source files")
    silent = frozenset(silent)
    both = sorted(silent & set(files))
    if both:
        raise ValueError(f"track {name!r}: sources {both} have a file and are also called silent")
    infos = {source: audio_info(path) for source, path in files.items()}
    first = next(iter(infos.values()))
    for info in infos.values():
        if info.channels > 2:
            raise DataError(
                f"track {name!r}: {info.path} has {info.channels} channels; expected mono or stereo"
            )
        if info.frames == 0:
            raise DataError(f"track {name!r}: {info.path} holds no audio samples")
        if info.sample_rate != first.sample_rate:
            raise DataError(
                f"track {name!r}: {info.path} has sample rate {info.sample_rate} Hz but "
                f"{first.path.name} has {first.sample_rate} Hz; all stems of a track must share one rate"
            )
        if info.frames != first.frames:
            raise DataError(
                f"track {name!r}: {info.path} has {info.frames} frames but {first.path.name} has "
                f"{first.frames}; all stems of a track must have the same length"
            )
    return Track(
        name=name,
        files={source: Path(info.path) for source, info in infos.items()},
        sample_rate=first.sample_rate,
        frames=first.frames,
        channels=max(info.channels for info in infos.values()),
        silent=silent,
    )


def find_source_file(track_folder: Path, source: str, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> Path:
    """The file of ``source`` in a track folder, trying each extension in turn.

    Args:
        track_folder: The folder holding one file per source.
        source: Source name (the file stem, e.g. ``"vocals"``).
        extensions: Accepted file extensions, in order of preference.
            (Default: ``(".wav", ".flac")``)

    Raises:
        DataError: Naming the track and the expected file when none exists.
    """
    extensions = tuple(extensions)
    for extension in extensions:
        candidate = track_folder / f"{source}{extension}"
        if candidate.is_file():
            return candidate
    expected = " or ".join(f"{source}{extension}" for extension in extensions)
    raise DataError(f"track {track_folder.name!r}: missing source file {track_folder / expected}")


def scan_stem_folder(
    folder: str | Path,
    sources: list[str],
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
) -> list[Track]:
    """List the tracks of a ``folder/<track>/<source>.<ext>`` data set, sorted by name.

    Folders whose name starts with ``.`` are ignored.

    Args:
        folder: The folder holding one sub-folder per track.
        sources: The source names every track must have a file for.
        extensions: Accepted file extensions, in order of preference.
            (Default: ``(".wav", ".flac")``)

    Raises:
        DataError: The folder is missing or holds no tracks, a track lacks a source file, or the
            stems of a track differ in length or sample rate.
    """
    folder = Path(folder)
    extensions = tuple(extensions)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such data folder")
    track_folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not track_folders:
        raise DataError(f"{folder}: holds no tracks; expected {folder}/<track>/<source>{extensions[0]}")
    tracks = []
    for track_folder in track_folders:
        files = {source: find_source_file(track_folder, source, extensions) for source in sources}
        tracks.append(make_track(track_folder.name, files))
    return tracks


def read_stems(
    track: Track,
    sources: list[str],
    start: int,
    frames: int,
    sample_rate: int,
    channels: int,
) -> Tensor:
    """Read a window of every source of a track as float32 ``[S, C, T]``.

    Only the window is read from disk. A track at another rate is read at its own rate around
    the window, resampled, and cut to exactly ``frames``; a window running past the end of the
    track is zero-padded; mono files are up-mixed; a source the track lacks is zeros.

    Args:
        track: The track.
        sources: Which sources to read, in output order.
        start: First frame of the window, at ``sample_rate``.
        frames: Window length in frames, at ``sample_rate``.
        sample_rate: Rate of the returned audio.
        channels: Channel count of the returned audio (1 or 2).
    """
    if start < 0 or frames < 0:
        raise ValueError(f"start and frames must be >= 0, got start={start}, frames={frames}")
    missing = [s for s in sources if s not in track.files and s not in track.silent]
    if missing:
        raise DataError(f"track {track.name!r}: has no file for source(s) {missing}")
    stems = [
        torch.zeros(channels, frames)
        if source in track.silent
        else _read_window(track.files[source], track.sample_rate, start, frames, sample_rate, channels)
        for source in sources
    ]
    return torch.stack(stems)


def _read_window(
    path: Path, file_rate: int, start: int, frames: int, sample_rate: int, channels: int
) -> Tensor:
    if frames == 0:
        return torch.zeros(channels, 0)
    if file_rate == sample_rate:
        wav, _ = read_audio(path, channels=channels, start=start, frames=frames)
        return _fit_length(wav, frames)
    # Start on a frame that maps to a whole frame at both rates, so the window stays aligned
    # with what resampling the whole file would give.
    divisor = math.gcd(file_rate, sample_rate)
    file_step, out_step = file_rate // divisor, sample_rate // divisor
    block = max(0, start - _RESAMPLE_MARGIN) // out_step
    file_start, out_origin = block * file_step, block * out_step
    lead = start - out_origin
    file_frames = math.ceil((lead + frames) * file_rate / sample_rate) + _RESAMPLE_MARGIN
    wav, _ = read_audio(path, channels=channels, start=file_start, frames=file_frames)
    wav = resample(wav, file_rate, sample_rate)
    return _fit_length(wav[:, lead:], frames)


def _fit_length(wav: Tensor, frames: int) -> Tensor:
    """Crop or zero-pad ``[C, T]`` audio at the end to exactly ``frames``."""
    if wav.shape[-1] >= frames:
        return wav[:, :frames].contiguous()
    return torch.nn.functional.pad(wav, (0, frames - wav.shape[-1]))
