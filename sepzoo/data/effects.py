"""Studio effects from Spotify's ``pedalboard``, with parameters drawn at random.

Each effect takes one source as float32 ``[C, T]``, draws its settings from the generator within
the ranges listed in its docstring (ranges a mixing engineer might use, wide enough to matter),
and returns audio of the same shape. The compressor and the distortion are followed by make-up
gain to the input's RMS level, as an engineer would set it: they change the sound, while the
level is the loudness augmentation's business. :data:`EFFECTS` lists them in the order a channel
strip would apply them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pedalboard

Effect = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A value whose logarithm is uniform in ``[log(low), log(high)]`` (frequencies, times)."""
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _below_nyquist(frequency: float, sample_rate: int) -> float:
    return min(frequency, 0.45 * sample_rate)


def _match_rms(audio: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``audio`` scaled to the RMS level of ``reference`` (unchanged when either is silent)."""
    level, wanted = float(np.sqrt(np.mean(audio**2))), float(np.sqrt(np.mean(reference**2)))
    if level < 1e-9 or wanted < 1e-9:
        return audio
    return (audio * (wanted / level)).astype(np.float32)


def _random_filter(sample_rate: int, rng: np.random.Generator) -> pedalboard.Plugin:
    """One of five filters: low shelf (60-400 Hz), high shelf (2-10 kHz) or peak (200 Hz-8 kHz,
    Q 0.5-3), each with a gain of -9 to +9 dB; high-pass (20-200 Hz); low-pass (4-16 kHz)."""
    kind = int(rng.integers(5))
    gain = float(rng.uniform(-9.0, 9.0))
    if kind == 0:
        return pedalboard.LowShelfFilter(cutoff_frequency_hz=_log_uniform(rng, 60, 400), gain_db=gain)
    if kind == 1:
        cutoff = _below_nyquist(_log_uniform(rng, 2000, 10000), sample_rate)
        return pedalboard.HighShelfFilter(cutoff_frequency_hz=cutoff, gain_db=gain)
    if kind == 2:
        cutoff = _below_nyquist(_log_uniform(rng, 200, 8000), sample_rate)
        return pedalboard.PeakFilter(cutoff_frequency_hz=cutoff, gain_db=gain, q=float(rng.uniform(0.5, 3.0)))
    if kind == 3:
        return pedalboard.HighpassFilter(cutoff_frequency_hz=_log_uniform(rng, 20, 200))
    return pedalboard.LowpassFilter(
        cutoff_frequency_hz=_below_nyquist(_log_uniform(rng, 4000, 16000), sample_rate)
    )


def random_eq(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One to three filters in a row, each drawn by :func:`_random_filter`.

    Args:
        audio: One source, float32 ``[C, T]``.
        sample_rate: Its rate.
        rng: The random generator.
    """
    count = int(rng.integers(1, 3, endpoint=True))
    board = pedalboard.Pedalboard([_random_filter(sample_rate, rng) for _ in range(count)])
    return board(audio, sample_rate)


def random_compressor(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A compressor: threshold 0-15 dB below the source's RMS level (set, as an engineer would,
    from the source, so that it acts on quiet sources too), ratio 2-8, attack 1-30 ms, release
    50-300 ms; then make-up gain to the input's RMS.

    Args:
        audio: One source, float32 ``[C, T]``.
        sample_rate: Its rate.
        rng: The random generator.
    """
    level_db = 10 * math.log10(max(float(np.mean(audio**2)), 1e-12))
    compressor = pedalboard.Compressor(
        threshold_db=level_db - float(rng.uniform(0.0, 15.0)),
        ratio=float(rng.uniform(2.0, 8.0)),
        attack_ms=_log_uniform(rng, 1.0, 30.0),
        release_ms=_log_uniform(rng, 50.0, 300.0),
    )
    return _match_rms(compressor(audio, sample_rate), audio)


def random_distortion(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A tanh waveshaper driven by 3-24 dB; then make-up gain to the input's RMS.

    Args:
        audio: One source, float32 ``[C, T]``.
        sample_rate: Its rate.
        rng: The random generator.
    """
    distortion = pedalboard.Distortion(drive_db=float(rng.uniform(3.0, 24.0)))
    return _match_rms(distortion(audio, sample_rate), audio)


def random_chorus(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A chorus: rate 0.5-5 Hz, depth 0.1-0.6, centre delay 3-10 ms, feedback 0-0.4, mix 0.2-0.7.

    Args:
        audio: One source, float32 ``[C, T]``.
        sample_rate: Its rate.
        rng: The random generator.
    """
    chorus = pedalboard.Chorus(
        rate_hz=_log_uniform(rng, 0.5, 5.0),
        depth=float(rng.uniform(0.1, 0.6)),
        centre_delay_ms=float(rng.uniform(3.0, 10.0)),
        feedback=float(rng.uniform(0.0, 0.4)),
        mix=float(rng.uniform(0.2, 0.7)),
    )
    return chorus(audio, sample_rate)


def random_phaser(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A phaser: rate 0.2-4 Hz, depth 0.2-0.9, centre 200 Hz-5 kHz, feedback 0-0.5, mix 0.2-0.7.

    Args:
        audio: One source, float32 ``[C, T]``.
        sample_rate: Its rate.
        rng: The random generator.
    """
    phaser = pedalboard.Phaser(
        rate_hz=_log_uniform(rng, 0.2, 4.0),
        depth=float(rng.uniform(0.2, 0.9)),
        centre_frequency_hz=_below_nyquist(_log_uniform(rng, 200.0, 5000.0), sample_rate),
        feedback=float(rng.uniform(0.0, 0.5)),
        mix=float(rng.uniform(0.2, 0.7)),
    )
    return phaser(audio, sample_rate)


def random_reverb(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A room: size 0.1-0.9, damping 0.1-0.9, wet 0.05-0.4, dry 0.6-1, stereo width 0.5-1.

    Args:
        audio: One source, float32 ``[C, T]``.
        sample_rate: Its rate.
        rng: The random generator.
    """
    reverb = pedalboard.Reverb(
        room_size=float(rng.uniform(0.1, 0.9)),
        damping=float(rng.uniform(0.1, 0.9)),
        wet_level=float(rng.uniform(0.05, 0.4)),
        dry_level=float(rng.uniform(0.6, 1.0)),
        width=float(rng.uniform(0.5, 1.0)),
    )
    return reverb(audio, sample_rate)


EFFECTS: dict[str, Effect] = {
    "eq": random_eq,
    "compressor": random_compressor,
    "distortion": random_distortion,
    "chorus": random_chorus,
    "phaser": random_phaser,
    "reverb": random_reverb,
}
"""The effects by recipe key, in the order they are applied."""
