"""BS-RoFormer and Mel-RoFormer: parity with the reference ``BSRoformer`` and ``MelBandRoformer``
of audio-separator (MSST format) through the MSST configuration and key mapping, the mel bands
against librosa, the rotary embedding against rotary-embedding-torch, bad configurations, and
outputs of any length."""

from __future__ import annotations

import inspect
import math

import librosa
import numpy as np
import pytest
import torch
import yaml
from audio_separator.separator.uvr_lib_v5.roformer.bs_roformer import BSRoformer as ReferenceBSRoformer
from audio_separator.separator.uvr_lib_v5.roformer.mel_band_roformer import (
    MelBandRoformer as ReferenceMelBandRoformer,
)
from audio_separator.separator.uvr_lib_v5.roformer.rotary import rotate_queries_or_keys
from ml_collections import ConfigDict
from parity import randomize, relative_error
from rotary_embedding_torch import RotaryEmbedding as ReferenceRotaryEmbedding

from sepzoo.convert import rename_state
from sepzoo.convert.msst_roformer import kwargs_from_msst, rename_msst_key
from sepzoo.errors import CheckpointError
from sepzoo.models import create_model, get_model_class
from sepzoo.models._roformer_layers import RotaryEmbedding
from sepzoo.models.bs_roformer import PAPER_FREQS_PER_BANDS, BSRoformer
from sepzoo.models.mel_band_roformer import MelBandRoformer, mel_bands, slaney_mel_filterbank

REFERENCES = {"bs_roformer": ReferenceBSRoformer, "mel_band_roformer": ReferenceMelBandRoformer}

