"""Training augmentations on stems ``[S, C, T]``, after Demucs and after
Music-Source-Separation-Training (MSST).

Every augmentation draws from an explicit :class:`numpy.random.Generator`, so a training
sample is a deterministic function of the generator's seed, whatever process computes it.
:class:`AugmentConfig` holds the Demucs set; its defaults follow the Demucs training recipe: a
random shift of up to one second, a random left/right swap and sign flip per source, a gain per
source drawn uniformly in [0.25, 1.25], and remixing (each source from another track, done by
the data set). The pitch/tempo change of Demucs (probability 0.2, pitch within +-2 semitones,
tempo within +-12%) needs the ``soundstretch`` program from SoundTouch and is off unless asked
for. :class:`ProductionAugmentConfig` holds the MSST set, all off by default: loudness, mixup,
studio effects (:mod:`sepzoo.data.effects`) and lossy codecs (:mod:`sepzoo.data.codecs`).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from sepzoo.data.codecs import (
    BITRATE_RANGE,
    check_codec_names,
    check_codecs,
    codec_round_trip,
    codec_round_trips,
)
from sepzoo.data.effects import EFFECTS
from sepzoo.errors import ConfigError, DataError, suggestion

SOUNDSTRETCH = "soundstretch"


def random_stream(entropy: Sequence[int], name: str) -> np.random.Generator:
    """A generator of its own for one named kind of random draw.

    It is a function of ``entropy`` (e.g. ``(seed, epoch, index)``) and ``name`` only, and
    independent of ``np.random.default_rng(entropy)`` and of every other name's stream: an
    augmentation drawing from it changes nothing that the others draw.

    Args:
        entropy: Whole numbers that identify the sample (or batch).
        name: What the draws are for (e.g. ``"mixup"``).
    """
    key = zlib.crc32(name.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(e) for e in entropy], spawn_key=(key,)))


def _probability(key: str, value: float) -> float:
    if not 0 <= value <= 1:
        raise ConfigError(f"data.{key} must be a probability in [0, 1], got {value}")
    return float(value)


def _range(key: str, value: Sequence[float], low: float = -math.inf, high: float = math.inf) -> tuple:
    """``value`` as a ``(low, high)`` tuple, or :class:`ConfigError` unless it is an ordered pair
    within ``[low, high]``."""
    bounds = "" if math.isinf(low) else f" within [{low:g}, {high:g}]"
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ConfigError(f"data.{key} must be [low, high] with low <= high{bounds}, got {list(value)}")
    return (value[0], value[1])


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
        polarity: Negate each source with this probability. ``sign_flip`` is the same draw
            at 1/2 (``sign_flip=True`` gives exactly what ``polarity=0.5`` gives), so another
            probability needs ``sign_flip=False``; setting both is refused. (Default: ``0.0``)
        channel_shuffle: Swap left and right of each source with this probability; it stands
            to ``channel_swap`` as ``polarity`` to ``sign_flip``. (Default: ``0.0``)
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
    polarity: float = 0.0
    channel_shuffle: float = 0.0

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
        for key, switch in (("polarity", "sign_flip"), ("channel_shuffle", "channel_swap")):
            if _probability(key, getattr(self, key)) > 0 and getattr(self, switch):
                raise ConfigError(
                    f"data.{key}={getattr(self, key)} and data.{switch}=true both set how often it "
                    f"happens ({switch} is {key} 1/2); set data.{switch}=false to use data.{key}"
                )

    @property
    def flip_probability(self) -> float:
        """The probability that a source is negated."""
        return 0.5 if self.sign_flip else self.polarity

    @property
    def swap_probability(self) -> float:
        """The probability that the channels of a source are swapped."""
        return 0.5 if self.channel_swap else self.channel_shuffle

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
    if config.swap_probability > 0:
        stems = swap_channels(stems, rng, config.swap_probability)
    if config.flip_probability > 0:
        stems = flip_sign(stems, rng, config.flip_probability)
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


def swap_channels(stems: Tensor, rng: np.random.Generator, probability: float = 0.5) -> Tensor:
    """Swap left and right of each stereo source with a probability.

    Args:
        stems: Stems ``[S, C, T]``; mono stems are returned unchanged (and nothing is drawn).
        rng: The random generator.
        probability: The probability of a swap, per source. (Default: ``0.5``)
    """
    if stems.shape[1] != 2:
        return stems
    swap = rng.random(stems.shape[0]) < probability
    return torch.stack([stem.flip(0) if flip else stem for stem, flip in zip(stems, swap)])


def flip_sign(stems: Tensor, rng: np.random.Generator, probability: float = 0.5) -> Tensor:
    """Negate each source with a probability.

    Args:
        stems: Stems ``[S, C, T]``.
        rng: The random generator.
        probability: The probability of a flip, per source. (Default: ``0.5``)
    """
    signs = np.where(rng.random(stems.shape[0]) < probability, -1.0, 1.0)
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


# -- the MSST set: levels, doubled parts, studio effects, lossy codecs ----------------------------

EFFECT_KEYS: tuple[str, ...] = tuple(EFFECTS)
"""The recipe keys of the studio effects, in the order they are applied."""

PROBABILITY_KEYS: tuple[str, ...] = ("loudness", "mixup", *EFFECT_KEYS, "codec", "mixture_codec")
"""The probabilities of :class:`ProductionAugmentConfig`."""


@dataclass(frozen=True)
class ProductionAugmentConfig:
    """Augmentations that vary how a track was produced and delivered, after the set of
    Music-Source-Separation-Training (MSST): levels, doubled parts, studio effects and codecs.

    Every probability is per source, but ``mixture_codec``'s, which is per segment; 0 turns an
    augmentation off, and with all of them 0 nothing is drawn: segments are then exactly what
    :class:`AugmentConfig` alone makes. Each augmentation draws from a stream of its own
    (:func:`random_stream` of ``(seed, epoch, index)`` and its key), so that turning one on or
    off leaves what the others do to a sample unchanged. A source goes through mixup, then the
    effects (in the order of :data:`EFFECT_KEYS`), then the codec, then the loudness change.

    Args:
        loudness: Probability that a source's level changes by a gain drawn uniformly in
            ``loudness_db``. (Default: ``0.0``)
        loudness_db: ``(low, high)``: the range of that gain in dB. (Default: ``(-6.0, 6.0)``)
        mixup: Probability that a source gets the same source from a random track and offset
            added to it (a doubled part), at a gain drawn uniformly in ``mixup_db``; the data set
            reads it. (Default: ``0.0``)
        mixup_db: ``(low, high)``: the range of the added part's gain in dB.
            (Default: ``(-6.0, 0.0)``)
        eq: Probability of one to three random filters (shelves, peaks, high- and low-pass; see
            :func:`sepzoo.data.effects.random_eq`). (Default: ``0.0``)
        compressor: Probability of a random compressor. (Default: ``0.0``)
        distortion: Probability of a random tanh distortion. (Default: ``0.0``)
        chorus: Probability of a random chorus. (Default: ``0.0``)
        phaser: Probability of a random phaser. (Default: ``0.0``)
        reverb: Probability of a random room reverb. (Default: ``0.0``)
        effect_sources: The sources the effects may touch; ``None`` lets them touch all.
            (Default: ``None``)
        codec: Probability that a source goes through a lossy codec (per stem): the degraded
            stems are the targets, and the mixture is their sum. (Default: ``0.0``)
        mixture_codec: Probability that the mixture alone goes through a lossy codec: the
            model hears the degraded mixture and learns to return the clean stems (robustness
            to lossy input). With any probability above 0, every item carries its mixture
            beside its stems. (Default: ``0.0``)
        codec_formats: The formats a degradation draws from, uniformly: ``"mp3"``, ``"aac"``,
            ``"opus"`` (see :mod:`sepzoo.data.codecs`). (Default: ``("mp3",)``)
        codec_bitrate: ``(low, high)``: the range of the bitrate in kbit/s, a whole number drawn
            uniformly, within [8, 320]. (Default: ``(32, 320)``)
    """

    loudness: float = 0.0
    loudness_db: tuple[float, float] = (-6.0, 6.0)
    mixup: float = 0.0
    mixup_db: tuple[float, float] = (-6.0, 0.0)
    eq: float = 0.0
    compressor: float = 0.0
    distortion: float = 0.0
    chorus: float = 0.0
    phaser: float = 0.0
    reverb: float = 0.0
    effect_sources: tuple[str, ...] | None = None
    codec: float = 0.0
    mixture_codec: float = 0.0
    codec_formats: tuple[str, ...] = ("mp3",)
    codec_bitrate: tuple[int, int] = (32, 320)

    def __post_init__(self) -> None:
        for key in PROBABILITY_KEYS:
            object.__setattr__(self, key, _probability(key, getattr(self, key)))
        for key in ("loudness_db", "mixup_db"):
            low, high = _range(key, getattr(self, key))
            object.__setattr__(self, key, (float(low), float(high)))
        low, high = _range("codec_bitrate", self.codec_bitrate, *BITRATE_RANGE)
        if low != int(low) or high != int(high):
            raise ConfigError(f"data.codec_bitrate must be whole kbit/s, got {list(self.codec_bitrate)}")
        object.__setattr__(self, "codec_bitrate", (int(low), int(high)))
        object.__setattr__(self, "codec_formats", check_codec_names(self.codec_formats, "data.codec_formats"))
        if self.effect_sources is not None:
            object.__setattr__(self, "effect_sources", tuple(self.effect_sources))

    @property
    def enabled(self) -> bool:
        """Whether any of these augmentations can happen."""
        return any(getattr(self, key) > 0 for key in PROBABILITY_KEYS)

    def check_sources(self, sources: list[str]) -> None:
        """Raise :class:`ConfigError` when ``effect_sources`` names a source the data lack.

        Args:
            sources: The data's source names.
        """
        for name in self.effect_sources or ():
            if name not in sources:
                raise ConfigError(
                    f"data.effect_sources: {name!r} is not one of the sources {sources}"
                    f"{suggestion(name, sources)}"
                )

    def check_available(self) -> None:
        """Raise :class:`ConfigError` when a codec is asked for and ffmpeg cannot encode it."""
        if self.codec > 0 or self.mixture_codec > 0:
            check_codecs(self.codec_formats, "data.codec_formats")

    def takes_effects(self, source: str) -> bool:
        """Whether the effects may touch ``source``.

        Args:
            source: A source name.
        """
        return self.effect_sources is None or source in self.effect_sources


def db_to_gain(decibels: np.ndarray | float) -> np.ndarray:
    """Linear gains of levels in dB.

    Args:
        decibels: Levels in dB.
    """
    return np.power(10.0, np.asarray(decibels, dtype=np.float64) / 20.0)


def change_loudness(
    stems: Tensor, probability: float, low_db: float, high_db: float, rng: np.random.Generator
) -> Tensor:
    """Multiply each source, with a probability, by a gain drawn uniformly in dB.

    Args:
        stems: Stems ``[S, C, T]``.
        probability: The probability of a change, per source.
        low_db: Smallest gain in dB.
        high_db: Largest gain in dB.
        rng: The random generator.
    """
    chosen = rng.random(stems.shape[0]) < probability
    gains = np.where(chosen, db_to_gain(rng.uniform(low_db, high_db, size=stems.shape[0])), 1.0)
    return stems * torch.from_numpy(gains).to(stems.dtype)[:, None, None]


def apply_effects(
    stems: Tensor,
    config: ProductionAugmentConfig,
    entropy: Sequence[int],
    sample_rate: int,
    sources: list[str],
) -> Tensor:
    """Put each source through each studio effect with that effect's probability.

    Args:
        stems: Stems ``[S, C, T]``.
        config: The effect probabilities and the sources they may touch.
        entropy: What identifies the sample, ``(seed, epoch, index)``; each effect draws from
            :func:`random_stream` of it and the effect's key.
        sample_rate: The rate of the stems.
        sources: The names of the stems, in order.
    """
    if not any(getattr(config, key) > 0 for key in EFFECT_KEYS):
        return stems
    audio = [stem.numpy() for stem in stems]
    for key, effect in EFFECTS.items():
        probability = getattr(config, key)
        if probability <= 0:
            continue
        rng = random_stream(entropy, key)
        chosen = rng.random(len(audio)) < probability
        for index in np.flatnonzero(chosen):
            if config.takes_effects(sources[index]):
                audio[index] = effect(np.ascontiguousarray(audio[index], dtype=np.float32), sample_rate, rng)
    return torch.from_numpy(np.stack(audio))


def draw_codec(config: ProductionAugmentConfig, rng: np.random.Generator) -> tuple[str, int]:
    """A format and a bitrate in kbit/s, drawn uniformly from the configured ones.

    Args:
        config: The codec formats and bitrate range.
        rng: The random generator.
    """
    name = config.codec_formats[int(rng.integers(len(config.codec_formats)))]
    low, high = config.codec_bitrate
    return name, int(rng.integers(low, high, endpoint=True))


def degrade_stems(
    stems: Tensor, config: ProductionAugmentConfig, rng: np.random.Generator, sample_rate: int
) -> Tensor:
    """Put each source, with ``config.codec``'s probability, through a random lossy codec.

    Args:
        stems: Stems ``[S, C, T]``.
        config: The codec settings.
        rng: The random generator.
        sample_rate: The rate of the stems.
    """
    chosen = np.flatnonzero(rng.random(stems.shape[0]) < config.codec)
    jobs = [(stems[index], *draw_codec(config, rng)) for index in chosen]
    out = list(stems)
    for index, degraded in zip(chosen, codec_round_trips(jobs, sample_rate)):
        out[index] = degraded
    return torch.stack(out)


def degrade_mixture(
    mixture: Tensor, config: ProductionAugmentConfig, rng: np.random.Generator, sample_rate: int
) -> Tensor:
    """The mixture ``[C, T]``, through a random lossy codec with ``config.mixture_codec``'s
    probability.

    Args:
        mixture: The mixture ``[C, T]``.
        config: The codec settings.
        rng: The random generator.
        sample_rate: The rate of the mixture.
    """
    if rng.random() >= config.mixture_codec:
        return mixture
    name, kbps = draw_codec(config, rng)
    return codec_round_trip(mixture, name, kbps, sample_rate)


def augment_production(
    stems: Tensor,
    config: ProductionAugmentConfig,
    entropy: Sequence[int],
    sample_rate: int,
    sources: list[str],
) -> Tensor:
    """Apply the effects, the per-stem codec and the loudness change, in that order (mixup,
    which reads other tracks, and the mixture's codec are the data set's).

    Args:
        stems: Stems ``[S, C, T]``.
        config: The augmentations.
        entropy: What identifies the sample, ``(seed, epoch, index)``.
        sample_rate: The rate of the stems.
        sources: The names of the stems, in order.
    """
    stems = apply_effects(stems, config, entropy, sample_rate, sources)
    if config.codec > 0:
        stems = degrade_stems(stems, config, random_stream(entropy, "codec"), sample_rate)
    if config.loudness > 0:
        low, high = config.loudness_db
        stems = change_loudness(stems, config.loudness, low, high, random_stream(entropy, "loudness"))
    return stems
