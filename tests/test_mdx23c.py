"""MDX23C specifics: parity with MSST's TFC_TDF_net (through the checkpoint key mapping) at
non-default settings, any input length, the valid-length rule, the MSST configuration reader,
and bad settings."""

from __future__ import annotations

import pytest
import torch

from sepzoo.convert import rename_state
from sepzoo.convert.msst_mdx23c import MODEL_KEYS, MsstConfigError, kwargs_from_msst, rename_msst_key
from sepzoo.errors import CheckpointError, ConfigError
from sepzoo.models import count_parameters, create_model, get_model_class
from sepzoo.models.mdx23c import MDX23C
from tests.parity import randomize, relative_error

tfc_tdf_v3 = pytest.importorskip("audio_separator.separator.uvr_lib_v5.tfc_tdf_v3")
ml_collections = pytest.importorskip("ml_collections")

# audio-separator's STFT asks torch for real-valued output, which torch warns is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:stft with return_complex=False:UserWarning")

TINY = MDX23C.test_kwargs

# MSST's configs/config_musdb18_mdx23c.yaml, the sections that describe the network.
MUSDB_CONFIG = {
    "audio": {
        "chunk_size": 261120,
        "dim_f": 4096,
        "dim_t": 256,
        "hop_length": 1024,
        "n_fft": 8192,
        "num_channels": 2,
        "sample_rate": 44100,
        "min_mean_abs": 0.001,
    },
    "model": {
        "act": "gelu",
        "bottleneck_factor": 4,
        "growth": 128,
        "norm": "InstanceNorm",
        "num_blocks_per_scale": 2,
        "num_channels": 128,
        "num_scales": 5,
        "num_subbands": 4,
        "scale": [2, 2],
    },
    "training": {"instruments": ["vocals", "bass", "drums", "other"], "target_instrument": None, "lr": 9e-5},
}


def msst_config(
    instruments=("vocals", "bass", "drums", "other"),
    target_instrument=None,
    audio_channels=2,
    n_fft=256,
    hop_length=32,
    dim_f=64,
    **model,
) -> dict:
    model = {
        "act": "gelu",
        "bottleneck_factor": 2,
        "growth": 4,
        "norm": "InstanceNorm",
        "num_blocks_per_scale": 1,
        "num_channels": 8,
        "num_scales": 2,
        "num_subbands": 4,
        "scale": [2, 2],
        **model,
    }
    return {
        "audio": {
            "n_fft": n_fft,
            "hop_length": hop_length,
            "dim_f": dim_f,
            "num_channels": audio_channels,
            "sample_rate": 44100,
            "chunk_size": hop_length * 31,
        },
        "model": model,
        "training": {"instruments": list(instruments), "target_instrument": target_instrument},
    }


