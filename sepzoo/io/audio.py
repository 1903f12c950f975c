"""Audio file reading and writing with one-line errors for bad files.

WAV, FLAC, OGG and AIFF are read with soundfile; anything else (mp3, m4a, stem.mp4) is decoded
by ``ffmpeg`` when it is on the PATH. Writes go to a temporary file in the target folder and
are renamed into place, so an interrupted write never leaves a half-written output.

Long files are also read and written in blocks, so that memory does not grow with their
length: :class:`AudioStream` yields a file's samples block by block, converted to the wanted
channel count and resampled by :class:`BlockResampler` (which gives what resampling the whole
signal at once gives), and :class:`StemWriter` writes blocks to a hidden ``.part`` file that is
renamed into place only once complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.nn import functional as F

from sepzoo.errors import DataError, SepzooError
from sepzoo.io.atomic import atomic_path, commit_part, make_writable_folder, new_part

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
ClipMode = Literal["rescale", "clamp", "none"]
_T = TypeVar("_T")


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read without decoding it.

    ``frames`` is exact unless ``exact`` is False: :func:`stream_info` takes it from the
    container's duration for files that ffmpeg decodes.
    """

    path: Path
    frames: int
    sample_rate: int
    channels: int
    exact: bool = True

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


def stream_info(path: str | Path) -> AudioInfo:
    """What :class:`AudioStream` will read from ``path``, learnt without decoding the file.

    Unlike :func:`audio_info`, files that ffmpeg decodes are only probed (with ``ffprobe``), so
    their ``frames`` is estimated from the container's duration (``exact`` is False).

    Args:
        path: The file.

    Raises:
        DataError: The file is missing or holds no readable audio stream.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        return audio_info(path)
    sample_rate, channels, seconds = _probe_ffmpeg(path)
    return AudioInfo(path, round(seconds * sample_rate), sample_rate, channels, exact=False)


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


def _need_ffmpeg(path: Path) -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise DataError(f"{path}: reading {path.suffix or 'this'} files needs ffmpeg and ffprobe on the PATH")


def _probe_ffmpeg(path: Path) -> tuple[int, int, float]:
    """Sample rate, channels and duration in seconds of the first audio stream of ``path``."""
    _need_ffmpeg(path)
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels,duration:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    try:
        found = json.loads(probe.stdout) if probe.returncode == 0 else {}
    except json.JSONDecodeError:
        found = {}
    streams = found.get("streams") or [{}]
    stream = streams[0]
    if not str(stream.get("sample_rate", "")).isdigit() or not str(stream.get("channels", "")).isdigit():
        raise DataError(f"{path}: not a readable audio file (ffprobe found no audio stream)")
    duration = stream.get("duration") or found.get("format", {}).get("duration") or "0"
    try:
        seconds = max(0.0, float(duration))
    except ValueError:
        seconds = 0.0
    return int(stream["sample_rate"]), int(stream["channels"]), seconds


def _decode_ffmpeg(path: Path) -> tuple[Tensor, int]:
    sr, channels, _ = _probe_ffmpeg(path)
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


# ----------------------------------------------------------------------------------------------
# Reading in blocks


class BlockResampler:
    """Resample a signal that arrives in blocks, giving what resampling it whole gives.

    :func:`resample` (torchaudio's windowed-sinc resampler) computes each run of ``new``
    output samples (the rates divided by their gcd are ``orig`` and ``new``) from ``orig`` input
    samples plus ``width`` neighbours on each side, zeros beyond the signal. This class keeps a
    margin of at least ``width`` input samples (a whole number of ``orig`` runs) on each side of
    the region it resamples, resamples region and margins together and keeps only the region's
    output, so every kept sample saw exactly the input it sees in a whole-signal resampling;
    only the float rounding of the convolution may differ (tests pin it below 1e-6). The total
    length is ``ceil(length * new_rate / old_rate)``, as for the whole signal.

    Args:
        orig_rate: The input's sample rate.
        new_rate: The wanted sample rate.
        channels: Channels of the blocks. (Default: ``2``)
    """

    LOWPASS_FILTER_WIDTH = 6
    ROLLOFF = 0.99

    def __init__(self, orig_rate: int, new_rate: int, channels: int = 2) -> None:
        if orig_rate <= 0 or new_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
        self.orig_rate, self.new_rate = orig_rate, new_rate
        divisor = math.gcd(orig_rate, new_rate)
        self.orig, self.new = orig_rate // divisor, new_rate // divisor
        # torchaudio's kernel half-width in input samples (its defaults: 6 zero crossings, 0.99).
        width = math.ceil(self.LOWPASS_FILTER_WIDTH * self.orig / (min(self.orig, self.new) * self.ROLLOFF))
        self.margin = self.orig * (math.ceil(width / self.orig) + 1)
        self.buffer = torch.zeros(channels, self.margin)  # C, n: input from start - margin on
        self.start = 0  # first input sample whose output has not been given yet
        self.received = 0

    def push(self, block: Tensor) -> Tensor:
        """Add input ``[C, t]``; return the output ``[C, t']`` that no later input changes.

        Args:
            block: The next input samples.
        """
        if self.orig == self.new:
            return block
        self.buffer = torch.cat([self.buffer, block], dim=-1)
        self.received += block.shape[-1]
        end = (self.received - self.margin) // self.orig * self.orig
        if end <= self.start:
            return block.new_zeros(block.shape[0], 0)
        region = self.buffer[:, : end - self.start + 2 * self.margin]
        out = self._resample(region, end - self.start)
        self.buffer = self.buffer[:, end - self.start :]
        self.start = end
        return out

    def finish(self) -> Tensor:
        """Return the rest of the output, the input having ended."""
        if self.orig == self.new:
            return self.buffer[:, :0]
        remaining = self.received - self.start
        padded = F.pad(self.buffer, (0, self.margin))  # C, margin + remaining + margin
        out = self._resample(padded, remaining)
        self.buffer = self.buffer[:, :0]
        self.start = self.received
        return out

    def _resample(self, region: Tensor, count: int) -> Tensor:
        """Output of the ``count`` input samples after the left margin of ``region``."""
        first = self.margin // self.orig * self.new
        return resample(region, self.orig_rate, self.new_rate)[
            :, first : first + math.ceil(count * self.new / self.orig)
        ]


class AudioStream:
    """A file's samples, block by block, at a wanted sample rate and channel count.

    Each iteration opens and reads the file again from its start (a first pass for whole-track
    statistics is a second iteration), holding at most one block of the file plus the
    resampler's margins: WAV, FLAC, OGG and AIFF are read through soundfile, anything else
    streams from ``ffmpeg`` as 32-bit float samples through a pipe. Blocks are checked as they
    come: non-finite samples and decoding errors (a truncated FLAC, a broken mp3) raise a
    :class:`DataError` naming the file; a WAV file cut short simply ends early, and a file
    with no samples at all is refused.

    Args:
        path: The file.
        sample_rate: Resample to this rate; ``None`` keeps the file's. (Default: ``None``)
        channels: Convert to this many channels (1 or 2, see :func:`convert_channels`);
            ``None`` keeps the file's. (Default: ``2``)
        block_frames: Frames read from the file at a time. (Default: ``65536``)
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int | None = None,
        channels: int | None = 2,
        block_frames: int = 65536,
    ) -> None:
        if block_frames <= 0:
            raise ValueError(f"block_frames must be positive, got {block_frames}")
        self.info = stream_info(path)
        self.path = self.info.path
        if self.info.channels > 2:
            raise DataError(f"{self.path}: has {self.info.channels} channels; expected mono or stereo")
        if self.info.exact and self.info.frames == 0:
            raise DataError(f"{self.path}: holds no audio samples")
        self.sample_rate = sample_rate or self.info.sample_rate
        self.channels = channels or self.info.channels
        self.block_frames = block_frames
        self.largest_read = 0  # the most frames asked of the file at once (tests read it)

    @property
    def estimated_frames(self) -> int:
        """Frames the stream will give, at its own rate (exact for soundfile formats)."""
        return math.ceil(self.info.frames * self.sample_rate / self.info.sample_rate)

    def __iter__(self) -> Iterator[Tensor]:
        resampler = (
            BlockResampler(self.info.sample_rate, self.sample_rate, self.channels)
            if self.sample_rate != self.info.sample_rate
            else None
        )
        read = 0
        for raw in self._file_blocks():  # t, C_file
            read += raw.shape[0]
            if not np.isfinite(raw).all():
                raise DataError(f"{self.path}: contains NaN or infinite samples")
            wav = torch.from_numpy(np.ascontiguousarray(raw.T))
            wav = convert_channels(wav, self.channels)
            if resampler is not None:
                wav = resampler.push(wav)
            if wav.shape[-1]:
                yield wav
        if read == 0:
            raise DataError(f"{self.path}: holds no audio samples")
        if resampler is not None:
            tail = resampler.finish()
            if tail.shape[-1]:
                yield tail

    def _file_blocks(self) -> Iterator[np.ndarray]:
        if self.path.suffix.lower() in SOUNDFILE_SUFFIXES:
            yield from self._soundfile_blocks()
        else:
            yield from self._ffmpeg_blocks()

    def _soundfile_blocks(self) -> Iterator[np.ndarray]:
        try:
            handle = sf.SoundFile(str(self.path))
        except Exception as exc:
            raise DataError(f"{self.path}: not a readable audio file ({_short(exc)})") from None
        position = 0
        with handle:
            while True:
                self.largest_read = max(self.largest_read, self.block_frames)
                try:
                    block = handle.read(self.block_frames, dtype="float32", always_2d=True)
                except Exception as exc:
                    raise DataError(
                        f"{self.path}: cannot decode it after frame {position}, it looks truncated or "
                        f"corrupt ({_short(exc) or 'decoding error'})"
                    ) from None
                if len(block):
                    yield block
                position += len(block)
                if len(block) < self.block_frames:
                    return

    def _ffmpeg_blocks(self) -> Iterator[np.ndarray]:
        _need_ffmpeg(self.path)
        channels = self.info.channels
        frame_bytes = 4 * channels
        command = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(self.path), "-map", "0:a:0",
                   "-ac", str(channels), "-f", "f32le", "-acodec", "pcm_f32le", "-"]  # fmt: skip
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
            assert process.stdout is not None
            try:
                while True:
                    self.largest_read = max(self.largest_read, self.block_frames)
                    data = process.stdout.read(self.block_frames * frame_bytes)
                    usable = len(data) // frame_bytes * frame_bytes
                    if usable:
                        yield np.frombuffer(data[:usable], dtype=np.float32).reshape(-1, channels)
                    if len(data) < self.block_frames * frame_bytes:
                        break
                if process.wait() != 0:
                    errors.seek(0)
                    message = errors.read().decode(errors="replace").strip().replace("\n", " ")[:200]
                    raise DataError(f"{self.path}: ffmpeg could not decode it ({message})")
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                process.stdout.close()