# Every option away from its default: two- and three-layer transformers, heads of odd width,
# a window shorter than the FFT, the normalised STFT, odd band widths, deep and shallow mask MLPs.
CASES = {
    "bs stereo, 2 stems": (
        "bs_roformer",
        {
            "dim": 12,
            "depth": 2,
            "stereo": True,
            "num_stems": 2,
            "time_transformer_depth": 2,
            "freq_transformer_depth": 1,
            "freqs_per_bands": (3, 5, 7, 9, 9),
            "dim_head": 6,
            "heads": 3,
            "attn_dropout": 0.1,
            "ff_dropout": 0.2,
            "mask_estimator_depth": 3,
            "mlp_expansion_factor": 2,
            "stft_n_fft": 64,
            "stft_hop_length": 16,
            "stft_win_length": 48,
            "stft_normalized": True,
            "zero_dc": False,
            "skip_connection": True,
            "multi_stft_hop_size": 32,
        },
        {"instruments": ["vocals", "drums"]},
    ),
    "bs mono, 1 stem": (
        "bs_roformer",
        {
            "dim": 8,
            "depth": 1,
            "stereo": False,
            "num_stems": 1,
            "time_transformer_depth": 1,
            "freq_transformer_depth": 2,
            "freqs_per_bands": (1, 2, 3, 4, 7),
            "dim_head": 5,
            "heads": 2,
            "mask_estimator_depth": 1,
            "mlp_expansion_factor": 3,
            "stft_n_fft": 32,
            "stft_hop_length": 8,
            "stft_win_length": 32,
            "flash_attn": False,
        },
        {"instruments": ["vocals", "bass", "drums", "other"], "target_instrument": "bass"},
    ),
    "mel stereo, 3 stems": (
        "mel_band_roformer",
        {
            "dim": 12,
            "depth": 2,
            "stereo": True,
            "num_stems": 3,
            "time_transformer_depth": 1,
            "freq_transformer_depth": 2,
            "num_bands": 7,
            "dim_head": 8,
            "heads": 2,
            "mask_estimator_depth": 2,
            "mlp_expansion_factor": 2,
            "sample_rate": 16000,
            "stft_n_fft": 64,
            "stft_hop_length": 16,
            "stft_win_length": 64,
            "linear_transformer_depth": 0,
        },
        {"instruments": ["vocals", "drums", "other"]},
    ),
    "mel mono, 1 stem": (
        "mel_band_roformer",
        {
            "dim": 8,
            "depth": 1,
            "stereo": False,
            "num_stems": 1,
            "time_transformer_depth": 2,
            "freq_transformer_depth": 1,
            "num_bands": 5,
            "dim_head": 3,
            "heads": 3,
            "mask_estimator_depth": 0,
            "sample_rate": 44100,
            "stft_n_fft": 64,
            "stft_hop_length": 12,
            "stft_win_length": 48,
            "stft_normalized": True,
            "match_input_audio_length": False,
        },
        {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
    ),
}


def msst_config(model: dict, training: dict, **audio) -> dict:
    sample_rate = model.get("sample_rate", 44100)
    channels = 2 if model.get("stereo") else 1
    return {
        "audio": {"chunk_size": 8192, "num_channels": channels, "sample_rate": sample_rate, **audio},
        "model": dict(model),
        "training": dict(training),
    }


def reference_kwargs(model: dict) -> dict:
    skip = {"linear_transformer_depth"}
    return {key: value for key, value in model.items() if key not in skip}


@pytest.mark.parametrize("case", list(CASES))
def test_converted_reference_computes_the_same_stems(case):
    model_type, model, training = CASES[case]
    torch.manual_seed(0)
    reference = randomize(REFERENCES[model_type](**reference_kwargs(model)), seed=1)
    config = ConfigDict(msst_config(model, training))
    ours = create_model(model_type, **kwargs_from_msst(model_type, config)).eval()
    state = rename_state(reference.state_dict(), rename_msst_key, ours.state_dict(), case)
    ours.load_state_dict(state)

    hop = model["stft_hop_length"]
    mix = torch.randn(2, ours.audio_channels, 7 * hop, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(mix)
        got = ours(mix)
    if model["num_stems"] == 1:
        expected = expected.unsqueeze(1)
    assert got.shape == expected.shape == (2, len(ours.sources), ours.audio_channels, mix.shape[-1])
    for stem in range(got.shape[1]):
        assert relative_error(got[:, stem], expected[:, stem]) <= 1e-5, ours.sources[stem]


def test_parity_fails_when_a_band_mlp_is_swapped():
    model_type, model, training = CASES["bs stereo, 2 stems"]
    torch.manual_seed(0)
    reference = randomize(REFERENCES[model_type](**reference_kwargs(model)), seed=1)
    ours = create_model(model_type, **kwargs_from_msst(model_type, msst_config(model, training))).eval()
    state = rename_state(reference.state_dict(), rename_msst_key, ours.state_dict(), "reference")
    # Bands 3 and 4 have the same width, so their weights fit each other's places.
    for suffix in ("0.weight", "1.weight", "1.bias"):
        key3, key4 = f"band_split.projections.3.{suffix}", f"band_split.projections.4.{suffix}"
        state[key3], state[key4] = state[key4], state[key3]
    ours.load_state_dict(state)
    mix = torch.randn(1, 2, 7 * 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert relative_error(ours(mix)[:, 0], reference(mix)[:, 0]) > 1e-3


# The rotary embedding.


@pytest.mark.parametrize("dim_head", [4, 5, 64])
def test_rotary_embedding_matches_rotary_embedding_torch(dim_head):
    theirs = ReferenceRotaryEmbedding(dim=dim_head)
    ours = RotaryEmbedding(dim_head)
    assert torch.equal(ours.freqs, theirs.freqs)
    queries = torch.randn(2, 3, 37, dim_head, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ours(queries), rotate_queries_or_keys(theirs, queries), rtol=0, atol=1e-6)
    assert torch.equal(ours(queries)[..., 0, :], queries[..., 0, :])


# Mel bands.


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "num_bands"),
    [(44100, 2048, 60), (44100, 2048, 128), (48000, 1024, 40), (16000, 64, 7), (22050, 4096, 256)],
)
def test_mel_filterbank_and_bands_equal_librosas(sample_rate, n_fft, num_bands):
    theirs = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=num_bands)
    assert np.array_equal(slaney_mel_filterbank(sample_rate, n_fft, num_bands), theirs)
    theirs[0, 0] = 1.0
    theirs[-1, -1] = 1.0
    expected = [np.flatnonzero(row > 0).tolist() for row in theirs]
    assert mel_bands(sample_rate, n_fft, num_bands) == expected


def test_mel_bands_equal_the_reference_models():
    reference = ReferenceMelBandRoformer(dim=8, depth=1, num_bands=60, sample_rate=44100)
    expected = [torch.nonzero(row).flatten().tolist() for row in reference.freqs_per_band]
    bands = mel_bands(44100, 2048, 60)
    assert bands == expected
    assert bands[0][0] == 0 and bands[-1][-1] == 1024
    assert any(set(low) & set(high) for low, high in zip(bands[:-1], bands[1:]))  # they overlap


def test_mel_bands_depend_on_the_sample_rate():
    assert mel_bands(44100, 2048, 60) != mel_bands(48000, 2048, 60)
    model = MelBandRoformer(**{**MelBandRoformer.test_kwargs, "sample_rate": 16000})
    assert model.band_bins.tolist() == [b for band in mel_bands(16000, 64, 6) for b in band]


# Configurations.


