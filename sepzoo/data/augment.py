"""Training augmentations on stems ``[S, C, T]``, after Demucs.

Every augmentation draws from an explicit :class:`numpy.random.Generator`, so a training
sample is a deterministic function of the generator's seed, whatever process computes it.
The defaults follow the Demucs training recipe: a random shift of up to one second, a random
left/right swap and sign flip per source, a gain per source drawn uniformly in [0.25, 1.25],
and remixing (each source from another track, done by the data set). The pitch/tempo change
of Demucs (probability 0.2, pitch within +-2 semitones, tempo within +-12%) needs the
``soundstretch`` program from SoundTouch and is off unless asked for.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from sepzoo.errors import ConfigError, DataError

SOUNDSTRETCH = "soundstretch"


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply to training segments, and how strongly.

    Args:
        shift: Largest random time shift in seconds; each source of a segment is read from a
            window this much longer than the segment at its own random offset. ``0`` disables
            it. (Default: ``1.0``)
        channel_swap: Swap left and right channels of each source with probability 1/2.
            (Default: ``True``)
        sign_flip: Negate each source with probability 1/2. (Default: ``True``)
        scale: ``(low, high)``: multiply each source by a gain drawn uniformly in this range;
            ``None`` disables it. (Default: ``(0.25, 1.25)``)
        remix: Take each source from an independently drawn track and offset, making mixtures
            that never occur in the data. (Default: ``True``)
        pitch_tempo: Change pitch and tempo with ``soundstretch``. (Default: ``False``)
        pitch_tempo_probability: Probability that a segment gets a pitch/tempo change.
            (Default: ``0.2``)
        max_pitch: Largest pitch change in semitones; the change is a whole number of
            semitones drawn uniformly in ``[-max_pitch, max_pitch]``. (Default: ``2``)
        max_tempo: Largest tempo change in percent. (Default: ``12.0``)
        tempo_std: Standard deviation in percent of the normally distributed tempo change,
            clipped to ``max_tempo``. (Default: ``5.0``)
    """

    shift: float = 1.0
    channel_swap: bool = True
    sign_flip: bool = True
    scale: tuple[float, float] | None = (0.25, 1.25)
    remix: bool = True
    pitch_tempo: bool = False
    pitch_tempo_probability: float = 0.2
    max_pitch: int = 2
    max_tempo: float = 12.0
    tempo_std: float = 5.0

    def __post_init__(self) -> None:
        if self.shift < 0:
            raise ConfigError(f"data.shift must be >= 0 seconds, got {self.shift}")
        if self.scale is not None:
            if len(self.scale) != 2 or not 0 <= self.scale[0] <= self.scale[1]:
                raise ConfigError(
                    f"data.scale must be [low, high] with 0 <= low <= high, got {list(self.scale)}"
                )
            object.__setattr__(self, "scale", (float(self.scale[0]), float(self.scale[1])))
        if not 0 <= self.pitch_tempo_probability <= 1:
            raise ConfigError(
                f"data.pitch_tempo_probability must be in [0, 1], got {self.pitch_tempo_probability}"
            )
        if self.max_pitch < 0:
            raise ConfigError(f"data.max_pitch must be >= 0, got {self.max_pitch}")
        if not 0 <= self.max_tempo < 100:
            raise ConfigError(f"data.max_tempo must be in [0, 100) percent, got {self.max_tempo}")
        if self.tempo_std < 0:
            raise ConfigError(f"data.tempo_std must be >= 0, got {self.tempo_std}")

    def check_available(self) -> None:
        """Raise :class:`ConfigError` when an enabled augmentation cannot run here.

        Raises:
            ConfigError: ``pitch_tempo`` is on and ``soundstretch`` is not on the PATH.
        """
        if self.pitch_tempo and shutil.which(SOUNDSTRETCH) is None:
            raise ConfigError(
                f"data.pitch_tempo=true needs the '{SOUNDSTRETCH}' program (SoundTouch) on the PATH, and it "
                f"is not there; install it (Debian/Ubuntu: apt-get install {SOUNDSTRETCH}) or set "
                "data.pitch_tempo=false"
            )

    def shift_frames(self, sample_rate: int) -> int:
        """The largest shift in frames.

        Args:
            sample_rate: The rate of the stems.
        """
        return int(round(self.shift * sample_rate))

    def window_frames(self, segment_frames: int, sample_rate: int) -> int:
        """How many frames to read for one training segment of ``segment_frames``.

        The window holds the shift range and, with pitch/tempo on, enough extra audio that a
        tempo increase still leaves a full segment.

        Args:
            segment_frames: Length of the training segment.
            sample_rate: The rate of the stems.
        """
        frames = segment_frames + self.shift_frames(sample_rate)
        if self.pitch_tempo:
            frames = math.ceil(frames / (1 - self.max_tempo / 100)) + 1
        return frames


