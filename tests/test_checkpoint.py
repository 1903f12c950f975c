"""Model files and safe loading: every registered model round-trips through a model file, and
damaged, foreign or malicious files are refused with one line, running nothing."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from sepzoo.errors import CheckpointError, OutputExistsError
from sepzoo.models import create_model, get_model_class, list_models
from sepzoo.models.bag import BagOfModels
from sepzoo.models.files import (
    ForeignClass,
    foreign_globals,
    load_model_file,
    load_separator,
    safe_load,
    save_model_file,
)

TRAINABLE = [
    n for n in list_models() if create_model(n, **get_model_class(n).test_kwargs).num_parameters() > 0
]


def tiny(name: str = "conv_tasnet", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model(name, **{**get_model_class(name).test_kwargs, **overrides}).eval()


@pytest.mark.parametrize("name", list_models())
def test_model_file_round_trip_gives_identical_output(name, tmp_path):
    model = tiny(name, seed=1)
    path = save_model_file(model, tmp_path / f"{name}.sepzoo", metadata={"note": "test"})
    content = torch.load(path, weights_only=True)
    assert content["format"] == "sepzoo.model" and content["version"] == 1
    assert content["name"] == name and content["sources"] == model.sources
    assert content["sample_rate"] == model.sample_rate and content["metadata"]["note"] == "test"
    loaded = load_model_file(path).eval()
    mix = torch.randn(2, model.audio_channels, 1234)
    references = (
        torch.randn(2, len(model.sources), model.audio_channels, 1234) if model.needs_references else None
    )
    with torch.no_grad():
        torch.testing.assert_close(loaded(mix, references), model(mix, references), rtol=0, atol=0)


def test_bag_round_trip_keeps_members_and_weights(tmp_path):
    bag = BagOfModels([tiny(seed=1), tiny(seed=2)], weights=[[1, 0, 1, 1], [0, 1, 1, 1]])
    path = save_model_file(bag, tmp_path / "bag.sepzoo")
    loaded = load_separator(path)
    assert isinstance(loaded, BagOfModels) and loaded.weights == bag.weights
    mix = torch.randn(1, 2, 500)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mix), bag(mix))


def test_existing_model_file_is_not_overwritten(tmp_path):
    path = save_model_file(tiny(seed=1), tmp_path / "m.sepzoo")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        save_model_file(tiny(seed=2), path)
    assert path.read_bytes() == before
    save_model_file(tiny(seed=2), path, force=True)
    assert path.read_bytes() != before


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_pickles_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError) as error:
        load_separator(path)
    assert "system" in str(error.value) and "not allowed" in str(error.value)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_raw_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(CheckpointError):
        safe_load(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "text", "directory"])
def test_damaged_files_are_one_line_errors(tmp_path, damage):
    good = save_model_file(tiny(), tmp_path / "good.sepzoo")
    path = tmp_path / "bad.sepzoo"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "text":
        path.write_text("this is not a checkpoint\n")
    else:
        path.mkdir()
    with pytest.raises(CheckpointError) as error:
        load_separator(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message


def test_weights_of_another_model_name_the_keys(tmp_path):
    model = tiny()
    content = torch.load(save_model_file(model, tmp_path / "m.sepzoo"), weights_only=True)
    content["kwargs"] = {**content["kwargs"], "encoder_filters": 12}
    torch.save(content, tmp_path / "other.sepzoo")
    with pytest.raises(
        CheckpointError, match=r"weights do not fit model 'conv_tasnet'.*shape mismatch.*encoder"
    ):
        load_separator(tmp_path / "other.sepzoo")


def test_unregistered_name_and_foreign_checkpoints_are_refused(tmp_path):
    content = torch.load(save_model_file(tiny(), tmp_path / "m.sepzoo"), weights_only=True)
    content["name"] = "conv_tasnett"
    torch.save(content, tmp_path / "renamed.sepzoo")
    with pytest.raises(CheckpointError, match="not registered; did you mean 'conv_tasnet'"):
        load_separator(tmp_path / "renamed.sepzoo")
    torch.save({"state_dict": tiny().state_dict(), "epoch": 3}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="neither a sepzoo model file nor a training checkpoint"):
        load_separator(tmp_path / "foreign.ckpt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a checkpoint dict"):
        load_separator(tmp_path / "list.pt")


def test_unknown_spec_suggests_a_model_name():
    with pytest.raises(CheckpointError, match="not a registered model name; did you mean 'conv_tasnet'"):
        load_separator("conv_tasnt")
    with pytest.raises(CheckpointError, match="trainable model"):
        load_separator("conv_tasnet")


class Placeholder:  # stands for a class of another project, e.g. demucs.htdemucs.HTDemucs
    pass


def test_allow_listed_foreign_classes_load_as_plain_names(tmp_path):
    path = tmp_path / "foreign.th"
    torch.save(
        {"klass": Placeholder, "args": [], "kwargs": {"depth": 4}, "state": {"w": torch.ones(2)}}, path
    )
    qualified = f"{Placeholder.__module__}.Placeholder"
    with pytest.raises(CheckpointError, match=rf"refers to {qualified}, which is not allowed"):
        safe_load(path)
    content = safe_load(path, allowed_globals=foreign_globals([qualified]))
    assert isinstance(content["klass"], ForeignClass) and content["klass"].full_name == qualified
    assert content["kwargs"] == {"depth": 4}
    with pytest.raises(pickle.UnpicklingError, match="only references"):
        content["klass"]()
