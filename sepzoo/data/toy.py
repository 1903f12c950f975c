"""A synthetic MUSDB18-HQ-style data set, generated locally with no downloads.

``sepzoo toy-musdb OUT`` writes ``OUT/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav``
(stereo, 44.1 kHz, 16-bit PCM, like MUSDB18-HQ), which ``musdb.DB(root=OUT, is_wav=True)``
reads. Each stem behaves like its namesake:

* **drums**: kicks (a falling sine sweep), snares (band-passed noise over a short tone) and
  hi-hats (high-passed noise) on a sixteenth-note grid, in patterns drawn per track;
* **bass**: low harmonic notes on the chord roots with a plucked attack;
* **other**: sustained chord pads and a plucked arpeggio over the same progression;
* **vocals**: phrases of voiced, harmonic notes whose pitch glides between notes and carries
  vibrato, shaped by vowel formants, with noise bursts for consonants, and rests between
  phrases.

Tempo, key, mode, progression, panning and levels are drawn per track from a generator seeded
by ``(seed, subset, track index)``, so the data set is a deterministic function of the seed.
Every stem lies over a faint white-noise floor (about -50 dBFS), as real recordings do; BSSEval
needs it to be well conditioned on silent stretches. The mixture is the exact sum of the
16-bit stems.

The toy set is a smoke test of the machinery. Numbers measured on it say nothing about how
models compare on real music.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from sepzoo.errors import OutputExistsError, SepzooError
from sepzoo.io.atomic import atomic_folder

TOY_SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
"""The stems of the toy set (the MUSDB18 stems)."""

SAMPLE_RATE = 44100
NOISE_FLOOR_DBFS = -50.0
"""RMS level of the white-noise floor under every stem."""

MARKER_FILE = "README.txt"
"""Written at the root of a toy set; ``sepzoo eval`` reads it to label results as a smoke test."""

PEAK_LIMIT = 0.9
"""Largest absolute sample of a mixture; all stems of a track are scaled down together to meet it."""

_SUBSETS = ("train", "test")
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Common progressions as scale degrees (0 = tonic), one chord per bar.
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (0, 3, 5, 4), (1, 4, 0, 0))
# Vowel formants (F1, F2, F3) in Hz, after Peterson & Barney's adult averages.
_VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))
_FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)
_FORMANT_GAINS = (1.0, 0.6, 0.3)


@dataclass(frozen=True)
class TrackPlan:
    """The musical choices of one toy track.

    Args:
        tempo: Beats per minute.
        tonic: MIDI note of the key's tonic in the bass register.
        scale: Semitone offsets of the mode's seven degrees.
        progression: Scale degree of each bar's chord, cycled.
        pans: Stereo position of each stem in ``[-1, 1]`` (``-1`` left).
        levels_db: RMS level of each stem in dBFS before the track is limited.
    """

    tempo: float
    tonic: int
    scale: tuple[int, ...]
    progression: tuple[int, ...]
    pans: dict[str, float]
    levels_db: dict[str, float]

    @property
    def sixteenth(self) -> float:
        """Length of a sixteenth note in seconds."""
        return 60.0 / self.tempo / 4

    def chord(self, bar: int) -> list[int]:
        """Semitone offsets from the tonic of the triad played in ``bar``.

        Args:
            bar: Bar index from 0.
        """
        degree = self.progression[bar % len(self.progression)]
        return [self._degree(degree + step) for step in (0, 2, 4)]

    def _degree(self, degree: int) -> int:
        octave, index = divmod(degree, len(self.scale))
        return 12 * octave + self.scale[index]


def plan_track(rng: np.random.Generator) -> TrackPlan:
    """Draw the tempo, key, progression, panning and levels of one track.

    Args:
        rng: The track's random generator.
    """
    return TrackPlan(
        tempo=float(rng.uniform(84, 148)),
        tonic=int(rng.integers(28, 40)),
        scale=_MAJOR if rng.random() < 0.5 else _MINOR,
        progression=_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))],
        pans={
            "drums": float(rng.uniform(-0.15, 0.15)),
            "bass": float(rng.uniform(-0.1, 0.1)),
            "other": float(rng.uniform(-0.6, 0.6)),
            "vocals": float(rng.uniform(-0.2, 0.2)),
        },
        levels_db={
            "drums": float(rng.uniform(-20, -14)),
            "bass": float(rng.uniform(-22, -15)),
            "other": float(rng.uniform(-24, -16)),
            "vocals": float(rng.uniform(-21, -14)),
        },
    )


def midi_to_hz(note: float | np.ndarray) -> np.ndarray:
    """Frequency of a (fractional) MIDI note number.

    Args:
        note: MIDI note(s); 69 is A4 = 440 Hz.
    """
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69) / 12)


def _decay(length: int, seconds: float, sample_rate: int) -> np.ndarray:
    return np.exp(-np.arange(length) / (seconds * sample_rate))


def _attack_release(length: int, attack: float, release: float, sample_rate: int) -> np.ndarray:
    """A trapezoid envelope: linear rise over ``attack`` s and fall over ``release`` s."""
    position = np.arange(length)
    rise = np.clip(position / max(1.0, attack * sample_rate), 0, 1)
    fall = np.clip((length - position) / max(1.0, release * sample_rate), 0, 1)
    return np.minimum(rise, fall)


def _place(track: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Add ``sound`` into ``track`` at sample ``start``, dropping what runs past the end."""
    if start >= track.shape[-1] or start < 0:
        return
    count = min(sound.shape[-1], track.shape[-1] - start)
    track[..., start : start + count] += sound[..., :count]


