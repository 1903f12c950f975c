"""MSST checkpoints and configs convert into sepzoo models that compute what MSST's classes
compute; the pieces common to every model type are checked here, each type's mapping beside its
model's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sepzoo.convert.msst import convert_checkpoint, read_config, read_state
from sepzoo.errors import CheckpointError, ConfigError

htdemucs_module = pytest.importorskip("demucs.htdemucs")

HTDEMUCS_CONFIG = """\
audio:
  chunk_size: 22050 # samplerate * segment
  min_mean_abs: 0.001
  hop_length: 1024

training:
  batch_size: 8
  segment: 0.5
  shift: 1
  samplerate: 44100
  channels: 2
  normalize: true
  instruments: ['drums', 'bass', 'other', 'vocals']
  target_instrument: null
  use_amp: true

inference:
  num_overlap: 4
  batch_size: 8

model: htdemucs

htdemucs:
  channels: 8
  channels_time:
  growth: 2
  num_subbands: 1
  nfft: 512
  wiener_iters: 0
  end_iters: 0
  wiener_residual: false
  cac: true
  depth: 3
  rewrite: true
  multi_freqs: []
  multi_freqs_depth: 3
  freq_emb: 0.2
  emb_scale: 10
  emb_smooth: true
  kernel_size: 8
  stride: 4
  time_stride: 2
  context: 1
  context_enc: 0
  norm_starts: 4
  norm_groups: 4
  dconv_mode: 3
  dconv_depth: 2
  dconv_comp: 8
  dconv_init: 1e-3
  bottom_channels: 16
  t_layers: 2
  t_hidden_scale: 2.0
  t_heads: 2
  t_dropout: 0.0
  t_layer_scale: True
  t_gelu: True
  t_emb: sin
  t_max_positions: 10000
  t_max_period: 10000.0
  t_weight_pos_embed: 1.0
  t_cape_mean_normalize: True
  t_cape_augment: True
  t_cape_glob_loc_scale: [5000.0, 1.0, 1.4]
  t_sin_random_shift: 0
  t_norm_in: True
  t_norm_in_group: False
  t_group_norm: False
  t_norm_first: True
  t_norm_out: True
  t_weight_decay: 0.0
  t_lr:
  t_sparse_self_attn: False
  t_sparse_cross_attn: False
  t_mask_type: diag
  t_mask_random_seed: 42
  t_sparse_attn_window: 400
  t_global_window: 100
  t_sparsity: 0.95
  t_auto_sparsity: False
  t_cross_first: False
  rescale: 0.1
"""


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).norm() / reference.norm())


def msst_htdemucs(config_text: str = HTDEMUCS_CONFIG, seed: int = 0):
    """The model MSST builds from the config (``models/demucs4ht.py: get_model``): the official
    class with the ``htdemucs`` section and four arguments from ``training``."""
    config = read_config_text(config_text)
    arguments = dict(config["htdemucs"])
    arguments.pop("num_subbands")  # MSST's own class takes it; with 1 it is demucs's
    training = config["training"]
    torch.manual_seed(seed)
    model = htdemucs_module.HTDemucs(
        sources=training["instruments"],
        audio_channels=training["channels"],
        samplerate=training["samplerate"],
        segment=training["segment"],
        **arguments,
    )
    return model.eval()


def read_config_text(text: str) -> dict:
    from omegaconf import OmegaConf  # as MSST reads HT Demucs configs

    return OmegaConf.to_container(OmegaConf.create(text))


@pytest.fixture(scope="module")
def htdemucs_files(tmp_path_factory) -> tuple[Path, Path, torch.nn.Module]:
    folder = tmp_path_factory.mktemp("msst")
    config = folder / "config_htdemucs.yaml"
    config.write_text(HTDEMUCS_CONFIG)
    reference = msst_htdemucs()
    checkpoint = folder / "model_htdemucs.ckpt"
    torch.save(reference.state_dict(), checkpoint)
    return checkpoint, config, reference


def test_msst_htdemucs_converts_through_the_demucs_mapping(htdemucs_files):
    checkpoint, config, reference = htdemucs_files
    model, provenance = convert_checkpoint(checkpoint, config, "htdemucs")
    model.eval()
    assert model.sources == ["drums", "bass", "other", "vocals"] and model.segment == 0.5
    assert provenance["msst_model_type"] == "htdemucs" and len(provenance["msst_config_sha256"]) == 64
    mix = torch.randn(1, 2, 22050, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = reference(mix), model(mix)
    for index in range(4):
        assert relative_error(got[0, index], expected[0, index]) <= 1e-5


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model"])
def test_wrapped_state_dicts_are_read(htdemucs_files, tmp_path, wrapper):
    checkpoint, _, reference = htdemucs_files
    wrapped = tmp_path / "wrapped.ckpt"
    torch.save({wrapper: reference.state_dict(), "epoch": 3}, wrapped)
    assert read_state(wrapped).keys() == reference.state_dict().keys()


def test_python_tuples_in_configs_are_read(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  freqs_per_bands: !!python/tuple\n    - 2\n    - 4\n")
    assert read_config(path) == {"model": {"freqs_per_bands": (2, 4)}}
    path.write_text("model:\n  dconv_init: 1e-3\n  name: 1e3x\n")
    assert read_config(path) == {"model": {"dconv_init": 0.001, "name": "1e3x"}}
    # Other Python tags stay refused: nothing in a config is imported or run.
    path.write_text("model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not a readable YAML file"):
        read_config(path)


def edited(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "config.yaml"
    assert old in HTDEMUCS_CONFIG and not path.exists()
    path.write_text(HTDEMUCS_CONFIG.replace(old, new))
    return path


def test_config_errors_name_the_file_and_key(htdemucs_files, tmp_path):
    checkpoint = htdemucs_files[0]
    cases = [
        ("  num_subbands: 1", "  num_subbands: 2", r"htdemucs\.num_subbands: only 1 converts"),
        (
            "  growth: 2\n",
            "  grwoth: 2\n",
            r"config\.yaml: unknown argument 'grwoth' of the official htdemucs; did you mean 'growth'",
        ),
        ("  samplerate: 44100\n", "", r"training\.samplerate: missing"),
    ]
    for old, new, message in cases:
        config = edited(tmp_path, old, new)
        with pytest.raises((ConfigError, CheckpointError), match=message) as error:
            convert_checkpoint(checkpoint, config, "htdemucs")
        assert str(error.value).count("\n") == 0
        config.unlink()


def test_a_state_dict_with_missing_keys_is_refused_naming_them(htdemucs_files, tmp_path):
    checkpoint, config, reference = htdemucs_files
    state = reference.state_dict()
    del state["freq_emb.embedding.weight"]
    damaged = tmp_path / "damaged.ckpt"
    torch.save(state, damaged)
    with pytest.raises(CheckpointError, match=r"damaged\.ckpt: nothing maps to: .*freq_embedding"):
        convert_checkpoint(damaged, config, "htdemucs")


def test_unknown_model_types_and_files_are_refused(htdemucs_files, tmp_path):
    checkpoint, config, _ = htdemucs_files
    with pytest.raises(ConfigError, match=r"--model-type 'bs_roformers': expected one of bs_roformer"):
        convert_checkpoint(checkpoint, config, "bs_roformers")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: no such file"):
        convert_checkpoint(checkpoint, tmp_path / "nowhere.yaml", "htdemucs")
    not_weights = tmp_path / "list.ckpt"
    torch.save([1, 2], not_weights)
    with pytest.raises(CheckpointError, match=r"list\.ckpt: expected a state dict"):
        convert_checkpoint(not_weights, config, "htdemucs")
