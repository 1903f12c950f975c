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

    Audio peaking above 1 is scaled down before encoding and back up after, so no encoder
    clips it.

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
    spec = CODECS[codec]
    channels, frames = audio.shape
    if spec.max_kbps_per_channel is not None:
        kbps = min(kbps, spec.max_kbps_per_channel * channels)
    samples = audio.detach().cpu().numpy().astype(np.float32)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    scale = max(peak, 1.0)
    raw = np.ascontiguousarray((samples / scale).T).tobytes()  # interleaved f32le
    pcm = ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels)]
    with tempfile.TemporaryDirectory(prefix="sepzoo-codec-") as folder:
        encoded = str(Path(folder) / f"coded{spec.suffix}")
        rate = ["-ar", str(spec.sample_rate)] if spec.sample_rate else []
        encoder = ["-c:a", spec.encoder, *spec.options, "-b:a", f"{kbps}k"]
        _ffmpeg([*pcm, "-i", "pipe:0", *rate, *encoder, encoded], raw, f"encode {codec} at {kbps} kbps")
        decoded = _ffmpeg(["-i", encoded, *pcm, "pipe:1"], b"", f"decode {codec}")
    out = np.frombuffer(decoded, dtype=np.float32).reshape(-1, channels).T * scale
    out = out[:, :frames]
    if out.shape[1] < frames:
        out = np.pad(out, ((0, 0), (0, frames - out.shape[1])))
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _ffmpeg(arguments: list[str], stdin: bytes, what: str) -> bytes:
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostats", *arguments]
    done = subprocess.run(command, input=stdin, capture_output=True)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise DataError(f"{FFMPEG} failed to {what}: {reason}")
    return done.stdout