def test_kwargs_of_msst_musdb_configuration():
    config = yaml.safe_load(MSST_BS_ROFORMER_MUSDB)
    kwargs = kwargs_from_msst("bs_roformer", config)
    assert kwargs["sources"] == ["vocals"]
    assert kwargs["audio_channels"] == 2 and kwargs["sample_rate"] == 44100
    assert kwargs["freqs_per_bands"] == list(PAPER_FREQS_PER_BANDS)
    assert "multi_stft_hop_size" not in kwargs and "flash_attn" not in kwargs
    model = BSRoformer(**kwargs)
    assert model.segment_length == 131584
    # sepzoo's defaults are this configuration
    defaults = {
        name: param.default for name, param in inspect.signature(BSRoformer.__init__).parameters.items()
    }
    for key, value in kwargs.items():
        expected = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
        assert value == expected or math.isclose(value, expected), key


@pytest.mark.parametrize("model_type", list(REFERENCES))
def test_missing_keys_take_the_reference_defaults(model_type):
    config = {"model": {"dim": 8, "depth": 1}, "training": {"instruments": ["vocals"]}}
    kwargs = kwargs_from_msst(model_type, config)
    reference = inspect.signature(REFERENCES[model_type].__init__).parameters
    for key, value in kwargs.items():
        if key in reference and key not in ("dim", "depth"):
            default = reference[key].default
            assert value == (list(default) if isinstance(default, tuple) else default), key
    assert kwargs["audio_channels"] == 1  # the reference's stereo=False
    create_model(model_type, **kwargs)


def config_with(
    model_type: str = "bs_roformer", training: dict | None = None, audio: dict | None = None, **model
):
    _, base, base_training = CASES[
        "bs stereo, 2 stems" if model_type == "bs_roformer" else "mel stereo, 3 stems"
    ]
    config = msst_config(base, base_training if training is None else training)
    config["model"].update(model)
    config["audio"].update(audio or {})
    return config


@pytest.mark.parametrize(
    ("model_type", "change", "message"),
    [
        (
            "bs_roformer",
            {"time_transfomer_depth": 1},
            "model.time_transfomer_depth.*'model.time_transformer_depth'",
        ),
        ("mel_band_roformer", {"num_band": 4}, "model.num_band.*'model.num_bands'"),
        ("mel_band_roformer", {"freqs_per_bands": [1, 32]}, "model.freqs_per_bands"),
        ("bs_roformer", {"freqs_per_bands": [3, 5, 7, 9]}, "model.freqs_per_bands.*33 bins.*got 24"),
        ("bs_roformer", {"linear_transformer_depth": 1}, "model.linear_transformer_depth=1"),
        ("mel_band_roformer", {"linear_transformer_depth": 2}, "model.linear_transformer_depth=2"),
        ("bs_roformer", {"stft_window_fn": "hann"}, "model.stft_window_fn"),
        ("bs_roformer", {"num_stems": 3}, "training.instruments names 2 stem.*model.num_stems is 3"),
        ("bs_roformer", {"stereo": False}, "audio.num_channels is 2.*model.stereo=False"),
        ("mel_band_roformer", {"sample_rate": 44100}, "model.sample_rate .44100.*audio.sample_rate .16000"),
    ],
)
def test_bad_msst_configuration_is_one_line_naming_the_key(model_type, change, message):
    config = config_with(model_type, **change)
    with pytest.raises(ValueError, match=message) as error:
        kwargs_from_msst(model_type, config)
    assert "\n" not in str(error.value)


def test_required_keys_and_outputs_of_a_configuration():
    with pytest.raises(ValueError, match="model.dim is required"):
        kwargs_from_msst("bs_roformer", {"model": {"depth": 1}, "training": {"instruments": ["vocals"]}})
    with pytest.raises(
        ValueError, match=r"target_instrument names 1 stem\(s\) \['vocals'\], but model.num_stems is 2"
    ):
        kwargs_from_msst(
            "bs_roformer", config_with(training={"instruments": ["a", "b"], "target_instrument": "vocals"})
        )
    with pytest.raises(ValueError, match="training.instruments"):
        kwargs_from_msst("bs_roformer", config_with(training={}))
    with pytest.raises(ValueError, match="model_type must be one of bs_roformer, mel_band_roformer"):
        kwargs_from_msst("bs_roformr", config_with())


