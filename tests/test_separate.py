"""``sepzoo separate`` end to end: streamed stems equal the in-memory engine's, demucs's output
options, ffmpeg inputs, and bad inputs and outputs as one-line errors that leave nothing behind."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_helpers import assert_one_line_error
from cli_helpers import run as run_cli

from sepzoo.engine.apply import apply_model
from sepzoo.engine.separate import separate_files
from sepzoo.io.audio import read_audio
from sepzoo.models import create_model, get_model_class
from sepzoo.models.bag import BagOfModels
from sepzoo.models.files import save_model_file

SOURCES = ["drums", "bass", "other", "vocals"]
needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed"
)


def run(capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "separate", *args)


def assert_nothing_written(folder: Path) -> None:
    """No stem and no temporary file: nothing that could pass for a result."""
    left = [p.name for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert left == [], left


def tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, **get_model_class(name).test_kwargs).eval()


@pytest.fixture(scope="module")
def hdemucs_file(tmp_path_factory) -> Path:
    return save_model_file(tiny("hdemucs"), tmp_path_factory.mktemp("models") / "hdemucs.sepzoo")


@pytest.fixture(scope="module")
def bag_file(tmp_path_factory) -> Path:
    bag = BagOfModels([tiny("hdemucs"), tiny("demucs")], weights=[[1, 1, 0, 2], [1, 0, 1, 1]])
    return save_model_file(bag, tmp_path_factory.mktemp("models") / "bag.sepzoo")


def noise(seconds: float, channels: int = 2, rate: int = 44100, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))).astype(
        np.float32
    )


def write(path: Path, data: np.ndarray, rate: int = 44100, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)
    return path


def read_stem(path: Path) -> torch.Tensor:
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy())


# ----------------------------------------------------------------------------------------------
# Streamed stems equal the in-memory engine's


def test_streamed_files_equal_apply_model_with_resampling_normalisation_and_shifts(
    capsys, tmp_path, hdemucs_file
):
    song = write(tmp_path / "song.flac", noise(0.4, channels=1, rate=48000), rate=48000, subtype="PCM_24")
    code, out, err = run(
        capsys, str(song), "-n", str(hdemucs_file), "-o", str(tmp_path / "out"), "--segment", "0.1",
        "--shifts", "1", "--normalize", "--float32", "--clip-mode", "none",
    )  # fmt: skip
    assert code == 0, err
    mix, _ = read_audio(song, sample_rate=44100, channels=2)
    expected = apply_model(tiny("hdemucs"), mix, segment=0.1, shifts=1, normalize=True)
    scale = float(expected.abs().max())
    for source, stem in zip(SOURCES, expected):
        got = read_stem(tmp_path / "out" / "song" / f"{source}.wav")
        torch.testing.assert_close(got, stem, atol=1e-5 * scale, rtol=0)
    assert f"{song}: 0.4 s separated into 4 stems" in out and "x real time" in out


def test_two_stems_of_a_bag_are_the_source_and_the_sum_of_the_others(capsys, tmp_path, bag_file):
    song = write(tmp_path / "song.wav", noise(0.3))
    args = ["-n", str(bag_file), "--segment", "0.1", "--float32", "--clip-mode", "none"]
    assert run(capsys, str(song), *args, "-o", str(tmp_path / "all"))[0] == 0
    code, _, err = run(capsys, str(song), *args, "-o", str(tmp_path / "two"), "--two-stems", "vocals")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "two" / "song").iterdir()) == ["no_vocals.wav", "vocals.wav"]
    stems = {s: read_stem(tmp_path / "all" / "song" / f"{s}.wav") for s in SOURCES}
    mix, _ = read_audio(song)
    with torch.no_grad():
        bag = BagOfModels([tiny("hdemucs"), tiny("demucs")], weights=[[1, 1, 0, 2], [1, 0, 1, 1]])
        torch.testing.assert_close(stems["vocals"], apply_model(bag, mix, segment=0.1)[3], atol=1e-6, rtol=0)
    torch.testing.assert_close(read_stem(tmp_path / "two" / "song" / "vocals.wav"), stems["vocals"])
    others = stems["drums"] + stems["bass"] + stems["other"]
    torch.testing.assert_close(
        read_stem(tmp_path / "two" / "song" / "no_vocals.wav"), others, atol=1e-6, rtol=0
    )


def test_concurrent_jobs_write_the_same_stems(capsys, tmp_path, hdemucs_file):
    song = write(tmp_path / "song.wav", noise(0.3))
    args = [str(song), "-n", str(hdemucs_file), "--segment", "0.05", "-b", "1", "--float32"]
    assert run(capsys, *args, "-o", str(tmp_path / "one"))[0] == 0
    assert run(capsys, *args, "-o", str(tmp_path / "two"), "-j", "2")[0] == 0
    for source in SOURCES:
        one = read_stem(tmp_path / "one" / "song" / f"{source}.wav")
        torch.testing.assert_close(
            read_stem(tmp_path / "two" / "song" / f"{source}.wav"), one, atol=1e-6, rtol=0
        )


# ----------------------------------------------------------------------------------------------
# demucs's output options


@pytest.mark.parametrize(
    ("flags", "suffix", "subtype"),
    [
        ([], ".wav", "PCM_16"),
        (["--int24"], ".wav", "PCM_24"),
        (["--float32"], ".wav", "FLOAT"),
        (["--flac"], ".flac", "PCM_16"),
        (["--flac", "--int24"], ".flac", "PCM_24"),
    ],
)
def test_output_formats(capsys, tmp_path, flags, suffix, subtype):
    song = write(tmp_path / "song.wav", noise(0.2))
    code, _, err = run(capsys, str(song), "-n", "mix", "-o", str(tmp_path / "out"), *flags)
    assert code == 0, err
    files = sorted((tmp_path / "out" / "song").iterdir())
    assert [p.name for p in files] == sorted(f"{s}{suffix}" for s in SOURCES)
    assert {sf.info(str(p)).subtype for p in files} == {subtype}


@pytest.mark.parametrize(("clip_mode", "peak"), [("rescale", 1 / 1.01), ("clamp", 0.99), ("none", 1.0)])
def test_clip_modes_on_a_loud_file(capsys, tmp_path, clip_mode, peak):
    loud = write(
        tmp_path / "loud.wav", 1.5 * np.sin(np.linspace(0, 300, 8000))[:, None].repeat(2, 1), subtype="FLOAT"
    )
    code, _, err = run(capsys, str(loud), "-n", "mix", "-o", str(tmp_path / "out"), "--clip-mode", clip_mode)
    assert code == 0, err
    data, _ = sf.read(tmp_path / "out" / "loud" / "vocals.wav")
    assert float(np.abs(data).max()) == pytest.approx(peak, abs=1e-3)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--flac", "--float32"], "--float32 needs WAV output"),
        (["--two-stems", "guitar"], "--two-stems guitar: the model's sources are drums, bass, other, vocals"),
        (["-j", "-1"], "-j -1"),
        (["--shifts", "-1"], "shifts must be >= 0"),
        (["--overlap", "1"], "overlap must be in [0, 1)"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, tmp_path, flags, fragment):
    song = write(tmp_path / "song.wav", noise(0.1))
    code, out, err = run(capsys, str(song), "-n", "mix", "-o", str(tmp_path / "out"), *flags)
    assert_one_line_error(code, err, fragment)
    assert_nothing_written(tmp_path / "out")


def test_two_stem_outputs_are_not_overwritten_without_force(capsys, tmp_path):
    song = write(tmp_path / "song.wav", noise(0.1))
    args = [str(song), "-n", "mix", "-o", str(tmp_path / "out"), "--two-stems", "bass", "--flac"]
    assert run(capsys, *args)[0] == 0
    (tmp_path / "out" / "song" / "bass.flac").unlink()
    kept = tmp_path / "out" / "song" / "no_bass.flac"
    kept.write_bytes(b"precious")
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, "no_bass.flac: already exists", "--force")
    assert kept.read_bytes() == b"precious"
    assert run(capsys, *args, "--force")[0] == 0
    assert sf.info(str(kept)).frames == 4410


def test_progress_bar_and_summary_line_per_file(capsys, caplog, tmp_path):
    files = [str(write(tmp_path / f"{name}.wav", noise(0.2, seed=i))) for i, name in enumerate(["a", "b"])]
    caplog.set_level(logging.INFO, logger="sepzoo")
    separate_files(files, "mix", tmp_path / "out", segment=0.05, progress=True)
    captured = capsys.readouterr()
    lines = [record.getMessage() for record in caplog.records if record.name == "sepzoo.engine.separate"]
    assert len(lines) == 2
    for name, line in zip(files, lines):
        assert line.startswith(f"{name}: 0.2 s separated into 4 stems in ") and "x real time" in line
        assert line.endswith(str(tmp_path / "out" / Path(name).stem))
    assert "a.wav" in captured.err and "b.wav" in captured.err  # one bar per file, on stderr


# ----------------------------------------------------------------------------------------------
# Inputs through ffmpeg


@needs_ffmpeg
def test_m4a_and_the_mixture_of_a_stem_mp4(capsys, tmp_path):
    mixture = write(tmp_path / "mixture.wav", noise(0.5, seed=1))
    vocals = write(tmp_path / "vocals_in.wav", noise(0.5, seed=2) * 0.1)
    m4a = tmp_path / "song.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(mixture), str(m4a)], check=True)
    stem_mp4 = tmp_path / "track.stem.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(mixture), "-i", str(vocals), "-map", "0:a", "-map", "1:a",
         "-c:a", "aac", str(stem_mp4)],
        check=True,
    )  # fmt: skip
    code, out, err = run(
        capsys, str(m4a), str(stem_mp4), "-n", "mix", "-o", str(tmp_path / "out"), "--segment", "0.1",
        "--float32", "--clip-mode", "none",
    )  # fmt: skip
    assert code == 0, err
    for path, folder in [(m4a, "song"), (stem_mp4, "track")]:
        decoded, _ = read_audio(path)  # the first audio stream: the mixture
        got = read_stem(tmp_path / "out" / folder / "vocals.wav")
        torch.testing.assert_close(got, decoded, atol=1e-6, rtol=0)
        assert str(path) in out


@needs_ffmpeg
def test_an_unreadable_ffmpeg_input_is_refused_before_separating(capsys, tmp_path):
    fake = tmp_path / "song.mp3"
    fake.write_bytes(b"ID3 this is not audio" * 10)
    code, out, err = run(capsys, str(fake), "-n", "mix", "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(fake), "not a readable audio file")
    assert out == ""


# ----------------------------------------------------------------------------------------------
# Bad inputs


def test_a_truncated_flac_is_one_line_and_leaves_no_stems(capsys, tmp_path):
    flac = write(tmp_path / "cut.flac", noise(3.0))
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    code, _, err = run(capsys, str(flac), "-n", "mix", "-o", str(tmp_path / "out"), "--segment", "0.5")
    assert_one_line_error(code, err, str(flac), "looks truncated or corrupt")
    assert_nothing_written(tmp_path / "out")


def test_a_nan_after_the_first_blocks_leaves_no_stems(capsys, tmp_path):
    data = noise(2.0)
    data[70_000, 0] = np.inf  # past the first block of 65536 frames
    song = write(tmp_path / "late.wav", data, subtype="FLOAT")
    code, _, err = run(capsys, str(song), "-n", "mix", "-o", str(tmp_path / "out"), "--segment", "0.2")
    assert_one_line_error(code, err, str(song), "NaN or infinite")
    assert_nothing_written(tmp_path / "out")


def test_silence_gives_finite_silent_stems_even_normalised(capsys, tmp_path, hdemucs_file):
    silent = write(tmp_path / "silent.wav", np.zeros((4410, 2)))
    code, _, err = run(
        capsys, str(silent), "-n", str(hdemucs_file), "-o", str(tmp_path / "out"), "--segment", "0.05",
        "--normalize", "--float32",
    )  # fmt: skip
    assert code == 0, err
    for source in SOURCES:
        stem = read_stem(tmp_path / "out" / "silent" / f"{source}.wav")
        assert stem.shape == (2, 4410) and bool(torch.isfinite(stem).all())


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_output_folder_is_refused_before_separating(capsys, tmp_path):
    song = write(tmp_path / "song.wav", noise(0.1))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, out, err = run(capsys, str(song), "-n", "mix", "-o", str(locked))
    finally:
        locked.chmod(0o700)
    assert_one_line_error(code, err, "cannot create output folder")
    assert out == ""


def separate_with_file_size_limit(tmp_path: Path, limit: int, *args: str) -> subprocess.CompletedProcess:
    """Run ``sepzoo separate`` where no file may grow past ``limit`` bytes: writes then fail with
    EFBIG as on a full disk (SIGXFSZ is ignored so that the process sees the error)."""
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from sepzoo.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, "separate", *args], capture_output=True, text=True, cwd=tmp_path
    )


@pytest.mark.parametrize("clip_mode", ["rescale", "clamp"])
def test_a_disk_that_fills_mid_write_leaves_no_complete_looking_stem(tmp_path, clip_mode):
    song = write(tmp_path / "song.wav", noise(2.0))  # 2 s: 345 kB per 16-bit stem
    out = tmp_path / "out"
    done = separate_with_file_size_limit(
        tmp_path,
        100_000,
        str(song),
        "-n",
        "mix",
        "-o",
        str(out),
        "--segment",
        "0.25",
        "--clip-mode",
        clip_mode,
    )
    assert_one_line_error(done.returncode, done.stderr, "writing failed", "no incomplete stem was left")
    assert done.stdout == ""
    assert_nothing_written(out)


def test_an_output_folder_that_cannot_take_a_byte_is_refused_before_separating(tmp_path):
    song = write(tmp_path / "song.wav", noise(0.1))
    done = separate_with_file_size_limit(tmp_path, 0, str(song), "-n", "mix", "-o", str(tmp_path / "out"))
    assert_one_line_error(done.returncode, done.stderr, "output folder is not writable")
    assert done.stdout == ""
    assert_nothing_written(tmp_path / "out")
