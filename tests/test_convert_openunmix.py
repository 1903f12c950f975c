"""Open-Unmix model folders converted into sepzoo models compute what ``openunmix`` computes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sepzoo.convert.openunmix import convert_folder, find_targets, rename_key
from sepzoo.errors import CheckpointError

openunmix_model = pytest.importorskip("openunmix.model")
openunmix_utils = pytest.importorskip("openunmix.utils")

SAMPLE_RATE = 16000
N_FFT, HOP, CHANNELS, HIDDEN, MAX_BIN = 512, 128, 2, 16, 100
TARGETS = ["vocals", "drums", "bass"]


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).norm() / reference.norm())


def write_folder(folder: Path, targets: list[str] = TARGETS, seed: int = 0) -> Path:
    """An Open-Unmix folder with random weights, running statistics and input/output scaling."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    for index, target in enumerate(targets):
        network = openunmix_model.OpenUnmix(
            nb_bins=N_FFT // 2 + 1, nb_channels=CHANNELS, hidden_size=HIDDEN, max_bin=MAX_BIN
        )
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.normal_(0.0, 0.3)
            for module in network.modules():
                if isinstance(module, torch.nn.BatchNorm1d):
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 2.0)
        # Both names load_separator accepts: <target>.pth and <target>-<hash>.pth.
        weights = f"{target}-8d7f2c1a.pth" if index == 0 else f"{target}.pth"
        torch.save(network.state_dict(), folder / weights)
        args = {"nfft": N_FFT, "nhop": HOP, "nb_channels": CHANNELS, "hidden_size": HIDDEN, "bandwidth": 6000}
        (folder / f"{target}.json").write_text(json.dumps({"args": args}))
    separator = {"sample_rate": SAMPLE_RATE, "nfft": N_FFT, "nhop": HOP, "nb_channels": CHANNELS}
    (folder / "separator.json").write_text(json.dumps(separator))
    return folder


@pytest.fixture(scope="module")
def umx_folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("umx") / "model")


def reference_separator(folder: Path, **options):
    separator = openunmix_utils.load_separator(str(folder), targets=TARGETS, **options)
    separator.freeze()
    return separator


def mixture(seconds: float = 6.0, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(1, CHANNELS, int(seconds * SAMPLE_RATE), generator=generator)


@pytest.mark.parametrize(
    "options",
    [
        {"niter": 1},  # load_separator's defaults
        {"niter": 2, "residual": True, "wiener_win_len": 40},
        {"niter": 0, "wiener_win_len": None},
    ],
    ids=["defaults", "residual-windows", "masks-only"],
)
def test_the_converted_model_matches_load_separator(umx_folder, options):
    reference = reference_separator(umx_folder, **options)
    ours = convert_folder(
        umx_folder,
        niter=options["niter"],
        wiener_win_len=options.get("wiener_win_len", 300),
        residual=options.get("residual", False),
    ).eval()
    mix = mixture()
    with torch.no_grad():
        expected, got = reference(mix), ours(mix)
    # The reference appends the residual source after the targets; sepzoo keeps the targets.
    assert got.shape == (1, len(TARGETS), CHANNELS, mix.shape[-1])
    for index, target in enumerate(TARGETS):
        error = relative_error(got[0, ours.sources.index(target)], expected[0, index])
        assert error <= 1e-5, f"{target}: {error:.2e}"


def test_every_target_is_taken_musdb_order_first(umx_folder):
    model = convert_folder(umx_folder)
    assert find_targets(umx_folder) == ["drums", "bass", "vocals"] == model.sources
    assert model.sample_rate == SAMPLE_RATE and model.audio_channels == CHANNELS
    assert model.segment is None  # whole tracks, as openunmix separates them
    assert model.max_bin == MAX_BIN


def test_every_layer_has_a_name():
    network = openunmix_model.OpenUnmix(nb_bins=33, nb_channels=1, hidden_size=4, max_bin=20)
    assert all(rename_key(key) is not None for key in network.state_dict())
    assert rename_key("fc1.weight") == "encoder.weight" and rename_key("output_mean") == "output_shift"
    assert rename_key("fc4.weight") is None


def test_transform_constants_are_skipped_and_other_keys_refused(umx_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(umx_folder, folder)
    state = torch.load(folder / "drums.pth")
    state["stft.window"] = torch.hann_window(N_FFT)  # what some releases store
    torch.save(state, folder / "drums.pth")
    convert_folder(folder)
    state["fc4.weight"] = torch.zeros(3, 3)
    torch.save(state, folder / "drums.pth")
    with pytest.raises(CheckpointError, match=r"drums\.pth: cannot map: fc4\.weight"):
        convert_folder(folder)


def test_a_folder_without_separator_json_is_refused_in_one_line(umx_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(umx_folder, folder)
    (folder / "separator.json").unlink()
    with pytest.raises(CheckpointError) as error:
        convert_folder(folder)
    assert str(error.value).count("\n") == 0
    assert "separator.json: no such file" in str(error.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "bass.pth").unlink(), r"no weights for target 'bass'"),
        (lambda f: (f / "bass.json").write_text("{"), r"bass\.json: not a readable JSON file"),
        (
            lambda f: (f / "bass.json").write_text(json.dumps({"args": {"nfft": 1024, "nb_channels": 2}})),
            r"bass\.json: nfft 1024 and nb_channels 2 differ",
        ),
        (lambda f: (f / "separator.json").write_text('{"sample_rate": 16000}'), r"nfft must be an integer"),
        (lambda f: (f / "bass.pth").write_bytes(b"not torch"), r"bass\.pth: not a readable checkpoint"),
    ],
    ids=["no-weights", "bad-json", "other-stft", "incomplete-separator", "not-torch"],
)
def test_damaged_folders_are_refused_naming_the_file(umx_folder, tmp_path, damage, message):
    folder = tmp_path / "model"
    shutil.copytree(umx_folder, folder)
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        convert_folder(folder)


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        convert_folder(tmp_path / "nowhere")