def test_unmapped_and_missing_keys_are_refused():
    assert rename_msst_key("layers.0.0.layers.0.0.to_qkv.weight") == (
        "blocks.0.time_transformer.layers.0.attention.to_qkv.weight"
    )
    assert rename_msst_key("layers.3.1.layers.2.0.rotary_embed.freqs") == "freq_rotary.freqs"
    assert rename_msst_key("layers.0.0.layers.0.0.temperature") is None
    assert rename_msst_key("stft_window") is None
    model = BSRoformer(**BSRoformer.test_kwargs)
    state = {rename_key_back(key): value for key, value in model.state_dict().items()}
    state["layers.0.2.layers.0.0.temperature"] = torch.ones(2, 1, 1)  # a linear-attention transformer
    with pytest.raises(CheckpointError, match="cannot map: layers.0.2.layers.0.0.temperature"):
        rename_state(state, rename_msst_key, model.state_dict(), "x.ckpt")


def rename_key_back(key: str) -> str:
    """An MSST key of a sepzoo key, for the refusal test (inverse of the table, tested above)."""
    for reference_key in _reference_keys():
        if rename_msst_key(reference_key) == key:
            return reference_key
    raise AssertionError(key)


def _reference_keys() -> list[str]:
    kwargs = BSRoformer.test_kwargs
    reference = ReferenceBSRoformer(
        dim=kwargs["dim"],
        depth=kwargs["depth"],
        stereo=True,
        num_stems=len(kwargs["sources"]),
        time_transformer_depth=1,
        freq_transformer_depth=1,
        freqs_per_bands=tuple(kwargs["freqs_per_bands"]),
        dim_head=kwargs["dim_head"],
        heads=kwargs["heads"],
        mask_estimator_depth=kwargs["mask_estimator_depth"],
        mlp_expansion_factor=kwargs["mlp_expansion_factor"],
        stft_n_fft=kwargs["stft_n_fft"],
        stft_hop_length=kwargs["stft_hop_length"],
        stft_win_length=kwargs["stft_win_length"],
    )
    return list(reference.state_dict())


# The models' own arguments.


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("bs_roformer", {"freqs_per_bands": [3, 4, 9]}, "freqs_per_bands must sum to the 17 bins.*got 16"),
        ("bs_roformer", {"freqs_per_bands": [17]}, "at least two bands"),
        ("bs_roformer", {"freqs_per_bands": [0, 17]}, "positive integers"),
        ("bs_roformer", {"stft_hop_length": 17}, "stft_hop_length must be at most"),
        ("bs_roformer", {"stft_win_length": 33}, "stft_win_length .33. must be at most stft_n_fft .32."),
        ("bs_roformer", {"dim": 0}, "dim must be a positive integer"),
        ("mel_band_roformer", {"num_bands": 40}, "num_bands=40 is too many for stft_n_fft=64"),
        ("mel_band_roformer", {"mask_estimator_depth": -1}, "mask_estimator_depth must be a non-negative"),
        ("mel_band_roformer", {"attn_dropout": 1.0}, "attn_dropout must be in"),
    ],
)
def test_bad_model_arguments_are_one_line_errors(name, change, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, **{**get_model_class(name).test_kwargs, **change})


@pytest.mark.parametrize("name", ["bs_roformer", "mel_band_roformer"])
def test_any_length_gives_that_many_samples(name):
    torch.manual_seed(0)
    model = create_model(name, **get_model_class(name).test_kwargs).eval()
    hop = model.hop_length
    for length in (1, hop - 1, 5 * hop, 5 * hop + 3, 1001):
        mix = torch.randn(1, 2, length)
        with torch.no_grad():
            assert model(mix).shape == (1, 2, 2, length)
    assert model.padded_length(5 * hop) == 5 * hop
    assert model.padded_length(5 * hop + 3) == 6 * hop


MSST_BS_ROFORMER_MUSDB = """
audio:
  chunk_size: 131584
  dim_f: 1024
  dim_t: 256
  hop_length: 512
  n_fft: 2048
  num_channels: 2
  sample_rate: 44100
  min_mean_abs: 0.001
model:
  dim: 192
  depth: 6
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  freqs_per_bands: [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 12, 12, 12, 12, 12, 12, 12, 12, 24, 24, 24, 24, 24, 24, 24, 24, 48, 48, 48,
    48, 48, 48, 48, 48, 128, 129]
  dim_head: 64
  heads: 8
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 1025
  stft_n_fft: 2048
  stft_hop_length: 512
  stft_win_length: 2048
  stft_normalized: false
  mask_estimator_depth: 2
  multi_stft_resolution_loss_weight: 1.0
  multi_stft_resolutions_window_sizes: [4096, 2048, 1024, 512, 256]
  multi_stft_hop_size: 147
  multi_stft_normalized: False
training:
  instruments: [vocals, bass, drums, other]
  target_instrument: vocals
"""
