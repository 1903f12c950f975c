"""Lossy codec round trips through the ``ffmpeg`` program, sample-aligned with their input.

An encoder puts silence before the audio (its delay, or priming) and pads the end to whole
frames. Each format here goes into a container that records the priming, and ffmpeg's decoders
drop it: MP3 with its LAME/Xing header (written because the output is a seekable file), AAC in
MP4 (an edit list), Opus in Ogg (the pre-skip). The end padding is cut off (AAC keeps it) and a
short result is zero-padded, so the output has the input's length and lines up with it sample
for sample; ``tests/test_augment.py`` measures the cross-correlation peak at lag 0 (on the sum of
the channels: at low bitrates joint-stereo coding moves energy between channels, which shifts
a single channel's peak by a fraction of a sample while the sum stays put).

Opus runs in libopus's low-delay mode (CELT only). In its default mode libopus codes stereo
below 64 kbps with SILK and CELT together, and that output came back about 3.3 samples (at
48 kHz) early: a fraction of a sample that no whole-sample shift removes. Opus encodes at
48 kHz only, so other rates are resampled on the way in and back on the way out.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sepzoo.errors import ConfigError, DataError, suggestion

FFMPEG = "ffmpeg"


@dataclass(frozen=True)
class Codec:
    """How ffmpeg writes one lossy format.

    Args:
        encoder: ffmpeg's encoder name.
        suffix: File suffix of a container that records the encoder delay.
        options: Further encoder options. (Default: none)
        sample_rate: The rate the encoder needs; ``None`` takes the audio's own.
            (Default: ``None``)
        max_kbps_per_channel: The encoder's highest bitrate per channel, to which higher ones
            are lowered; ``None`` when every bitrate of :data:`BITRATE_RANGE` is accepted.
            (Default: ``None``)
    """

    encoder: str
    suffix: str
    options: tuple[str, ...] = ()
    sample_rate: int | None = None
    max_kbps_per_channel: int | None = None


CODECS: dict[str, Codec] = {
    "mp3": Codec("libmp3lame", ".mp3"),
    "aac": Codec("aac", ".m4a"),
    "opus": Codec("libopus", ".opus", ("-application", "lowdelay"), 48000, max_kbps_per_channel=256),
}
"""The formats a recipe may name, by the name it uses."""

BITRATE_RANGE = (8, 320)
"""Lowest and highest bitrate in kbit/s that every format here accepts."""


@functools.cache
def ffmpeg_encoders(program: str = FFMPEG) -> frozenset[str]:
    """The names of the encoders ``program -encoders`` lists.

    Args:
        program: The ffmpeg program. (Default: ``"ffmpeg"``)
    """
    done = subprocess.run([program, "-hide_banner", "-encoders"], capture_output=True, text=True)
    listing = done.stdout.split("------", 1)[-1]
    return frozenset(line.split()[1] for line in listing.splitlines() if len(line.split()) > 1)


def check_codecs(formats: tuple[str, ...], key: str) -> None:
    """Raise :class:`ConfigError` unless ffmpeg is on the PATH and has an encoder for each format.

    Args:
        formats: Format names, keys of :data:`CODECS`.
        key: The recipe key that asked for them, named in the message.
    """
    program = shutil.which(FFMPEG)
    if program is None:
        raise ConfigError(
            f"{key} needs the '{FFMPEG}' program on the PATH, and it is not there; install it "
            f"(Debian/Ubuntu: apt-get install ffmpeg) or set the codec probabilities to 0"
        )
    encoders = ffmpeg_encoders(program)
    for name in formats:
        encoder = CODECS[name].encoder
        if encoder not in encoders:
            raise ConfigError(
                f"{key} names {name!r}, but {program} has no '{encoder}' encoder; "
                f"remove {name!r} or use an ffmpeg built with it"
            )


def check_codec_names(formats: list[str] | tuple[str, ...], key: str) -> tuple[str, ...]:
    """The format names as a tuple, or :class:`ConfigError` for an empty list or an unknown name.

    Args:
        formats: Format names from a recipe.
        key: The recipe key, named in the message.
    """
    if not formats:
        raise ConfigError(f"{key} must name at least one of {', '.join(CODECS)}")
    for name in formats:
        if name not in CODECS:
            raise ConfigError(
                f"{key}: unknown codec {name!r}{suggestion(str(name), CODECS)} (known: {', '.join(CODECS)})"
            )
    return tuple(formats)


def codec_round_trip(audio: Tensor, codec: str, kbps: int, sample_rate: int) -> Tensor:
    """Encode ``audio`` with a lossy codec and decode it again, aligned and of the same length.

    Args:
        audio: ``[C, T]`` audio.
        codec: A key of :data:`CODECS`.
        kbps: Bitrate in kbit/s (lowered to the codec's highest for the channel count).
        sample_rate: The rate of ``audio``.

    Returns:
        The decoded audio, float32 ``[C, T]``.

    Raises:
        DataError: ffmpeg failed.
    """
    return codec_round_trips([(audio, codec, kbps)], sample_rate)[0]


@dataclass(frozen=True)
class _Job:
    """One signal of :func:`codec_round_trips`: its shape, level, codec and files."""

    channels: int
    frames: int
    scale: float
    codec: str
    kbps: int
    raw: Path
    coded: Path
    decoded: Path

    def encoder_arguments(self, number: int) -> list[str]:
        spec = CODECS[self.codec]
        rate = ["-ar", str(spec.sample_rate)] if spec.sample_rate else []
        options = ["-c:a", spec.encoder, *spec.options, "-b:a", f"{self.kbps}k"]
        return ["-map", f"{number}:a", *rate, *options, str(self.coded)]


def codec_round_trips(jobs: Sequence[tuple[Tensor, str, int]], sample_rate: int) -> list[Tensor]:
    """:func:`codec_round_trip` for several signals at once: one ffmpeg run encodes them all and
    one decodes them, as starting ffmpeg costs more than coding a few seconds of audio.

    Audio peaking above 1 is scaled down before encoding and back up after, so no encoder
    clips it.

    Args:
        jobs: ``(audio [C, T], codec, kbps)`` for each signal.
        sample_rate: The rate of the audio.

    Returns:
        The decoded audio of each job, float32 ``[C, T]``.

    Raises:
        DataError: ffmpeg failed.
    """
    if not jobs:
        return []
    with tempfile.TemporaryDirectory(prefix="sepzoo-codec-") as folder:
        planned = [_plan(Path(folder), number, *job) for number, job in enumerate(jobs)]
        described = ", ".join(f"{job.codec} at {job.kbps} kbps" for job in planned)
        inputs = [arg for job in planned for arg in [*_pcm(job, sample_rate), "-i", str(job.raw)]]
        outputs = [arg for number, job in enumerate(planned) for arg in job.encoder_arguments(number)]
        _ffmpeg([*inputs, *outputs], f"encode {described}")
        inputs = [arg for job in planned for arg in ["-i", str(job.coded)]]
        outputs = [
            arg
            for number, job in enumerate(planned)
            for arg in ["-map", f"{number}:a", *_pcm(job, sample_rate), str(job.decoded)]
        ]
        _ffmpeg([*inputs, *outputs], f"decode {described}")
        return [_read_decoded(job) for job in planned]


def _plan(folder: Path, number: int, audio: Tensor, codec: str, kbps: int) -> _Job:
    """Write one signal for the encoder (scaled to peak at most 1) and name its files."""
    spec = CODECS[codec]
    channels, frames = audio.shape
    if spec.max_kbps_per_channel is not None:
        kbps = min(kbps, spec.max_kbps_per_channel * channels)
    samples = audio.detach().cpu().numpy().astype(np.float32)
    scale = max(float(np.abs(samples).max()) if samples.size else 0.0, 1.0)
    job = _Job(
        channels,
        frames,
        scale,
        codec,
        kbps,
        folder / f"{number}.raw",
        folder / f"{number}{spec.suffix}",
        folder / f"{number}.decoded.raw",
    )
    job.raw.write_bytes(np.ascontiguousarray((samples / scale).T).tobytes())  # interleaved f32le
    return job


def _pcm(job: _Job, sample_rate: int) -> list[str]:
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(job.channels)]


def _read_decoded(job: _Job) -> Tensor:
    """The decoded signal at its input's length (the end padding cut, a short one padded) and
    level."""
    decoded = np.fromfile(job.decoded, dtype=np.float32).reshape(-1, job.channels).T * job.scale
    decoded = decoded[:, : job.frames]
    if decoded.shape[1] < job.frames:
        decoded = np.pad(decoded, ((0, 0), (0, job.frames - decoded.shape[1])))
    return torch.from_numpy(np.ascontiguousarray(decoded, dtype=np.float32))


def _ffmpeg(arguments: list[str], what: str) -> None:
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostats", "-nostdin", *arguments]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise DataError(f"{FFMPEG} failed to {what}: {reason}")