def test_reflection_padding_refuses_inputs_shorter_than_half_a_frame(umx_folder):
    model = convert_folder(umx_folder).eval()
    with pytest.raises(
        ValueError, match=r"reflection padding needs more than n_fft // 2 = 256 samples, got 200"
    ):
        model(torch.zeros(1, CHANNELS, 200))


def test_sepzoo_separate_matches_load_separator_on_a_six_second_file(umx_folder, tmp_path, capsys):
    import soundfile as sf
    from cli_helpers import run

    from sepzoo.models.files import load_separator

    model_file = tmp_path / "umx.sepzoo"
    code, out, err = run(capsys, "convert", "openunmix", str(umx_folder), str(model_file))
    assert code == 0, err
    assert "open_unmix" in out and "sources drums, bass, vocals" in out
    metadata = torch.load(model_file, weights_only=True)["metadata"]
    assert metadata["converted_format"] == "openunmix" and metadata["converted_from"] == str(umx_folder)
    assert load_separator(model_file).wiener_iterations == 1  # openunmix's default --niter

    song = tmp_path / "song.wav"
    sf.write(song, mixture()[0].T.numpy(), SAMPLE_RATE, subtype="FLOAT")
    mix = torch.from_numpy(sf.read(song, dtype="float32")[0].T.copy())[None]
    argv = ["separate", str(song), "-n", str(model_file), "-o", str(tmp_path / "stems")]
    code, _, err = run(capsys, *argv, "--overlap", "0", "--shifts", "0", "--float32", "--clip-mode", "none")
    assert code == 0, err
    with torch.no_grad():
        expected = reference_separator(umx_folder, niter=1)(mix)
    for index, target in enumerate(TARGETS):
        stem = torch.from_numpy(sf.read(tmp_path / "stems" / "song" / f"{target}.wav", dtype="float32")[0].T)
        assert stem.shape == expected[0, index].shape
        error = relative_error(stem, expected[0, index])
        assert error <= 1e-4, f"{target}: {error:.2e}"


def test_the_command_refuses_a_folder_without_separator_json_in_one_line(umx_folder, tmp_path, capsys):
    from cli_helpers import assert_one_line_error, run

    folder = tmp_path / "model"
    shutil.copytree(umx_folder, folder)
    (folder / "separator.json").unlink()
    code, _, err = run(capsys, "convert", "openunmix", str(folder), str(tmp_path / "umx.sepzoo"))
    assert_one_line_error(code, err, "separator.json: no such file")
    assert not (tmp_path / "umx.sepzoo").exists()
    code, _, err = run(
        capsys, "convert", "openunmix", str(umx_folder), str(tmp_path / "m.sepzoo"), "--niter", "-1"
    )
    assert_one_line_error(code, err, "niter must be >= 0, got -1")
