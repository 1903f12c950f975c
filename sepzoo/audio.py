"""Audio file reading and writing with one-line errors for bad files.

WAV, FLAC, OGG and AIFF are read with soundfile; anything else (mp3, m4a, stem.mp4) is decoded
by ``ffmpeg`` when it is on the PATH. Writes go to a temporary file in the target folder and
are renamed into place, so an interrupted write never leaves a half-written output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from sepzoo.errors import DataError

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
ClipMode = Literal["rescale", "clamp", "none"]


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read without decoding it."""

    path: Path
    frames: int
    sample_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Frames, sample rate and channel count of an audio file.

    Args:
        path: The file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            info = sf.info(str(path))
        except Exception as exc:
            raise DataError(f"{path}: not a readable audio file ({_short(exc)})") from None
        return AudioInfo(path, int(info.frames), int(info.samplerate), int(info.channels))
    wav, sr = _decode_ffmpeg(path)
    return AudioInfo(path, wav.shape[1], sr, wav.shape[0])


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    channels: int | None = 2,
    start: int = 0,
    frames: int = -1,
) -> tuple[Tensor, int]:
    """Read an audio file as float32 ``[channels, time]``.

    Mono files are up-mixed when ``channels=2``; files at another rate are resampled when
    ``sample_rate`` is given. Files with more than two channels, no samples, or non-finite
    samples are refused with a :class:`DataError` naming the file.

    Args:
        path: The file.
        sample_rate: Resample to this rate; ``None`` keeps the file's. (Default: ``None``)
        channels: Up-mix mono to this many channels (1 or 2); ``None`` keeps the file's.
            (Default: ``2``)
        start: First frame to read, at the file's own rate. (Default: ``0``)
        frames: Number of frames to read, ``-1`` for all. (Default: ``-1``)

    Returns:
        The samples and their sample rate.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        except Exception as exc:
            raise DataError(f"{path}: not a readable audio file ({_short(exc)})") from None
        wav = torch.from_numpy(np.ascontiguousarray(data.T))
    else:
        wav, sr = _decode_ffmpeg(path)
        wav = wav[:, start : None if frames < 0 else start + frames]
    if wav.shape[0] > 2:
        raise DataError(f"{path}: has {wav.shape[0]} channels; expected mono or stereo")
    if wav.shape[1] == 0 and start == 0:
        raise DataError(f"{path}: holds no audio samples")
    if not torch.isfinite(wav).all():
        raise DataError(f"{path}: contains NaN or infinite samples")
    if channels is not None:
        wav = convert_channels(wav, channels)
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, int(sr)


def convert_channels(wav: Tensor, channels: int) -> Tensor:
    """Up-mix mono to stereo or down-mix stereo to mono.

    Args:
        wav: Audio ``[C, T]``.
        channels: Wanted channel count (1 or 2).
    """
    if wav.shape[0] == channels:
        return wav
    if channels == 1:
        return wav.mean(0, keepdim=True)
    if wav.shape[0] == 1:
        return wav.expand(channels, -1).clone()
    raise ValueError(f"cannot convert {wav.shape[0]} channels to {channels}")


def resample(wav: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited resampling of ``[..., T]`` audio.

    Args:
        wav: The audio.
        orig_sr: Its sample rate.
        new_sr: The wanted sample rate.
    """
    if orig_sr == new_sr:
        return wav
    import torchaudio.functional as taf

    return taf.resample(wav, orig_sr, new_sr)


def _decode_ffmpeg(path: Path) -> tuple[Tensor, int]:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise DataError(f"{path}: reading {path.suffix or 'this'} files needs ffmpeg and ffprobe on the PATH")
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    fields = probe.stdout.strip().split("\n")[0].split(",") if probe.returncode == 0 else []
    if len(fields) < 2 or not all(f.strip().isdigit() for f in fields[:2]):
        raise DataError(f"{path}: not a readable audio file (ffprobe found no audio stream)")
    sr, channels = int(fields[0]), int(fields[1])
    decoded = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-nostdin",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-f",
            "f32le",
            "-acodec",
            "pcm_f32le",
            "-",
        ],
        capture_output=True,
    )
    if decoded.returncode != 0:
        raise DataError(
            f"{path}: ffmpeg could not decode it ({decoded.stderr.decode(errors='replace').strip()[:200]})"
        )
    samples = np.frombuffer(decoded.stdout, dtype=np.float32)
    samples = samples[: len(samples) // channels * channels].reshape(-1, channels).T
    return torch.from_numpy(samples.copy()), sr


def prepare_output(path: str | Path, force: bool) -> Path:
    """Check that ``path`` may be written: refuse an existing file without ``force`` and
    make sure its folder can be created.

    Args:
        path: The output file.
        force: Allow replacing an existing file.
    """
    from sepzoo.errors import OutputExistsError, SepzooError

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists; pass --force to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepzooError(f"{path.parent}: cannot create output folder ({exc.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise SepzooError(f"{path.parent}: output folder is not writable")
    return path


def write_audio(
    path: str | Path,
    wav: Tensor,
    sample_rate: int,
    subtype: str = "PCM_16",
    clip_mode: ClipMode = "rescale",
) -> Path:
    """Write ``[C, T]`` audio atomically (temporary file, then rename).

    Args:
        path: Output file; ``.wav`` or ``.flac`` chooses the container.
        wav: The audio, float.
        sample_rate: Its sample rate.
        subtype: soundfile subtype: ``"PCM_16"``, ``"PCM_24"`` or ``"FLOAT"``. (Default: ``"PCM_16"``)
        clip_mode: For integer subtypes, ``"rescale"`` scales the whole file down when it would
            clip, ``"clamp"`` clips samples, ``"none"`` leaves them. (Default: ``"rescale"``)
    """
    path = Path(path)
    wav = wav.detach().to(torch.float32).cpu()
    if subtype != "FLOAT":
        peak = float(wav.abs().max()) if wav.numel() else 0.0
        if clip_mode == "rescale" and peak > 1.0:
            wav = wav / (peak * 1.01)
        elif clip_mode == "clamp":
            wav = wav.clamp(-1.0, 1.0)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    if fmt == "FLAC" and subtype == "FLOAT":
        subtype = "PCM_24"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, wav.numpy().T, sample_rate, subtype=subtype, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__
