"""Parity of HT Demucs with the official `demucs.htdemucs.HTDemucs`: converted checkpoints give
the same stems, alone, in float64, through the engine and from half-precision packages; and the
training segment is kept with the model."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch
import yaml
from demucs.apply import BagOfModels as OfficialBag
from demucs.apply import apply_model as official_apply_model
from demucs.htdemucs import HTDemucs as OfficialHTDemucs
from demucs.states import load_model as official_load_model
from demucs.states import serialize_model
from omegaconf import OmegaConf
from parity import randomize, relative_error

from sepzoo.convert.demucs import convert_file
from sepzoo.engine.apply import apply_model
from sepzoo.errors import CheckpointError, SepzooError
from sepzoo.models import create_model
from sepzoo.models.bag import BagOfModels
from sepzoo.models.files import load_model_file, save_model_file

FOUR = ["drums", "bass", "other", "vocals"]
SIX = ["drums", "bass", "other", "vocals", "guitar", "piano"]
SMALL = dict(channels=8, depth=3, nfft=512, t_heads=2, segment=Fraction(1, 2))

HT_SETTINGS = {
    "published-shape": dict(sources=FOUR, bottom_channels=16, t_layers=2, **SMALL),
    "six-sources-post-norm-cross-first": dict(
        sources=SIX, bottom_channels=0, t_layers=3, t_norm_first=False, t_norm_out=False, t_cross_first=True,
        t_layer_scale=False, **SMALL,
    ),
    "two-sources-both-branches-group-norms": dict(
        sources=["vocals", "accompaniment"], bottom_channels=12, t_layers=2, dconv_mode=3, context_enc=1,
        norm_starts=1, t_group_norm=True, t_norm_in_group=True, t_gelu=False, t_hidden_scale=2.0,
        t_weight_pos_embed=0.5, **SMALL,
    ),
    "scaled-embedding-no-rewrite": dict(
        sources=FOUR, bottom_channels=16, t_layers=2, t_emb="scaled", rewrite=False, freq_emb=0.0, **SMALL
    ),
}  # fmt: skip


def official_ht(settings: dict, seed: int = 0) -> OfficialHTDemucs:
    torch.manual_seed(seed)
    model = OfficialHTDemucs(**settings)
    return randomize(model, seed)


def convert(model: OfficialHTDemucs, path, half: bool = False):
    torch.save(serialize_model(model, OmegaConf.create({}), half=half), path)
    return convert_file(path).eval()


@pytest.mark.parametrize("name", list(HT_SETTINGS))
def test_ht_demucs_matches_the_official_model(name, tmp_path):
    theirs = official_ht(HT_SETTINGS[name])
    ours = convert(theirs, tmp_path / "model.th")
    assert ours.registry_name == "htdemucs" and ours.segment == 0.5
    # Every tensor counts, the frozen (unused) norm of post-norm cross-attention layers included.
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    for length in (3000, 12345, 22050):  # shorter than, and equal to, the training segment
        mix = torch.randn(2, 2, length)
        with torch.no_grad():
            assert relative_error(ours(mix), theirs(mix)) <= 1e-4, length
    theirs.double()
    ours.double()
    mix = torch.randn(1, 2, 7777, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-9


@pytest.mark.parametrize("segment", [None, 0.3])
def test_the_engine_matches_official_apply_model(tmp_path, segment):
    theirs = official_ht(HT_SETTINGS["published-shape"])
    ours = convert(theirs, tmp_path / "model.th")
    mix = torch.randn(1, 2, 60000)
    expected = official_apply_model(theirs, mix, shifts=0, split=True, overlap=0.25, segment=segment)
    assert relative_error(apply_model(ours, mix, segment=segment, overlap=0.25), expected) <= 1e-4


def test_half_precision_packages_match_the_official_loader(tmp_path):
    path = tmp_path / "half.th"
    torch.save(
        serialize_model(official_ht(HT_SETTINGS["published-shape"]), OmegaConf.create({}), half=True), path
    )
    theirs = official_load_model(torch.load(path, weights_only=False)).eval()
    ours = convert_file(path).eval()
    mix = torch.randn(1, 2, 20000)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-4


@pytest.mark.parametrize(
    "settings", [dict(sources=FOUR), dict(sources=SIX, bottom_channels=512), dict(sources=FOUR, depth=5)]
)
def test_parameter_counts_equal_the_official_classes(settings):
    ours = create_model("htdemucs", **{"bottom_channels": 0, **settings})
    assert ours.num_parameters() == sum(p.numel() for p in OfficialHTDemucs(**settings).parameters())


def test_the_published_configuration_is_the_default():
    ours = create_model("htdemucs")
    theirs = OfficialHTDemucs(FOUR, bottom_channels=512, segment=Fraction(39, 5))
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    assert ours.segment == pytest.approx(7.8) and ours.training_length == 343980


def test_training_on_other_lengths_keeps_the_training_segment(tmp_path):
    model = create_model("htdemucs", **{**dict(HT_SETTINGS["published-shape"]), "segment": 0.5})
    model.train()
    model(torch.randn(2, 2, 5000)).pow(2).mean().backward()
    assert model.segment == 0.5
    reloaded = load_model_file(save_model_file(model, tmp_path / "ht.sepzoo"))
    assert reloaded.segment == 0.5 and reloaded.training_length == 22050


def test_long_inputs_are_refused_by_the_model_and_chunked_by_the_engine():
    model = create_model("htdemucs", **{**dict(HT_SETTINGS["published-shape"]), "segment": 0.5}).eval()
    mix = torch.randn(1, 2, 50000)
    with torch.no_grad(), pytest.raises(ValueError, match=r"at most 22050 samples at once .* got 50000"):
        model(mix)
    chunked = apply_model(model, mix)
    with torch.no_grad():
        first = model(mix[..., :22050])
    assert chunked.shape == (1, 4, 2, 50000)
    assert relative_error(chunked[..., :10000], first[..., :10000]) <= 1e-4
    with pytest.raises(SepzooError, match=r"segment 0.8 s is longer than htdemucs accepts \(0.5 s"):
        apply_model(model, mix, segment=0.8)


def test_a_bag_of_ht_models_keeps_their_segment_unless_shorter(tmp_path):
    members = [official_ht(HT_SETTINGS["published-shape"], seed) for seed in (1, 2)]
    for index, member in enumerate(members):
        torch.save(serialize_model(member, OmegaConf.create({}), half=False), tmp_path / f"m{index}.th")
    weights = [[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]]
    (tmp_path / "long.yaml").write_text(
        yaml.safe_dump({"models": ["m0", "m1"], "weights": weights, "segment": 2})
    )
    bag = convert_file(tmp_path / "long.yaml")
    assert isinstance(bag, BagOfModels) and all(member.segment == 0.5 for member in bag.members)
    (tmp_path / "short.yaml").write_text(yaml.safe_dump({"models": ["m0", "m1"], "segment": 0.4}))
    assert all(member.segment == 0.4 for member in convert_file(tmp_path / "short.yaml").members)
    theirs = OfficialBag(members, weights, segment=2)
    mix = torch.randn(1, 2, 40000)
    expected = official_apply_model(theirs, mix, shifts=0, split=True, overlap=0.25)
    assert relative_error(apply_model(bag.eval(), mix), expected) <= 1e-4


def test_sparse_attention_packages_are_refused(tmp_path):
    package = serialize_model(official_ht(HT_SETTINGS["published-shape"]), OmegaConf.create({}), half=False)
    package["kwargs"]["t_sparse_self_attn"] = True
    torch.save(package, tmp_path / "sparse.th")
    with pytest.raises(CheckpointError, match="t_sparse_self_attn=True is not supported"):
        convert_file(tmp_path / "sparse.th")


def test_a_converted_model_evaluates_and_fine_tunes(tmp_path, toy_root):
    from sepzoo.cli.main import main
    from sepzoo.training.train import train

    ours = convert(official_ht(HT_SETTINGS["published-shape"]), tmp_path / "ht.th")
    model_file = save_model_file(ours, tmp_path / "ht.sepzoo")
    assert main(["eval", "-n", str(model_file), "--root", str(toy_root), "-o", str(tmp_path / "eval")]) == 0
    assert len(list((tmp_path / "eval" / "test").glob("*.json"))) == 2

    model_settings = {
        k: v for k, v in ours.init_kwargs.items() if k not in ("sources", "sample_rate", "audio_channels")
    }
    recipe = tmp_path / "finetune.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "extends": str(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"),
                "model": {"name": "htdemucs", **model_settings},
                "data": {"name": "musdb", "root": str(toy_root), "segment": 0.5, "batch_size": 2,
                         "num_workers": 0, "samples_per_epoch": 4, "valid": "train-tail",
                         "valid_max_seconds": 1.0},
                "trainer": {"max_steps": 2, "accelerator": "cpu", "precision": "32-true",
                            "enable_progress_bar": False},
                "train": {"init_from": str(model_file), "audio_examples": 0},
                "logger": {"name": "csv"},
                "run": {"root": str(tmp_path / "runs")},
            }
        )
    )  # fmt: skip
    run_dir = train(recipe)
    tuned = load_model_file(save_model_file(load_separator_from(run_dir), tmp_path / "tuned.sepzoo"))
    assert tuned.segment == 0.5
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, ours.state_dict()[k])]
    assert changed, "two steps of fine-tuning moved the weights"


def load_separator_from(run_dir):
    from sepzoo.models.files import load_separator

    return load_separator(run_dir / "checkpoints" / "last.ckpt")