def build_pair(config: dict, seed: int) -> tuple[torch.nn.Module, MDX23C]:
    """The reference with random weights (and random batch-norm statistics), and our model loaded
    from its state dict through the key mapping."""
    torch.manual_seed(seed)
    reference = tfc_tdf_v3.TFC_TDF_net(ml_collections.ConfigDict(config), "cpu")
    randomize(reference, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    for name, buffer in reference.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(0.3 * torch.randn(buffer.shape, generator=generator))
        elif name.endswith("running_var"):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
    ours = create_model("mdx23c", **kwargs_from_msst(config)).eval()
    ours.load_state_dict(
        rename_state(reference.state_dict(), rename_msst_key, ours.state_dict(), "reference")
    )
    return reference, ours


PARITY_CASES = {
    "four stems, 4 sub-bands, instance norm, gelu": msst_config(),
    "single target, mono, 2 sub-bands, 3 scales, batch norm, elu": msst_config(
        target_instrument="vocals",
        audio_channels=1,
        num_subbands=2,
        num_scales=3,
        num_blocks_per_scale=2,
        growth=3,
        bottleneck_factor=1,
        norm="BatchNorm",
        act="elu0.5",
    ),
    "two stems, [4, 2] scale, group norm, relu": msst_config(
        instruments=("vocals", "other"),
        n_fft=128,
        hop_length=16,
        dim_f=64,
        num_subbands=2,
        scale=[4, 2],
        num_channels=6,
        growth=6,
        bottleneck_factor=4,
        norm="GroupNorm2",
        act="relu",
    ),
    "three stems, no norm, 4 sub-bands, [2, 4] scale": msst_config(
        instruments=("drums", "bass", "other"),
        n_fft=512,
        hop_length=64,
        dim_f=256,
        num_scales=2,
        scale=[2, 4],
        num_blocks_per_scale=2,
        growth=0,
        norm=None,
    ),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_matches_msst_tfc_tdf_net(case):
    config = PARITY_CASES[case]
    reference, ours = build_pair(config, seed=len(case))
    length = ours.valid_length(3 * config["audio"]["n_fft"])
    mix = torch.randn(2, ours.audio_channels, length, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = reference(mix)
        actual = ours(mix)
    sources = len(ours.sources)
    if config["training"]["target_instrument"]:
        expected = expected.unsqueeze(1)  # audio-separator drops the stem axis of one target
    # Its inverse STFT always reshapes to two channels; the samples of a mono stem are in order.
    expected = expected.reshape(2, sources, ours.audio_channels, length)
    assert actual.shape == expected.shape
    for stem in range(sources):
        error = relative_error(actual[:, stem], expected[:, stem])
        assert error <= 1e-5, f"{ours.sources[stem]}: relative error {error:.2e}"


def test_a_wrong_mapping_breaks_parity():
    reference, ours = build_pair(PARITY_CASES["four stems, 4 sub-bands, instance norm, gelu"], seed=5)

    def swapped_convolutions(key: str) -> str | None:
        # tfc1 and tfc2 of the first encoder layer have the same shapes: only the names tell them apart.
        if key.startswith("encoder_blocks.0.tfc_tdf.blocks.0.tfc"):
            key = key.replace(".tfc1.", ".swap.").replace(".tfc2.", ".tfc1.").replace(".swap.", ".tfc2.")
        return rename_msst_key(key)

    ours.load_state_dict(
        rename_state(reference.state_dict(), swapped_convolutions, ours.state_dict(), "reference")
    )
    mix = torch.randn(1, 2, ours.valid_length(1000))
    with torch.no_grad():
        assert relative_error(ours(mix), reference(mix)) > 1e-2


def test_the_mapping_covers_every_key_at_msst_musdb_size():
    with torch.device("meta"):
        reference = tfc_tdf_v3.TFC_TDF_net(ml_collections.ConfigDict(MUSDB_CONFIG), "cpu")
        ours = create_model("mdx23c", **kwargs_from_msst(MUSDB_CONFIG))
    expected = ours.state_dict()
    renamed = {rename_msst_key(key): value for key, value in reference.state_dict().items()}
    assert set(renamed) == set(expected)
    assert all(renamed[key].shape == expected[key].shape for key in expected)
    assert count_parameters("mdx23c") == sum(p.numel() for p in reference.parameters())


def test_unmappable_keys_are_named():
    assert rename_msst_key("stft.window") is None
    assert rename_msst_key("encoder_blocks.0.tfc_tdf.blocks.0.tfc3.2.weight") is None
    assert rename_msst_key("first_conv.weight") == "input_conv.weight"
    assert rename_msst_key("decoder_blocks.1.tfc_tdf.blocks.0.tdf.5.weight") == (
        "decoders.1.tfc_tdf.layers.0.tdf.5.weight"
    )
    ours = create_model("mdx23c", **TINY)
    with pytest.raises(CheckpointError, match="nothing maps to: input_conv.weight"):
        rename_state({}, rename_msst_key, ours.state_dict(), "model.ckpt")
    with pytest.raises(CheckpointError, match="cannot map: module.first_conv.weight"):
        rename_state({"module.first_conv.weight": torch.zeros(1)}, rename_msst_key, ours.state_dict(), "x")


# Any length, and the valid lengths.


def test_any_length_is_padded_to_a_valid_one_and_cut_back():
    torch.manual_seed(0)
    model = MDX23C(**TINY).eval()
    mix = torch.randn(1, 2, 333)
    valid = model.valid_length(333)
    with torch.no_grad():
        short = model(mix)
        padded = model(torch.nn.functional.pad(mix, (0, valid - 333)))
    assert short.shape == (1, 4, 2, 333)
    torch.testing.assert_close(short, padded[..., :333], rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs", [TINY, {**TINY, "scale": [4, 2], "hop_length": 8}, {**TINY, "num_scales": 1, "scale": [3, 2]}]
)
def test_valid_lengths_are_whole_hops_and_whole_multiples_of_the_frame_step(kwargs):
    model = MDX23C(**kwargs)
    hop, step = model.hop_length, model.scale[0] ** model.num_scales
    valid_lengths = sorted({model.valid_length(length) for length in range(1, 1500)})
    for valid in valid_lengths:
        assert valid % hop == 0 and (valid // hop + 1) % step == 0
        assert valid > model.n_fft // 2
        assert model.valid_length(valid) == valid
    # No valid length is skipped: consecutive ones are one frame step apart.
    assert all(b - a == hop * step for a, b in zip(valid_lengths, valid_lengths[1:]))
    assert model.valid_length(valid_lengths[0] + 1) == valid_lengths[1]


def test_msst_musdb_chunk_is_a_valid_length_and_the_default_segment():
    model_class = get_model_class("mdx23c")
    kwargs = kwargs_from_msst(MUSDB_CONFIG)
    with torch.device("meta"):
        model = model_class(**kwargs)
        default = model_class()
    assert model.segment_length == default.segment_length == 261120
    assert model.valid_length(261120) == 261120
    assert model.valid_length(261119) == 261120
    assert model.valid_length(261121) == 261120 + 32 * 1024
    assert model.valid_length(1) == 1024 * 31


# The MSST configuration.


def test_kwargs_from_the_msst_musdb_config():
    kwargs = kwargs_from_msst(MUSDB_CONFIG)
    assert kwargs == {
        "sources": ["vocals", "bass", "drums", "other"],
        "n_fft": 8192,
        "hop_length": 1024,
        "dim_f": 4096,
        "num_subbands": 4,
        "num_scales": 5,
        "scale": [2, 2],
        "num_blocks_per_scale": 2,
        "num_channels": 128,
        "growth": 128,
        "bottleneck_factor": 4,
        "norm": "InstanceNorm",
        "act": "gelu",
        "sample_rate": 44100,
        "audio_channels": 2,
        "segment": 261120 / 44100,
    }
    # Without chunk_size, dim_t frames set the segment; a target instrument makes one stem.
    audio = {key: value for key, value in MUSDB_CONFIG["audio"].items() if key != "chunk_size"}
    training = {"instruments": ["vocals", "other"], "target_instrument": "vocals"}
    kwargs = kwargs_from_msst({**MUSDB_CONFIG, "audio": audio, "training": training})
    assert kwargs["segment"] == 261120 / 44100 and kwargs["sources"] == ["vocals"]


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (("model", "num_chanels", 8), ["model.num_chanels", "did you mean 'model.num_channels'"]),
        (("model", "dropout", 0.1), ["unknown key model.dropout for mdx23c"]),
        (("model", "growth", None), ["model.growth is missing"]),
        (("audio", "n_fft", None), ["audio.n_fft is missing"]),
        (("training", "instruments", None), ["training.instruments"]),
    ],
)
def test_bad_msst_configs_name_the_key(change, fragments):
    section, key, value = change
    config = {name: dict(values) for name, values in MUSDB_CONFIG.items()}
    config[section][key] = value
    with pytest.raises(ValueError) as info:
        kwargs_from_msst(config)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, MsstConfigError)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert sorted(MODEL_KEYS) == sorted(MUSDB_CONFIG["model"])


# Bad settings.


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"norm": "LayerNorm"}, ["norm must be", "'LayerNorm'"]),
        ({"norm": "GroupNorm"}, ["norm must be", "'GroupNorm'"]),
        ({"norm": "GroupNorm3"}, ["norm 'GroupNorm3'", "do not split into 3 groups"]),
        ({"act": "swish"}, ["act must be", "'swish'"]),
        ({"act": "elux"}, ["act must be", "'elux'"]),
        ({"dim_f": 40}, ["dim_f must be at most n_fft // 2 + 1 = 33", "40"]),
        ({"dim_f": 30}, ["dim_f must divide by", "= 8", "30"]),
        ({"bottleneck_factor": 5}, ["bottleneck_factor must be at most 4", "5"]),
        ({"scale": [2]}, ["scale must be [time, frequency]"]),
        ({"scale": [2, 0]}, ["scale[1] must be a positive integer", "0"]),
        ({"num_scales": 0}, ["num_scales must be a positive integer"]),
        ({"growth": -1}, ["growth must be a non-negative integer", "-1"]),
        ({"hop_length": 40}, ["hop_length"]),
    ],
)
def test_bad_settings_fail_at_construction_in_one_line(overrides, fragments):
    with pytest.raises(ValueError) as info:
        MDX23C(**{**TINY, **overrides})
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("act", ["elu", "elu1.0", "elu0.25"])
def test_elu_activations_with_and_without_alpha(act):
    model = MDX23C(**{**TINY, "act": act})
    alpha = float(act[3:] or 1.0)
    assert model.output_conv[1].alpha == alpha
