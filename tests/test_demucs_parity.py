"""Parity with the official `demucs` package: its checkpoints convert, and sepzoo's models return
the same stems for the same weights, alone and through the inference engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from demucs.apply import BagOfModels as OfficialBag
from demucs.apply import apply_model as official_apply_model
from demucs.demucs import Demucs as OfficialDemucs
from demucs.states import load_model as official_load_model
from demucs.states import serialize_model
from omegaconf import OmegaConf
from parity import randomize, relative_error

from sepzoo.convert.demucs import convert_file
from sepzoo.engine.apply import apply_model
from sepzoo.errors import CheckpointError
from sepzoo.models import create_model
from sepzoo.models.bag import BagOfModels
from sepzoo.models.files import load_separator

FOUR = ["drums", "bass", "other", "vocals"]
SIX = ["drums", "bass", "other", "vocals", "guitar", "piano"]

DEMUCS_SETTINGS = {
    "v3-small": dict(sources=FOUR, channels=8, depth=4),
    "two-sources-both-branches": dict(
        sources=["vocals", "accompaniment"], channels=8, depth=4, dconv_mode=3, dconv_attn=3, dconv_lstm=2,
        norm_starts=2, lstm_layers=2,
    ),
    "six-sources-v2-paper": dict(
        sources=SIX, channels=8, depth=3, lstm_layers=2, context=3, gelu=False, norm_starts=1000,
        dconv_mode=0, normalize=False,
    ),
    "relu-no-rewrite-no-resample": dict(
        sources=FOUR, channels=6, depth=3, glu=False, rewrite=False, resample=False, growth=1.5,
        dconv_depth=-2, dconv_comp=2, stride=2, kernel_size=6, samplerate=22050, segment=3,
    ),
}  # fmt: skip


def save_package(model: torch.nn.Module, path: Path, half: bool = False) -> Path:
    torch.save(serialize_model(model, OmegaConf.create({}), half=half), path)
    return path


def official_demucs(settings: dict, seed: int = 0) -> OfficialDemucs:
    torch.manual_seed(seed)
    return randomize(OfficialDemucs(**settings), seed)


@pytest.mark.parametrize("name", list(DEMUCS_SETTINGS))
def test_demucs_matches_the_official_model(name, tmp_path):
    theirs = official_demucs(DEMUCS_SETTINGS[name])
    ours = convert_file(save_package(theirs, tmp_path / "model.th")).eval()
    assert ours.registry_name == "demucs" and ours.sources == DEMUCS_SETTINGS[name]["sources"]
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    for length in (4000, 12345, 30000):
        mix = torch.randn(2, 2, length)
        with torch.no_grad():
            assert relative_error(ours(mix), theirs(mix)) <= 1e-4, length
    theirs.double()
    ours.double()
    mix = torch.randn(1, 2, 7777, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-9


@pytest.mark.parametrize(
    "settings",
    [dict(sources=FOUR), dict(sources=SIX, channels=48, depth=5, lstm_layers=2, dconv_mode=3)],
)
def test_parameter_counts_equal_the_official_classes(settings):
    arguments = {("sample_rate" if k == "samplerate" else k): v for k, v in settings.items()}
    ours = create_model("demucs", **arguments)
    assert ours.num_parameters() == sum(p.numel() for p in OfficialDemucs(**settings).parameters())


@pytest.mark.parametrize(
    ("length", "segment", "overlap"), [(60000, 0.5, 0.25), (44100, 0.33, 0.5), (9000, 1.0, 0.25)]
)
def test_the_engine_matches_official_apply_model(tmp_path, length, segment, overlap):
    theirs = official_demucs(DEMUCS_SETTINGS["v3-small"])
    ours = convert_file(save_package(theirs, tmp_path / "model.th")).eval()
    mix = torch.randn(1, 2, length)
    expected = official_apply_model(theirs, mix, shifts=0, split=True, overlap=overlap, segment=segment)
    got = apply_model(ours, mix, segment=segment, overlap=overlap, batch_size=3)
    assert relative_error(got, expected) <= 1e-4


def test_half_precision_packages_match_the_official_loader(tmp_path):
    path = save_package(
        official_demucs(DEMUCS_SETTINGS["two-sources-both-branches"]), tmp_path / "half.th", True
    )
    package = torch.load(path, weights_only=False)
    assert all(v.dtype == torch.float16 for v in package["state"].values() if v.is_floating_point())
    theirs = official_load_model(package).eval()
    ours = convert_file(path).eval()
    mix = torch.randn(1, 2, 20000)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-4


def test_a_bag_converts_with_its_weights_and_segment(tmp_path):
    members = [official_demucs(DEMUCS_SETTINGS["v3-small"], seed) for seed in (1, 2)]
    for index, member in enumerate(members):
        save_package(member, tmp_path / f"sig{index}-0123abcd.th")
    weights = [[1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 0.5, 1.0]]
    (tmp_path / "bag.yaml").write_text(
        yaml.safe_dump({"models": ["sig0", "sig1"], "weights": weights, "segment": 0.4})
    )
    ours = convert_file(tmp_path / "bag.yaml")
    assert isinstance(ours, BagOfModels) and ours.weights == weights
    assert all(member.segment == 0.4 for member in ours.members)
    theirs = OfficialBag(members, weights, segment=0.4)
    mix = torch.randn(1, 2, 30000)
    expected = official_apply_model(theirs, mix, shifts=0, split=True, overlap=0.25)
    assert relative_error(apply_model(ours.eval(), mix), expected) <= 1e-4


def test_cli_converts_and_the_model_file_separates(tmp_path):
    source = save_package(official_demucs(DEMUCS_SETTINGS["v3-small"]), tmp_path / "model.th")
    out = tmp_path / "converted.sepzoo"
    command = [sys.executable, "-m", "sepzoo.cli.main", "convert", "demucs", str(source), str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "demucs" in done.stdout and "drums, bass, other, vocals" in done.stdout
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
    model = load_separator(out).eval()
    direct = convert_file(source).eval()
    mix = torch.randn(1, 2, 5000)
    with torch.no_grad():
        torch.testing.assert_close(model(mix), direct(mix), rtol=0, atol=0)


# -- bad input ------------------------------------------------------------------------------------


def test_an_unknown_class_is_refused_by_name(tmp_path):
    package = serialize_model(official_demucs(DEMUCS_SETTINGS["v3-small"]), OmegaConf.create({}), half=False)
    package["klass"] = torch.nn.Linear
    torch.save(package, tmp_path / "linear.th")
    with pytest.raises(CheckpointError, match=r"torch\.nn\.modules\.linear\.Linear, which is not allowed"):
        convert_file(tmp_path / "linear.th")


def test_a_package_pickling_another_global_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    package = serialize_model(official_demucs(DEMUCS_SETTINGS["v3-small"]), OmegaConf.create({}), half=False)
    package["training_args"] = {"hook": _Payload(str(marker))}
    torch.save(package, tmp_path / "evil.th")
    with pytest.raises(CheckpointError, match="not allowed"):
        convert_file(tmp_path / "evil.th")
    assert not marker.exists()


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_truncated_and_unmappable_packages(tmp_path):
    path = save_package(official_demucs(DEMUCS_SETTINGS["v3-small"]), tmp_path / "model.th")
    truncated = tmp_path / "truncated.th"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        convert_file(truncated)
    package = torch.load(path, weights_only=False)
    package["state"]["encoder.0.9.weight"] = torch.zeros(3)
    del package["state"]["encoder.1.0.bias"]
    torch.save(package, tmp_path / "odd.th")
    with pytest.raises(
        CheckpointError, match=r"cannot map: encoder\.0\.9\.weight.*nothing maps to: encoder\.1\.conv\.bias"
    ):
        convert_file(tmp_path / "odd.th")
    package = torch.load(path, weights_only=False)
    package["kwargs"]["chanels"] = 3
    torch.save(package, tmp_path / "typo.th")
    with pytest.raises(CheckpointError, match="unknown argument 'chanels'.*'channels'"):
        convert_file(tmp_path / "typo.th")


def test_a_bag_whose_members_disagree_is_refused(tmp_path):
    save_package(official_demucs(DEMUCS_SETTINGS["v3-small"]), tmp_path / "a.th")
    save_package(official_demucs(DEMUCS_SETTINGS["two-sources-both-branches"]), tmp_path / "b.th")
    (tmp_path / "bag.yaml").write_text(yaml.safe_dump({"models": ["a", "b"]}))
    with pytest.raises(CheckpointError, match="bag.yaml: bag member 1 has sources="):
        convert_file(tmp_path / "bag.yaml")
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump({"models": ["a", "zz"]}))
    with pytest.raises(CheckpointError, match="member 'zz' not found"):
        convert_file(tmp_path / "missing.yaml")