def augment_stems(
    stems: Tensor,
    config: AugmentConfig,
    rng: np.random.Generator,
    segment_frames: int,
    sample_rate: int,
    voice_indices: tuple[int, ...] = (),
) -> Tensor:
    """Apply the enabled augmentations to a window read for one training segment.

    Args:
        stems: ``[S, C, T]`` with ``T = config.window_frames(segment_frames, sample_rate)``.
        config: Which augmentations to apply.
        rng: The random generator of this sample.
        segment_frames: Length of the returned segment.
        sample_rate: The rate of the stems.
        voice_indices: Positions of vocal sources, processed by ``soundstretch`` in its
            speech mode. (Default: ``()``)

    Returns:
        The augmented segment ``[S, C, segment_frames]``.
    """
    if stems.dim() != 3:
        raise ValueError(f"expected stems of shape [sources, channels, time], got {list(stems.shape)}")
    shift = config.shift_frames(sample_rate)
    if config.pitch_tempo and rng.random() < config.pitch_tempo_probability:
        pitch = int(rng.integers(-config.max_pitch, config.max_pitch, endpoint=True))
        tempo = float(np.clip(rng.normal(0.0, config.tempo_std), -config.max_tempo, config.max_tempo))
        stems = change_pitch_tempo(stems, pitch, tempo, sample_rate, voice_indices)
    stems = stems[..., : segment_frames + shift]
    if stems.shape[-1] < segment_frames + shift:
        stems = torch.nn.functional.pad(stems, (0, segment_frames + shift - stems.shape[-1]))
    stems = random_shift(stems, shift, rng)
    if config.channel_swap:
        stems = swap_channels(stems, rng)
    if config.sign_flip:
        stems = flip_sign(stems, rng)
    if config.scale is not None:
        stems = scale_gain(stems, config.scale[0], config.scale[1], rng)
    return stems.contiguous()


def random_shift(stems: Tensor, shift: int, rng: np.random.Generator) -> Tensor:
    """Crop ``shift`` frames off ``[S, C, T]``, at a random offset for each source.

    Args:
        stems: Stems ``[S, C, T]`` with ``T > shift``.
        shift: How many frames to drop; the offset of each source is uniform in ``[0, shift]``.
        rng: The random generator.
    """
    if shift <= 0:
        return stems
    length = stems.shape[-1] - shift
    if length <= 0:
        raise ValueError(f"cannot shift stems of shape {list(stems.shape)} by {shift} frames")
    offsets = rng.integers(0, shift, size=stems.shape[0], endpoint=True)
    return torch.stack([stem[:, offset : offset + length] for stem, offset in zip(stems, offsets)])


def swap_channels(stems: Tensor, rng: np.random.Generator) -> Tensor:
    """Swap left and right of each stereo source with probability 1/2.

    Args:
        stems: Stems ``[S, C, T]``; mono stems are returned unchanged.
        rng: The random generator.
    """
    if stems.shape[1] != 2:
        return stems
    swap = rng.random(stems.shape[0]) < 0.5
    return torch.stack([stem.flip(0) if flip else stem for stem, flip in zip(stems, swap)])


def flip_sign(stems: Tensor, rng: np.random.Generator) -> Tensor:
    """Negate each source with probability 1/2.

    Args:
        stems: Stems ``[S, C, T]``.
        rng: The random generator.
    """
    signs = np.where(rng.random(stems.shape[0]) < 0.5, -1.0, 1.0)
    return stems * torch.from_numpy(signs).to(stems.dtype)[:, None, None]


def scale_gain(stems: Tensor, low: float, high: float, rng: np.random.Generator) -> Tensor:
    """Multiply each source by a gain drawn uniformly in ``[low, high]``.

    Args:
        stems: Stems ``[S, C, T]``.
        low: Smallest gain.
        high: Largest gain.
        rng: The random generator.
    """
    gains = rng.uniform(low, high, size=stems.shape[0])
    return stems * torch.from_numpy(gains).to(stems.dtype)[:, None, None]


def change_pitch_tempo(
    stems: Tensor,
    pitch: int,
    tempo: float,
    sample_rate: int,
    voice_indices: tuple[int, ...] = (),
) -> Tensor:
    """Change pitch and tempo of every source the same way with ``soundstretch``.

    The sources keep their alignment; the output is shorter (faster tempo) or longer (slower)
    than the input, and all sources are cut to the shortest one.

    Args:
        stems: Stems ``[S, C, T]``.
        pitch: Pitch change in semitones.
        tempo: Tempo change in percent (``10`` plays 10% faster).
        sample_rate: The rate of the stems.
        voice_indices: Positions of vocal sources, processed in ``soundstretch``'s speech mode.
            (Default: ``()``)

    Raises:
        DataError: ``soundstretch`` failed.
    """
    outputs = []
    with tempfile.TemporaryDirectory(prefix="sepzoo-stretch-") as folder:
        for index, stem in enumerate(stems):
            source_file = Path(folder) / f"in{index}.wav"
            target_file = Path(folder) / f"out{index}.wav"
            sf.write(source_file, stem.numpy().T, sample_rate, subtype="FLOAT")
            command = [SOUNDSTRETCH, str(source_file), str(target_file)]
            command += [f"-pitch={pitch}", f"-tempo={tempo:.6f}"]
            if index in voice_indices:
                command.append("-speech")
            done = subprocess.run(command, capture_output=True)
            if done.returncode != 0:
                message = done.stderr.decode(errors="replace").strip().splitlines()
                raise DataError(f"{SOUNDSTRETCH} failed: {message[-1] if message else done.returncode}")
            data, _ = sf.read(target_file, dtype="float32", always_2d=True)
            outputs.append(torch.from_numpy(data.T.copy()))
    length = min(out.shape[-1] for out in outputs)
    return torch.stack([out[:, :length] for out in outputs])
