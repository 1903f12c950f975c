"""The synthetic toy data set: MUSDB18-HQ layout that `musdb` reads, deterministic, stems that
behave like their namesakes, and a CLI that never clobbers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepzoo.data.toy import NOISE_FLOOR_DBFS, generate_toy_musdb, synthesize_track
from sepzoo.errors import OutputExistsError

SOURCES = ("drums", "bass", "other", "vocals")


def test_musdb_reads_the_toy_set(toy_root):
    musdb = pytest.importorskip("musdb")
    train = musdb.DB(root=str(toy_root), is_wav=True, subsets="train")
    test = musdb.DB(root=str(toy_root), is_wav=True, subsets="test")
    assert len(train.tracks) == 4
    assert len(test.tracks) == 2
    track = train.tracks[0]
    assert set(SOURCES) <= set(track.sources)
    assert track.rate == 44100
    assert track.audio.shape == (4 * 44100, 2)
    total = sum(track.targets[source].audio for source in SOURCES)
    np.testing.assert_allclose(track.audio, total, atol=1e-6)  # the mixture is the sum of the stems


def test_files_are_stereo_16_bit_pcm(toy_root):
    for path in (toy_root / "train").glob("*/*.wav"):
        info = sf.info(str(path))
        assert (info.channels, info.samplerate, info.subtype) == (2, 44100, "PCM_16"), path
    assert "toy-musdb" in (toy_root / "README.txt").read_text()


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.wav")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path):
    first = generate_toy_musdb(tmp_path / "a", tracks=1, test_tracks=1, seconds=1.0, seed=5)
    second = generate_toy_musdb(tmp_path / "b", tracks=1, test_tracks=1, seconds=1.0, seed=5)
    third = generate_toy_musdb(tmp_path / "c", tracks=1, test_tracks=1, seconds=1.0, seed=6)
    assert _digest(first) == _digest(second)
    assert _digest(first) != _digest(third)


def _band_share(audio: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(audio.mean(axis=1))) ** 2
    frequency = np.fft.rfftfreq(audio.shape[0], 1 / 44100)
    return float(power[(frequency >= low) & (frequency < high)].sum() / power.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stems_behave_like_their_namesakes(seed):
    stems = {k: v / 32768.0 for k, v in synthesize_track(6.0, np.random.default_rng(seed)).items()}
    # bass: low notes
    assert _band_share(stems["bass"], 0, 400) > 0.8
    # drums: transients (a high crest factor) and hi-hat energy far above the bass
    drums = stems["drums"].mean(axis=1)
    assert np.abs(drums).max() / np.sqrt(np.mean(drums**2)) > 5
    assert _band_share(stems["drums"], 5000, 20000) > 0.01
    # vocals: voiced in the singing range, with formant energy above the fundamental
    assert _band_share(stems["vocals"], 100, 4000) > 0.8
    assert _band_share(stems["vocals"], 1000, 4000) > 0.01
    # other: chords above the bass register
    assert _band_share(stems["other"], 0, 100) < 0.1


def test_every_stem_has_the_noise_floor_even_when_silent():
    stems = synthesize_track(6.0, np.random.default_rng(0))
    expected = 10 ** (NOISE_FLOOR_DBFS / 20)
    for source, stem in stems.items():
        # the quietest 50 ms window holds only the noise floor (vocals rest, drums break)
        audio = stem / 32768.0
        windows = audio[: audio.shape[0] // 2205 * 2205].reshape(-1, 2205, 2)
        quietest = np.sqrt((windows**2).mean(axis=(1, 2))).min()
        assert 0.5 * expected < quietest, source


def test_refuses_to_overwrite_and_replaces_with_force(tmp_path):
    out = generate_toy_musdb(tmp_path / "toy", tracks=1, test_tracks=0, seconds=0.5)
    before = _digest(out)
    with pytest.raises(OutputExistsError, match="already exists"):
        generate_toy_musdb(out, tracks=1, test_tracks=0, seconds=0.5, seed=1)
    assert _digest(out) == before
    generate_toy_musdb(out, tracks=1, test_tracks=0, seconds=0.5, seed=1, force=True)
    assert _digest(out) != before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_cli_writes_the_set_and_refuses_an_existing_folder(tmp_path):
    command = [
        sys.executable,
        "-m",
        "sepzoo.cli.main",
        "toy-musdb",
        str(tmp_path / "toy"),
        "--tracks",
        "2",
        "--test-tracks",
        "1",
        "--seconds",
        "0.5",
        "--seed",
        "3",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "toy" / "train").iterdir())) == 2
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0
    assert "already exists" in again.stderr
