"""The command line, row by row of the bad-input table: one-line errors with exit status 2,
nothing existing overwritten, and the inputs that must simply work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_helpers import assert_one_line_error, run

from sepzoo.models import create_model, get_model_class
from sepzoo.models.files import save_model_file

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("conv_tasnet", **get_model_class("conv_tasnet").test_kwargs)
    return save_model_file(model, tmp_path_factory.mktemp("models") / "tiny.sepzoo")


def write_wav(path: Path, data: np.ndarray, rate: int = 44100, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)
    return path


def noise(seconds: float, channels: int = 2, rate: int = 44100) -> np.ndarray:
    return 0.1 * np.random.default_rng(0).standard_normal((int(seconds * rate), channels))


# -- recipes (details in test_config.py) ----------------------------------------------------------


def test_console_script_reports_a_misspelled_recipe_key_in_one_line():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sepzoo.cli.main",
            "train",
            "recipes/toy/conv_tasnet.yaml",
            "model.no_such_key=1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert_one_line_error(done.returncode, done.stderr, "model.no_such_key")


def test_missing_recipe_file(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "train", str(tmp_path / "nope.yaml"))[::2], "nope.yaml", "not found")


def test_bad_data_root_fails_before_any_run_directory_exists(capsys, tiny_recipe, tmp_path):
    code, _, err = run(capsys, "train", str(tiny_recipe), f"data.root={tmp_path / 'absent'}")
    assert_one_line_error(code, err, str(tmp_path / "absent"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- separate: inputs that are refused -----------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["corrupt", "empty", "text", "nan", "three_channels", "missing", "no_samples"]
)
def test_separate_refuses_bad_audio_naming_the_file(capsys, tmp_path, model_file, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path = tmp_path / "notes.flac"
        path.write_text("hello")
    elif kind == "nan":
        data = noise(0.2)
        data[100, 0] = np.nan
        write_wav(path, data, subtype="FLOAT")
    elif kind == "three_channels":
        write_wav(path, noise(0.2, channels=3))
    elif kind == "no_samples":
        write_wav(path, np.zeros((0, 2)))
    code, _, err = run(capsys, "separate", str(path), "-n", str(model_file), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(path))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


def test_separate_refuses_unusable_models(capsys, tmp_path):
    song = write_wav(tmp_path / "song.wav", noise(0.2))
    evil = tmp_path / "evil.sepzoo"
    torch.save({"format": "sepzoo.model", "payload": os.system}, evil)
    truncated = tmp_path / "truncated.sepzoo"
    truncated.write_bytes(b"PK\x03\x04")
    for spec, fragment in [
        (evil, "not allowed"),
        (truncated, "not a readable checkpoint"),
        (tmp_path / "absent.sepzoo", "no such file"),
    ]:
        code, _, err = run(capsys, "separate", str(song), "-n", str(spec), "-o", str(tmp_path / "out"))
        assert_one_line_error(code, err, fragment)


# -- separate: inputs that work -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "rate", "subtype"),
    [
        ("mono.wav", noise(0.5, channels=1), 44100, "PCM_16"),
        ("other_rate.wav", noise(0.5, rate=22050), 22050, "PCM_16"),
        ("silent.wav", np.zeros((22050, 2)), 44100, "PCM_16"),
        ("deep.flac", noise(0.5), 48000, "PCM_24"),
        ("tiny.wav", noise(0.0002), 44100, "FLOAT"),
    ],
)
def test_separate_handles_mono_rates_silence_24_bit_flac_and_tiny_inputs(
    capsys, tmp_path, model_file, name, data, rate, subtype
):
    path = write_wav(tmp_path / name, data, rate, subtype)
    code, out, err = run(capsys, "separate", str(path), "-n", str(model_file), "-o", str(tmp_path / "out"))
    assert code == 0, err
    folder = tmp_path / "out" / Path(name).stem
    expected_frames = round(len(data) * 44100 / rate)
    for source in ("drums", "bass", "other", "vocals"):
        stem, stem_rate = sf.read(folder / f"{source}.wav", always_2d=True)
        assert stem_rate == 44100 and stem.shape[1] == 2
        assert abs(stem.shape[0] - expected_frames) <= 1
        assert np.isfinite(stem).all()
    assert str(path) in out


def test_truncated_wav_works_on_what_is_there_or_fails_in_one_line(capsys, tmp_path, model_file):
    path = write_wav(tmp_path / "cut.wav", noise(0.5))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, _, err = run(capsys, "separate", str(path), "-n", str(model_file), "-o", str(tmp_path / "out"))
    if code != 0:
        assert_one_line_error(code, err, str(path))
    else:
        frames = sf.info(str(tmp_path / "out" / "cut" / "vocals.wav")).frames
        assert 0 < frames <= 22050


def test_existing_outputs_are_refused_and_untouched_without_force(capsys, tmp_path, model_file):
    path = write_wav(tmp_path / "song.wav", noise(0.3))
    assert run(capsys, "separate", str(path), "-n", str(model_file), "-o", str(tmp_path / "out"))[0] == 0
    vocals = tmp_path / "out" / "song" / "vocals.wav"
    vocals.write_bytes(b"precious")
    code, _, err = run(capsys, "separate", str(path), "-n", str(model_file), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, "already exists", "--force")
    assert vocals.read_bytes() == b"precious"
    assert (
        run(capsys, "separate", str(path), "-n", str(model_file), "-o", str(tmp_path / "out"), "--force")[0]
        == 0
    )
    assert sf.info(str(vocals)).frames == int(0.3 * 44100)


def test_output_that_cannot_be_created_is_refused_before_separating(capsys, tmp_path, model_file):
    path = write_wav(tmp_path / "song.wav", noise(0.3))
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    code, out, err = run(capsys, "separate", str(path), "-n", str(model_file), "-o", str(blocker / "out"))
    assert_one_line_error(code, err, "cannot create")
    assert "separated" not in out


# -- export, eval, models --------------------------------------------------------------------------


def test_train_export_eval_on_the_toy_set(capsys, tiny_recipe, toy_root, tmp_path):
    code, out, err = run(capsys, "train", str(tiny_recipe), "logger.name=csv")
    assert code == 0, err
    run_dir = Path(out.split("run directory:")[1].split()[0])

    model = tmp_path / "trained.sepzoo"
    code, out, err = run(capsys, "export", str(run_dir), str(model))
    assert code == 0 and "trained weights (EMA was off)" in out, err
    assert_one_line_error(*run(capsys, "export", str(run_dir), str(model))[::2], "already exists")

    for spec in (str(model), str(run_dir / "checkpoints" / "last.ckpt"), str(run_dir)):
        out_dir = tmp_path / f"eval-{Path(spec).name}"
        code, out, err = run(
            capsys, "eval", "-n", spec, "--root", str(toy_root), "--subset", "test", "-o", str(out_dir)
        )
        assert code == 0, err
        assert "nSDR" in out and "mixture" in out and "smoke test" in out
        for source in ("drums", "bass", "other", "vocals"):
            assert source in out
        assert len(list((out_dir / "test").glob("*.json"))) == 2
    code, _, err = run(capsys, "eval", "-n", str(model), "--root", str(toy_root), "-o", str(out_dir))
    assert_one_line_error(code, err, "already holds the results of another evaluation")


def test_eval_names_a_missing_root_and_a_track_missing_a_stem(capsys, tmp_path, model_file, toy_root):
    code, _, err = run(
        capsys, "eval", "-n", str(model_file), "--root", str(tmp_path / "none"), "-o", str(tmp_path / "e")
    )
    assert_one_line_error(code, err, str(tmp_path / "none"))
    broken = tmp_path / "broken" / "test" / "Song"
    write_wav(broken / "drums.wav", noise(0.2))
    code, _, err = run(
        capsys, "eval", "-n", str(model_file), "--root", str(tmp_path / "broken"), "-o", str(tmp_path / "e2")
    )
    assert_one_line_error(code, err, "'Song'", "bass")


def test_models_lists_name_domain_and_parameters(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("conv_tasnet"))
    assert "waveform" in row and f"{create_model('conv_tasnet').num_parameters():,}" in row


def test_models_counts_parameters_without_allocating_weights(capsys):
    from sepzoo.models import MODELS, register_model
    from sepzoo.models.base import Separator

    class Enormous(Separator):
        """Two hundred billion parameters: 800 GB of float32 weights if they were allocated."""

        def __init__(self) -> None:
            super().__init__(sources=["vocals"], sample_rate=44100)
            self.weights = torch.nn.Parameter(torch.empty(200_000, 1_000_000))

    register_model("enormous_for_counting")(Enormous)
    try:
        code, out, err = run(capsys, "models")
    finally:
        MODELS._entries.pop("enormous_for_counting", None)
    assert code == 0, err
    assert "200,000,000,000" in next(line for line in out.splitlines() if line.startswith("enormous"))


def test_separate_reads_mp3_through_ffmpeg(capsys, tmp_path, model_file):
    source = write_wav(tmp_path / "source.wav", noise(0.5))
    mp3 = tmp_path / "song.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), str(mp3)], check=True)
    code, out, err = run(capsys, "separate", str(mp3), "-n", str(model_file), "-o", str(tmp_path / "out"))
    assert code == 0, err
    stem, rate = sf.read(tmp_path / "out" / "song" / "vocals.wav", always_2d=True)
    assert rate == 44100 and stem.shape[1] == 2 and abs(stem.shape[0] - 22050) < 2000


@pytest.mark.parametrize("device", ["tpu", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_an_unavailable_device_is_one_line(capsys, tmp_path, model_file, device):
    path = write_wav(tmp_path / "song.wav", noise(0.2))
    code, _, err = run(
        capsys, "separate", str(path), "-n", str(model_file), "-o", str(tmp_path / "o"), "-d", device
    )
    assert_one_line_error(code, err, f"-d {device}")


def test_an_accelerator_the_machine_lacks_fails_before_any_run_directory(capsys, tiny_recipe, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run(capsys, "train", str(tiny_recipe), "trainer.accelerator=gpu")
    assert_one_line_error(code, err, "trainer")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- bag ---------------------------------------------------------------------------------------------


def test_bag_joins_one_target_models_into_one_file(capsys, tmp_path):
    from sepzoo.models.files import load_model_file

    kwargs = get_model_class("conv_tasnet").test_kwargs
    files = []
    for target in ("vocals", "drums"):
        torch.manual_seed(len(files))
        model = create_model("conv_tasnet", **{**kwargs, "sources": [target]})
        files.append(str(save_model_file(model, tmp_path / f"{target}.sepzoo")))
    out = tmp_path / "bag.sepzoo"
    code, stdout, _ = run(capsys, "bag", *files, "-o", str(out), "--sources", "drums", "vocals")
    assert code == 0 and "bag of 2 models" in stdout and "drums <- 1" in stdout
    bag = load_model_file(out)
    assert bag.sources == ["drums", "vocals"] and [m.sources for m in bag.members] == [["vocals"], ["drums"]]
    code, _, err = run(capsys, "bag", *files, "-o", str(out))
    assert_one_line_error(code, err, str(out), "exists")
    other_rate = save_model_file(
        create_model("conv_tasnet", **{**kwargs, "sample_rate": 22050}), tmp_path / "slow.sepzoo"
    )
    code, _, err = run(capsys, "bag", files[0], str(other_rate), "-o", str(tmp_path / "b2.sepzoo"))
    assert_one_line_error(code, err, "sample_rate=22050")
    assert not (tmp_path / "b2.sepzoo").exists()


def _console(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sepzoo.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_verbose_says_that_separation_asks_for_huge_pages_before_torch_loads(tmp_path, model_file):
    song = write_wav(tmp_path / "song.wav", noise(0.3))
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    done = _console("-v", "separate", str(song), "-n", str(model_file), "-o", str(tmp_path / "v"), env=env)
    assert done.returncode == 0, done.stderr
    assert "THP_MEM_ALLOC_ENABLE=1: torch's CPU allocator uses huge pages" in done.stdout
    quiet = _console("separate", str(song), "-n", str(model_file), "-o", str(tmp_path / "q"), env=env)
    assert "THP_MEM_ALLOC_ENABLE" not in quiet.stdout + quiet.stderr
    opted_out = _console(
        "-v", "separate", str(song), "-n", str(model_file), "-o", str(tmp_path / "o"),
        env={**env, "THP_MEM_ALLOC_ENABLE": "0"},
    )  # fmt: skip
    assert "THP_MEM_ALLOC_ENABLE=0, as set by the caller" in opted_out.stdout


def test_quiet_keeps_progress_off_stdout_and_errors_on_stderr(capsys, tmp_path, model_file):
    song = write_wav(tmp_path / "song.wav", noise(0.3))
    separate = ["separate", str(song), "-n", str(model_file), "-o"]
    code, out, err = run(capsys, *separate, str(tmp_path / "a"))
    assert code == 0 and "song" in out
    code, out, err = run(capsys, "-q", *separate, str(tmp_path / "b"))
    assert code == 0 and out == ""
    code, out, err = run(capsys, "-q", *separate, str(tmp_path / "b"))
    assert_one_line_error(code, err, "already exists")