def _filtered_noise(
    rng: np.random.Generator, length: int, band: tuple[float, float | None], sample_rate: int
) -> np.ndarray:
    low, high = band
    noise = rng.standard_normal(length)
    if high is None:
        sos = signal.butter(4, low, btype="highpass", fs=sample_rate, output="sos")
    else:
        sos = signal.butter(2, (low, high), btype="bandpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, noise)


def _harmonic_tone(
    f0: np.ndarray, amplitudes: np.ndarray, sample_rate: int, phase: float = 0.0
) -> np.ndarray:
    """Sum of harmonics of a (possibly time-varying) fundamental, band-limited below 18 kHz.

    Args:
        f0: Fundamental in Hz per sample.
        amplitudes: Amplitude of harmonics 1, 2, ...
        sample_rate: Sample rate in Hz.
        phase: Starting phase in radians. (Default: ``0.0``)
    """
    theta = phase + 2 * np.pi * np.cumsum(f0) / sample_rate
    tone = np.zeros_like(f0)
    for number, amplitude in enumerate(amplitudes, start=1):
        audible = number * f0 < 18000
        tone += amplitude * np.sin(number * theta) * audible
    return tone


def synth_drums(plan: TrackPlan, length: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Kicks, snares and hi-hats in a pattern drawn for the track; stereo ``[2, T]``.

    Args:
        plan: The track's musical choices.
        length: Track length in samples.
        rng: The track's random generator.
        sample_rate: Sample rate in Hz.
    """
    step = plan.sixteenth * sample_rate
    kick_length, snare_length, hat_length = (int(s * sample_rate) for s in (0.45, 0.3, 0.12))
    t = np.arange(kick_length) / sample_rate
    top, bottom = rng.uniform(110, 170), rng.uniform(42, 60)
    sweep = bottom + (top - bottom) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sample_rate) * _decay(kick_length, 0.18, sample_rate)
    snare_tone = np.sin(2 * np.pi * rng.uniform(170, 230) * np.arange(snare_length) / sample_rate)
    snare = (
        0.8 * _filtered_noise(rng, snare_length, (1200, 7000), sample_rate) * 4 + 0.5 * snare_tone
    ) * _decay(snare_length, 0.07, sample_rate)
    hat_noise = _filtered_noise(rng, hat_length, (7000, None), sample_rate)
    closed_hat = hat_noise * _decay(hat_length, 0.015, sample_rate) * 2
    open_hat = hat_noise * _decay(hat_length, 0.05, sample_rate) * 1.5

    kicks = {0} | set(rng.choice([3, 6, 8, 10, 11, 14], size=int(rng.integers(1, 4)), replace=False).tolist())
    snares = {4, 12} | ({int(rng.choice([7, 9, 15]))} if rng.random() < 0.5 else set())
    hat_every = int(rng.choice([1, 2, 2]))
    pieces = [(kick, 0.0, kicks), (snare, 0.1, snares)]
    left, right = np.zeros(length), np.zeros(length)
    hat_pan = rng.uniform(-0.5, 0.5)
    bars = int(np.ceil(length / (16 * step)))
    resting_bar = int(rng.integers(1, bars)) if bars > 2 and rng.random() < 0.5 else -1
    for bar in range(bars):
        if bar == resting_bar:
            continue  # a break: the drums drop out for one bar
        for position in range(16):
            start = int(round((bar * 16 + position) * step))
            for sound, pan, steps in pieces:
                if position in steps:
                    _place_panned(left, right, sound * rng.uniform(0.8, 1.0), start, pan)
            if position % hat_every == 0:
                hat = open_hat if position % 8 == 6 else closed_hat
                accent = 1.0 if position % 4 == 0 else 0.6
                _place_panned(left, right, hat * accent * rng.uniform(0.7, 1.0), start, hat_pan)
    return np.stack([left, right])


def _place_panned(left: np.ndarray, right: np.ndarray, sound: np.ndarray, start: int, pan: float) -> None:
    gain_left, gain_right = _pan_gains(pan)
    _place(left, sound * gain_left, start)
    _place(right, sound * gain_right, start)


def _pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power gains of a position in ``[-1, 1]``."""
    angle = (pan + 1) * np.pi / 4
    return float(np.cos(angle)), float(np.sin(angle))


def synth_bass(plan: TrackPlan, length: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Plucked low notes on each bar's chord root (sometimes its fifth); mono ``[T]``.

    Args:
        plan: The track's musical choices.
        length: Track length in samples.
        rng: The track's random generator.
        sample_rate: Sample rate in Hz.
    """
    step = plan.sixteenth * sample_rate
    rhythm = [0, 4, 8, 12] if rng.random() < 0.5 else [0, 3, 6, 8, 10, 14]
    note_steps = np.diff(rhythm + [16])
    harmonics = 1.0 / np.arange(1, 9) ** rng.uniform(1.2, 2.0)
    out = np.zeros(length)
    bars = int(np.ceil(length / (16 * step)))
    for bar in range(bars):
        root = plan.tonic + plan.chord(bar)[0]
        for position, steps in zip(rhythm, note_steps):
            note = root + (7 if position and rng.random() < 0.2 else 0)
            duration = int(steps * step * 0.95)
            f0 = np.full(duration, float(midi_to_hz(note)))
            tone = _harmonic_tone(f0, harmonics, sample_rate)
            envelope = _attack_release(duration, 0.004, 0.02, sample_rate) * (
                0.35 + 0.65 * _decay(duration, 0.25, sample_rate)
            )
            _place(out, tone * envelope, int(round((bar * 16 + position) * step)))
    return out


def synth_other(plan: TrackPlan, length: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A sustained chord pad and a plucked arpeggio over the progression; stereo ``[2, T]``.

    Args:
        plan: The track's musical choices.
        length: Track length in samples.
        rng: The track's random generator.
        sample_rate: Sample rate in Hz.
    """
    step = plan.sixteenth * sample_rate
    bar_length = int(round(16 * step))
    pad_harmonics = 1.0 / np.arange(1, 7) ** 1.5
    arp_harmonics = 1.0 / np.arange(1, 13)
    arp_every = int(rng.choice([2, 4]))
    pad_pan, arp_pan = rng.uniform(-0.5, 0.5), rng.uniform(-0.8, 0.8)
    left, right = np.zeros(length), np.zeros(length)
    bars = int(np.ceil(length / bar_length))
    for bar in range(bars):
        chord = [plan.tonic + 24 + offset for offset in plan.chord(bar)]
        start = int(round(bar * 16 * step))
        pad = np.zeros(bar_length)
        for note in chord:
            f0 = np.full(bar_length, float(midi_to_hz(note))) * (1 + 0.002 * rng.standard_normal())
            pad += _harmonic_tone(f0, pad_harmonics, sample_rate, phase=rng.uniform(0, 2 * np.pi))
        pad *= _attack_release(bar_length, 0.15, 0.1, sample_rate) * 0.5
        _place_panned(left, right, pad, start, pad_pan)
        arpeggio = chord + [chord[0] + 12]
        for index, position in enumerate(range(0, 16, arp_every)):
            note = arpeggio[index % len(arpeggio)] + 12
            duration = int(arp_every * step)
            tone = _harmonic_tone(np.full(duration, float(midi_to_hz(note))), arp_harmonics, sample_rate)
            envelope = _attack_release(duration, 0.002, 0.01, sample_rate) * _decay(
                duration, 0.12, sample_rate
            )
            _place_panned(
                left, right, tone * envelope * 0.6, int(round((bar * 16 + position) * step)), arp_pan
            )
    return np.stack([left, right])


def synth_vocals(plan: TrackPlan, length: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Sung phrases: gliding, vibrato-laden harmonic notes through vowel formants, consonant
    noise bursts at syllable onsets, and rests between phrases; mono ``[T]``.

    Args:
        plan: The track's musical choices.
        length: Track length in samples.
        rng: The track's random generator.
        sample_rate: Sample rate in Hz.
    """
    beat = 4 * plan.sixteenth
    f0_target = np.zeros(length)  # the sung note, in MIDI, where a syllable is voiced
    voiced = np.zeros(length)
    formants = np.zeros((length, 3))
    consonants = np.zeros(length)
    position = float(rng.uniform(0.5, 2.0)) * beat  # seconds
    melody_note = plan.tonic + 24 + plan.scale[int(rng.integers(0, 5))]
    total = length / sample_rate
    while position < total:
        for _ in range(int(rng.integers(3, 8))):  # syllables of one phrase
            duration = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])) * beat
            start, end = int(position * sample_rate), min(length, int((position + duration) * sample_rate))
            if start >= length:
                break
            degree = int(rng.integers(-2, 3))
            melody_note = _nearest_in_scale(melody_note + 2 * degree, plan)
            melody_note = int(np.clip(melody_note, plan.tonic + 22, plan.tonic + 43))
            f0_target[start:end] = melody_note
            voiced[start:end] = _attack_release(end - start, 0.03, 0.06, sample_rate)
            formants[start:end] = _VOWELS[int(rng.integers(len(_VOWELS)))]
            if rng.random() < 0.5:
                burst = int(rng.uniform(0.03, 0.08) * sample_rate)
                noise = _filtered_noise(rng, burst, (3500, None), sample_rate)
                _place(
                    consonants,
                    noise * _attack_release(burst, 0.005, 0.02, sample_rate) * 0.3,
                    max(0, start - burst // 2),
                )
            position += duration
        position += float(rng.uniform(1.0, 4.0)) * beat  # a rest between phrases

    # Glide: the pitch moves smoothly (about 50 ms) from one note to the next; unvoiced spans
    # hold the last note so the glide into the next phrase starts from somewhere sensible.
    smooth = _smooth(_hold_last(f0_target), 0.05, sample_rate)
    time = np.arange(length) / sample_rate
    vibrato = rng.uniform(0.25, 0.6) * np.sin(2 * np.pi * rng.uniform(4.8, 6.5) * time)
    f0 = midi_to_hz(smooth + vibrato)
    smooth_formants = _smooth(_hold_last_rows(formants), 0.03, sample_rate)
    theta = 2 * np.pi * np.cumsum(f0) / sample_rate
    sung = np.flatnonzero(voiced)  # only voiced samples need the (costly) harmonic sum
    f0, theta, smooth_formants = f0[sung], theta[sung], smooth_formants[sung]
    source = np.zeros(sung.size)
    for number in range(1, 41):
        frequency = number * f0
        weight = _formant_envelope(frequency, smooth_formants) * (frequency < 16000) / number**0.7
        source += weight * np.sin(number * theta)
    out = consonants.copy()
    out[sung] += source * voiced[sung]
    return out


def _smooth(values: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """One-pole low-pass along time (axis 0) with time constant ``seconds``, starting settled."""
    pole = np.exp(-1 / (seconds * sample_rate))
    return signal.lfilter([1 - pole], [1, -pole], values - values[0], axis=0) + values[0]


def _nearest_in_scale(note: int, plan: TrackPlan) -> int:
    pitch_classes = {(plan.tonic + degree) % 12 for degree in plan.scale}
    for offset in (0, 1, -1, 2, -2):
        if (note + offset) % 12 in pitch_classes:
            return note + offset
    return note


def _hold_last(values: np.ndarray) -> np.ndarray:
    """Replace zeros with the last non-zero value before them (the first one before any)."""
    nonzero = np.flatnonzero(values)
    if nonzero.size == 0:
        return np.full_like(values, 60.0)
    index = np.maximum.accumulate(np.where(values != 0, np.arange(values.size), 0))
    held = values[index]
    held[: nonzero[0]] = values[nonzero[0]]
    return held


def _hold_last_rows(rows: np.ndarray) -> np.ndarray:
    return np.stack([_hold_last(rows[:, column]) for column in range(rows.shape[1])], axis=1)


def _formant_envelope(frequency: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Gain of three resonances (Lorentzian peaks) at each sample's harmonic frequency."""
    gain = np.full_like(frequency, 0.02)
    for column, (bandwidth, peak) in enumerate(zip(_FORMANT_BANDWIDTHS, _FORMANT_GAINS)):
        gain += peak / (1 + ((frequency - formants[:, column]) / (bandwidth / 2)) ** 2)
    return gain


def synthesize_track(
    seconds: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> dict[str, np.ndarray]:
    """The four stems of one toy track as int16 ``[T, 2]`` arrays (soundfile's layout).

    Args:
        seconds: Track length.
        rng: The track's random generator.
        sample_rate: Sample rate in Hz. (Default: ``44100``)
    """
    length = int(round(seconds * sample_rate))
    plan = plan_track(rng)
    raw = {
        "drums": synth_drums(plan, length, rng, sample_rate),
        "bass": synth_bass(plan, length, rng, sample_rate),
        "other": synth_other(plan, length, rng, sample_rate),
        "vocals": synth_vocals(plan, length, rng, sample_rate),
    }
    return render_stems(raw, plan.pans, plan.levels_db, rng)


def render_stems(
    raw: Mapping[str, np.ndarray],
    pans: Mapping[str, float],
    levels_db: Mapping[str, float],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Pan, level and limit synthesized parts together and add the noise floor: int16 ``[T, 2]``.

    Mono parts are panned; every part is scaled to its RMS level; all parts are scaled down
    together when their sum would peak above :data:`PEAK_LIMIT`; each gets its own noise floor.

    Args:
        raw: Each part's audio, mono ``[T]`` or stereo ``[2, T]``, all of one length.
        pans: Stereo position of each mono part in ``[-1, 1]``.
        levels_db: RMS level of each part in dBFS.
        rng: The random generator of the noise floor.
    """
    stems = {}
    for source, audio in raw.items():
        if audio.ndim == 1:
            gain_left, gain_right = _pan_gains(pans[source])
            audio = np.stack([audio * gain_left, audio * gain_right])
        rms = np.sqrt(np.mean(audio**2)) + 1e-12
        stems[source] = audio * 10 ** (levels_db[source] / 20) / rms
    peak = np.abs(sum(stems.values())).max()
    if peak > PEAK_LIMIT:
        stems = {source: audio * PEAK_LIMIT / peak for source, audio in stems.items()}
    floor = 10 ** (NOISE_FLOOR_DBFS / 20)
    return {
        source: _to_int16(audio + floor * rng.standard_normal(audio.shape)).T
        for source, audio in stems.items()
    }


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)


def track_name(subset: str, index: int) -> str:
    """The folder name of a toy track, in MUSDB's ``Artist - Title`` style.

    Args:
        subset: ``"train"`` or ``"test"``.
        index: Track index in the subset.
    """
    return f"Toy {subset.capitalize()} {index:03d} - Synthetic Song {index:03d}"


def generate_toy_musdb(
    out: str | Path,
    tracks: int = 8,
    test_tracks: int = 4,
    seconds: float = 10.0,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write a toy data set in the MUSDB18-HQ layout.

    The set is written to a temporary folder beside ``out`` and renamed into place, so an
    interrupted run leaves nothing that looks finished.

    Args:
        out: The data set folder to create.
        tracks: Tracks in ``train/``. (Default: ``8``)
        test_tracks: Tracks in ``test/``. (Default: ``4``)
        seconds: Length of every track. (Default: ``10.0``)
        seed: Seed of every random choice. (Default: ``0``)
        force: Replace an existing ``out``. (Default: ``False``)
        progress: Show a progress bar. (Default: ``False``)

    Raises:
        OutputExistsError: ``out`` exists and ``force`` is False.
        SepzooError: A count or length is invalid, or ``out`` cannot be created.
    """
    if tracks < 1 or test_tracks < 0:
        raise SepzooError(f"--tracks must be >= 1 and --test-tracks >= 0, got {tracks} and {test_tracks}")
    out = Path(out)
    with staged_data_set(out, seconds, seed, force) as staging:
        _write_set(staging, {"train": tracks, "test": test_tracks}, seconds, seed, progress)
        _write_marker(staging, tracks, test_tracks, seconds, seed)
    return out


@contextlib.contextmanager
def staged_data_set(out: Path, seconds: float, seed: int, force: bool) -> Iterator[Path]:
    """Check a toy generator's options and give a temporary folder that becomes ``out`` on success.

    Args:
        out: The data set folder to create.
        seconds: Length of every track (0.5 to 3600).
        seed: Seed of every random choice (>= 0).
        force: Replace an existing ``out``.

    Raises:
        OutputExistsError: ``out`` exists and ``force`` is False.
        SepzooError: ``seconds`` or ``seed`` is out of range, or ``out`` cannot be created.
    """
    if not 0.5 <= seconds <= 3600:
        raise SepzooError(f"--seconds must be between 0.5 and 3600, got {seconds}")
    if seed < 0:
        raise SepzooError(f"--seed must be >= 0, got {seed}")
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists; pass --force to replace it")
    with contextlib.ExitStack() as stack:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            staging = stack.enter_context(atomic_folder(out))
        except OSError as exc:
            raise SepzooError(f"{out}: cannot create the data set folder ({exc.strerror})") from None
        yield staging


def _write_set(folder: Path, counts: dict[str, int], seconds: float, seed: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    jobs = [(subset, index) for subset in _SUBSETS for index in range(counts[subset])]
    for subset, index in tqdm(jobs, desc="toy-musdb", unit="track", disable=not progress):
        rng = np.random.default_rng([seed, _SUBSETS.index(subset), index])
        stems = synthesize_track(seconds, rng)
        track_folder = folder / subset / track_name(subset, index)
        track_folder.mkdir(parents=True)
        mixture = sum(stem.astype(np.int32) for stem in stems.values())
        for source, stem in stems.items():
            sf.write(track_folder / f"{source}.wav", stem, SAMPLE_RATE, subtype="PCM_16")
        sf.write(track_folder / "mixture.wav", mixture.astype(np.int16), SAMPLE_RATE, subtype="PCM_16")
    for subset in _SUBSETS:
        (folder / subset).mkdir(exist_ok=True)


def _write_marker(folder: Path, tracks: int, test_tracks: int, seconds: float, seed: int) -> None:
    (folder / MARKER_FILE).write_text(
        "Synthetic data set written by `sepzoo toy-musdb` "
        f"(--tracks {tracks} --test-tracks {test_tracks} --seconds {seconds:g} --seed {seed}).\n"
        "MUSDB18-HQ layout: {train,test}/<track>/{mixture,drums,bass,other,vocals}.wav, "
        "stereo 44.1 kHz 16-bit.\n"
        "Results on it are a smoke test of the machinery, not evidence about any model.\n"
    )


__all__ = [
    "MARKER_FILE",
    "NOISE_FLOOR_DBFS",
    "TOY_SOURCES",
    "TrackPlan",
    "generate_toy_musdb",
    "plan_track",
    "render_stems",
    "staged_data_set",
    "synthesize_track",
    "track_name",
]