# ----------------------------------------------------------------------------------------------
# Writing in blocks

WAV_SUBTYPES = {"PCM_16", "PCM_24", "FLOAT"}


class StemWriter:
    """Write one output file block by block, so that it only ever appears complete.

    Blocks go to a hidden part (``.<name>.<host>-<pid>.<random>.part``, see
    :mod:`sepzoo.io.atomic`) in the output's folder;
    :meth:`finish` completes it and :meth:`commit` renames it to ``path``, so an error on the way
    (a full disk, an interrupted run) never leaves a file at ``path`` that looks complete, and
    :meth:`abort` removes what was written.

    Clipping follows ``demucs.separate``: ``"rescale"`` divides the whole file by
    ``max(1.01 * peak, 1)``, ``"clamp"`` clips samples to +-0.99, ``"none"`` writes the samples
    as they are (an integer format then clips them at full scale). Both apply to float32
    output too. A rescale needs the whole file's peak before writing the first sample, so it
    writes the raw float32 samples to the temporary file, then converts them block by block
    into a second one in the file's format; memory stays flat either way.

    Args:
        path: The output file; ``.wav`` or ``.flac`` chooses the container.
        sample_rate: Its sample rate.
        channels: Its channel count.
        subtype: ``"PCM_16"``, ``"PCM_24"`` or ``"FLOAT"`` (WAV only). (Default: ``"PCM_16"``)
        clip_mode: ``"rescale"``, ``"clamp"`` or ``"none"``. (Default: ``"rescale"``)
        block_frames: Frames per block of the conversion pass. (Default: ``262144``)
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int,
        channels: int,
        subtype: str = "PCM_16",
        clip_mode: ClipMode = "rescale",
        block_frames: int = 262144,
    ) -> None:
        self.path = Path(path)
        self.format = "FLAC" if self.path.suffix.lower() == ".flac" else "WAV"
        if subtype not in WAV_SUBTYPES or (self.format == "FLAC" and subtype == "FLOAT"):
            raise ValueError(f"cannot write {self.format} samples as {subtype}")
        if clip_mode not in ("rescale", "clamp", "none"):
            raise ValueError(f"clip_mode must be rescale, clamp or none, got {clip_mode!r}")
        self.sample_rate, self.channels = sample_rate, channels
        self.subtype, self.clip_mode, self.block_frames = subtype, clip_mode, block_frames
        self.peak = 0.0
        self.frames = 0
        self._temporaries: list[Path] = []
        self._ready: Path | None = None
        self._raw: BinaryIO | None = None  # rescale: headerless float32 frames
        self._file: sf.SoundFile | None = None  # otherwise: the output's own format
        staging = self._temporary()
        if clip_mode == "rescale":
            self._raw = self._guard(lambda: open(staging, "wb"))  # noqa: SIM115
        else:
            self._file = self._open(staging, subtype, self.format)

    def write(self, block: Tensor) -> None:
        """Append ``[C, t]`` float samples.

        Args:
            block: The next samples.
        """
        raw, handle = self._raw, self._file
        if raw is None and handle is None:
            raise RuntimeError(f"{self.path}: the writer is closed")
        data = block.detach().to("cpu", torch.float32).T.contiguous().numpy()  # t, C
        if data.size:
            self.peak = max(self.peak, float(np.abs(data).max()))
        if self.clip_mode == "clamp":
            data = np.clip(data, -0.99, 0.99)
        if raw is not None:
            self._guard(lambda: raw.write(memoryview(data)))
        else:
            self._guard(lambda: handle.write(data))  # type: ignore[union-attr]
        self.frames += len(data)

    def finish(self) -> None:
        """Close the file and, for a rescale, convert it to its format with the whole file's gain."""
        raw, handle = self._raw, self._file
        self._raw = self._file = None
        staging = self._temporaries[-1] if self._temporaries else None
        if handle is not None:
            self._guard(handle.close)
            self._ready = staging
        if raw is None:
            return
        self._guard(raw.close)
        assert staging is not None
        gain = np.float32(1.0 / max(1.01 * self.peak, 1.0))
        target = self._temporary()
        out = self._open(target, self.subtype, self.format)
        try:
            with open(staging, "rb") as source:
                while True:
                    samples = np.fromfile(source, dtype=np.float32, count=self.block_frames * self.channels)
                    if not samples.size:
                        break
                    frames = samples.reshape(-1, self.channels) * gain  # t, C
                    self._guard(lambda frames=frames: out.write(frames))
            self._guard(out.close)
        finally:
            if not out.closed:
                try:
                    out.close()
                except Exception:
                    pass
        staging.unlink()
        self._temporaries.remove(staging)
        self._ready = target

    def commit(self) -> Path:
        """Rename the finished file to ``path`` (replacing any file there) and return ``path``."""
        self.finish()
        if self._ready is None:
            raise RuntimeError(f"{self.path}: nothing to commit")
        self._guard(lambda: commit_part(self._ready, self.path))
        self._temporaries.remove(self._ready)
        self._ready = None
        return self.path

    def abort(self) -> None:
        """Close and remove every temporary file; ``path`` is left as it was."""
        for handle in (self._raw, self._file):
            if handle is not None:
                try:
                    handle.close()
                except Exception:
                    pass
        self._raw = self._file = None
        for temporary in self._temporaries:
            temporary.unlink(missing_ok=True)
        self._temporaries.clear()
        self._ready = None

    def _temporary(self) -> Path:
        try:
            part = new_part(self.path)
        except OSError as exc:
            raise SepzooError(f"{self.path}: cannot write ({exc.strerror})") from None
        self._temporaries.append(part)
        return part

    def _open(self, path: Path, subtype: str, fmt: str) -> sf.SoundFile:
        return self._guard(
            lambda: sf.SoundFile(str(path), "w", self.sample_rate, self.channels, subtype, format=fmt)
        )

    def _guard(self, action: Callable[[], _T]) -> _T:
        """Run ``action``, turning a failed write into a one-line :class:`SepzooError`."""
        try:
            return action()
        except (OSError, RuntimeError, AssertionError) as exc:
            reason = _write_failure(exc)
            free = shutil.disk_usage(self.path.parent).free
            raise SepzooError(
                f"{self.path}: writing failed ({reason}; {free / 2**20:.0f} MiB free on that disk); "
                "no incomplete stem was left"
            ) from None


def prepare_output(path: str | Path, force: bool) -> Path:
    """Check that ``path`` may be written: refuse an existing file without ``force`` and
    make sure its folder can be created.

    Args:
        path: The output file.
        force: Allow replacing an existing file.
    """
    from sepzoo.errors import OutputExistsError

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists; pass --force to overwrite it")
    make_writable_folder(path.parent, "output folder")
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
    with atomic_path(path) as part:
        sf.write(str(part), wav.numpy().T, sample_rate, subtype=subtype, format=fmt)
    return path


def _write_failure(exc: BaseException) -> str:
    """Why a write failed, in words: the system's reason where there is one."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, sf.LibsndfileError) and exc.code == 2:
        # libsndfile's "system error" (code 2) leaves the reason in the C errno of its last call.
        number = getattr(getattr(sf, "_ffi", None), "errno", 0)
        if number:
            return os.strerror(number)
    return str(exc).strip().rstrip(".") or "short write"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__
