"""SCNet specifics: the band plan, padding to whole hops for any length, the paper's parameter
counts, bad settings, scale equivariance, a tiny overfit, and the mapping of MSST's checkpoint
keys and configuration."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from sepzoo.convert import rename_state
from sepzoo.convert.msst import convert_checkpoint
from sepzoo.convert.msst_scnet import MODEL_KEYS, kwargs_from_msst, rename_msst_key
from sepzoo.errors import CheckpointError
from sepzoo.models import count_parameters, get_model_class
from sepzoo.models.scnet import LARGE_CONFIG, SCNet

TINY = SCNet.test_kwargs


def tiny(**overrides) -> SCNet:
    torch.manual_seed(0)
    return SCNet(**{**TINY, **overrides}).eval()


# MSST's configuration files, model section (configs/config_musdb18_scnet.yaml and
# config_musdb18_scnet_large.yaml), and the sections around it that the conversion reads.
MSST_BASE = {
    "audio": {"chunk_size": 485100, "num_channels": 2, "sample_rate": 44100, "min_mean_abs": 0.0},
    "model": {
        "sources": ["drums", "bass", "other", "vocals"],
        "audio_channels": 2,
        "dims": [4, 32, 64, 128],
        "nfft": 4096,
        "hop_size": 1024,
        "win_size": 4096,
        "normalized": True,
        "band_SR": [0.175, 0.392, 0.433],
        "band_stride": [1, 4, 16],
        "band_kernel": [3, 4, 16],
        "conv_depths": [3, 2, 1],
        "compress": 4,
        "conv_kernel": 3,
        "num_dplayer": 6,
        "expand": 1,
    },
    "training": {"instruments": ["drums", "bass", "other", "vocals"], "target_instrument": None},
}
MSST_LARGE = {
    **MSST_BASE,
    "model": {**MSST_BASE["model"], "dims": [4, 64, 128, 256], "band_SR": [0.225, 0.372, 0.403]},
}
# A small MSST configuration with unequal widths, depths and band counts, so that a mapping that
# swapped decoder blocks, bands or layers would meet a shape it does not fit.
MSST_SMALL_MODEL = {
    "sources": ["vocals", "other"],
    "audio_channels": 2,
    "dims": [4, 8, 12, 16],
    "nfft": 512,
    "hop_size": 128,
    "win_size": 512,
    "band_SR": [0.25, 0.35, 0.4],
    "band_stride": [1, 2, 8],
    "band_kernel": [3, 2, 8],
    "conv_depths": [2, 1, 3],
    "compress": 2,
    "conv_kernel": 5,
    "num_dplayer": 4,
    "expand": 2,
}


def msst_state_shapes(model: dict) -> dict[str, tuple[int, ...]]:
    """Every key of MSST's SCNet state dict with its shape, from the module structure of
    models/scnet/scnet.py and separation.py (defaults as there).

    Encoder block i (``dims[i] -> dims[i + 1]``): one Conv2d per band in ``SDlayer.convs``
    (kernel ``(band_kernel[b], 1)``); per band a ConvolutionModule whose ``layers`` are
    Sequentials of GroupNorm (0), Conv1d to 2h (1), GLU (2), depthwise Conv1d (3), GroupNorm (4),
    Swish (5), Conv1d back (6), ``h = int(C / compress)``; a 3x3 ``globalconv``. Decoder list
    entry k (inserted at the front, so it serves block ``D - 1 - k``): a FusionLayer (a 3x3
    Conv2d on twice the channels) and an SUlayer with one ConvTranspose2d per band (weights
    ``[in, out, kernel, 1]``), whose outermost block outputs ``dims[0] * len(sources)``. The
    separation net: per dual-path layer j (width doubled for odd j), two one-layer BLSTMs, two
    Linear(2H -> C) and two GroupNorms.
    """
    dims = model.get("dims", [4, 32, 64, 128])
    kernels = model.get("band_kernel", [3, 4, 16])
    depths = model.get("conv_depths", [3, 2, 1])
    compress = model.get("compress", 4)
    conv_kernel = model.get("conv_kernel", 3)
    num_sources = len(model.get("sources", ["drums", "bass", "other", "vocals"]))
    shapes: dict[str, tuple[int, ...]] = {}

    def add(prefix: str, weight: tuple[int, ...], bias: int) -> None:
        shapes[f"{prefix}.weight"] = weight
        shapes[f"{prefix}.bias"] = (bias,)

    blocks = len(dims) - 1
    for i in range(blocks):
        c_in, c_out = dims[i], dims[i + 1]
        h = int(c_out / compress)
        for b, kernel in enumerate(kernels):
            add(f"encoder.{i}.SDlayer.convs.{b}", (c_out, c_in, kernel, 1), c_out)
        for b, depth in enumerate(depths):
            for layer in range(depth):
                p = f"encoder.{i}.conv_modules.{b}.layers.{layer}"
                add(f"{p}.0", (c_out,), c_out)
                add(f"{p}.1", (2 * h, c_out, conv_kernel), 2 * h)
                add(f"{p}.3", (h, 1, conv_kernel), h)
                add(f"{p}.4", (h,), h)
                add(f"{p}.6", (c_out, h, 1), c_out)
        add(f"encoder.{i}.globalconv", (c_out, c_out, 3, 3), c_out)
    for k in range(blocks):
        index = blocks - 1 - k
        c_in = dims[index + 1]
        c_out = dims[0] * num_sources if index == 0 else dims[index]
        add(f"decoder.{k}.0.conv", (2 * c_in, 2 * c_in, 3, 3), 2 * c_in)
        for b, kernel in enumerate(kernels):
            add(f"decoder.{k}.1.convtrs.{b}", (c_in, c_out, kernel, 1), c_out)
    for j in range(model.get("num_dplayer", 6)):
        width = dims[-1] * (2 if j % 2 else 1)
        hidden = width * model.get("expand", 1)
        p = f"separation_net.dp_modules.{j}"
        for path in (0, 1):
            for suffix in ("", "_reverse"):
                shapes[f"{p}.lstm_layers.{path}.weight_ih_l0{suffix}"] = (4 * hidden, width)
                shapes[f"{p}.lstm_layers.{path}.weight_hh_l0{suffix}"] = (4 * hidden, hidden)
                shapes[f"{p}.lstm_layers.{path}.bias_ih_l0{suffix}"] = (4 * hidden,)
                shapes[f"{p}.lstm_layers.{path}.bias_hh_l0{suffix}"] = (4 * hidden,)
            add(f"{p}.linear_layers.{path}", (width, 2 * hidden), width)
            add(f"{p}.norm_layers.{path}", (width,), width)
    return shapes


def test_is_registered_as_a_spectrogram_model():
    assert get_model_class("scnet") is SCNet
    assert SCNet.domain == "spectrogram"


# Length handling.


@pytest.mark.parametrize("length", [1, 15, 16, 17, 31, 32, 33, 48, 500, 1024])
def test_any_length_gives_stems_of_that_length(length):
    model = tiny(sources=["vocals", "bass", "drums"])
    with torch.no_grad():
        stems = model(torch.randn(2, 2, length))
    assert list(stems.shape) == [2, 3, 2, length]
    assert torch.isfinite(stems).all()


def test_mono_model_separates_mono():
    model = tiny(audio_channels=1, dims=[2, 8, 8])
    with torch.no_grad():
        assert list(model(torch.randn(1, 1, 777)).shape) == [1, 4, 1, 777]


@pytest.mark.parametrize("length", [1, 5, 16, 33, 100, 1000, 1023, 1024, 1025, 44100])
def test_padding_gives_whole_hops_and_an_even_frame_count(length):
    model = tiny()  # hop 16, nfft 64
    padded = model.padded_length(length)
    assert padded > length and padded % model.hop_size == 0
    assert (padded // model.hop_size + 1) % 2 == 0  # centred frames: one more than the hops
    assert padded > model.nfft // 2  # long enough to reflect half a frame at each end
    if length > model.nfft:
        # As the authors pad: hop - length % hop samples, plus one hop if the hop count is even.
        authors = model.hop_size - length % model.hop_size
        if (length + authors) // model.hop_size % 2 == 0:
            authors += model.hop_size
        assert padded == length + authors


# Structure and the paper's configurations.


def test_band_plan_of_the_papers_first_layer():
    model = SCNet()
    plan = model.encoder[0].downsample.plan
    # 2049 bins: ceil(2049 * 0.175) = 359 low, ceil(2049 * 0.567) = 1162, so 803 mid and 887 high;
    # strides 1, 4, 16 leave 359, ceil(803 / 4) = 201 and ceil(887 / 16) = 56 rows, 616 in all.
    # The second block's 616 rows: 108 low, 242 mid, 266 high, compressed to 108 + 61 + 17 = 186.
    assert plan.sizes == [359, 803, 887]
    assert plan.compressed == [359, 201, 56]
    assert [block.downsample.plan.num_bins for block in model.encoder] == [2049, 616, 186]


def test_parameter_counts_of_the_papers_configurations():
    base = count_parameters("scnet")
    large = count_parameters("scnet", **LARGE_CONFIG)
    # Independently of the module: the sum over MSST's key layout for the same configurations.
    assert base == sum(math.prod(s) for s in msst_state_shapes(MSST_BASE["model"]).values())
    assert large == sum(math.prod(s) for s in msst_state_shapes(MSST_LARGE["model"]).values())
    assert (base, large) == (10_578_768, 42_181_232)


def test_dual_path_fourier_steps_are_inverse():
    network = SCNet(**TINY).dual_path
    x = torch.randn(2, 8, 5, 12)
    spectrum = network._to_frequency(x)
    assert list(spectrum.shape) == [2, 16, 5, 7]
    torch.testing.assert_close(network._to_time(spectrum, 12), x, rtol=1e-5, atol=1e-5)


def test_normalised_input_makes_the_output_scale_with_the_input():
    model = tiny()
    mix = torch.randn(1, 2, 900)
    with torch.no_grad():
        torch.testing.assert_close(model(3 * mix), 3 * model(mix), rtol=1e-4, atol=1e-4)
        unnormalised = tiny(normalize_input=False)
        assert not torch.allclose(unnormalised(3 * mix), 3 * unnormalised(mix), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"dims": [2, 8, 8]}, ["dims must start with 2 * audio_channels = 4", "[2, 8, 8]"]),
        ({"dims": [4]}, ["at least one encoder block"]),
        ({"band_SR": [0.5, 0.6]}, ["band_stride must have one entry per band of band_SR (2)"]),
        ({"band_SR": [0.2, 0.3, 0.4]}, ["band_SR must be positive shares", "sum to 1", "[0.2, 0.3, 0.4]"]),
        ({"band_stride": [1, 0, 4]}, ["band_stride must be positive", "[1, 0, 4]"]),
        ({"conv_depths": [1, 1]}, ["conv_depths must have one entry per band", "[1, 1]"]),
        ({"num_dplayer": 3}, ["num_dplayer must be even", "got 3"]),
        ({"conv_kernel": 4}, ["conv_kernel must be odd", "got 4"]),
        ({"compress": 16}, ["compress must leave at least one channel", "got 16"]),
        ({"hop_size": 80}, ["0 < hop_size <= win_size <= nfft", "hop_size=80"]),
        ({"win_size": 128}, ["win_size=128", "nfft=64"]),
        ({"expand": 0}, ["expand must be a positive integer"]),
        # 33 rows: 10, 1 and 22, compressed to 10 + 1 + 6 = 17; of those, ceil(5.1) = ceil(5.27) = 6.
        (
            {"band_SR": [0.3, 0.01, 0.69]},
            ["band 1 of the 17 frequency rows entering encoder block 1", "no rows"],
        ),
        ({"band_kernel": [3, 2, 1]}, ["band_kernel 1 with band_stride 4", "cannot compress and restore"]),
    ],
)
def test_bad_settings_fail_in_one_line(overrides, fragments):
    with pytest.raises(ValueError) as info:
        SCNet(**{**TINY, **overrides})
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.slow
def test_a_tiny_model_fits_one_example():
    torch.manual_seed(0)
    model = SCNet(**{**TINY, "sources": ["a", "b"]})
    stems = torch.randn(1, 2, 2, 300) * torch.tensor([1.0, 0.3]).view(1, 2, 1, 1)
    mix = stems.sum(dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        optimizer.zero_grad()
        loss = (model(mix) - stems).abs().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::16]


# MSST checkpoints.


def test_every_msst_key_maps_onto_a_key_of_the_same_shape():
    model = SCNet(**kwargs_from_msst({"model": MSST_SMALL_MODEL}))
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    theirs = msst_state_shapes(MSST_SMALL_MODEL)
    mapped = {key: rename_msst_key(key) for key in theirs}
    assert [key for key, target in mapped.items() if target is None] == []
    assert sorted(mapped.values()) == sorted(ours)  # one to one, nothing left over
    for key, target in mapped.items():
        assert ours[target] == theirs[key], f"{key} -> {target}"


def test_an_msst_state_loads_and_gives_the_model_those_weights():
    kwargs = kwargs_from_msst({"model": MSST_SMALL_MODEL})
    generator = torch.Generator().manual_seed(0)
    state = {
        f"module.{key}": torch.randn(shape, generator=generator)
        for key, shape in msst_state_shapes(MSST_SMALL_MODEL).items()
    }
    model = SCNet(**kwargs)
    model.load_state_dict(rename_state(state, rename_msst_key, model.state_dict(), "small.ckpt"))
    assert model.init_kwargs["normalize_input"] is False
    ours = model.state_dict()
    for key, value in state.items():
        assert torch.equal(ours[rename_msst_key(key)], value), key
    assert model.init_kwargs["dims"] == kwargs["dims"]


def test_an_msst_state_that_does_not_fit_is_refused_by_key():
    shapes = msst_state_shapes(MSST_SMALL_MODEL)
    state = {key: torch.zeros(shape) for key, shape in shapes.items()}
    del state["encoder.1.globalconv.bias"]
    state["separation_net.dp_modules.0.lstm_layers.0.weight_ih_l1"] = torch.zeros(1)
    state["decoder.0.0.conv.bias"] = torch.zeros(3)
    model = SCNet(**kwargs_from_msst({"model": MSST_SMALL_MODEL}))
    with pytest.raises(CheckpointError) as info:
        rename_state(state, rename_msst_key, model.state_dict(), "bad.ckpt")
    message = str(info.value)
    assert "cannot map: separation_net.dp_modules.0.lstm_layers.0.weight_ih_l1" in message
    assert "nothing maps to: encoder.1.full_band_conv.bias" in message
    assert "shape mismatch: decoder.0.fusion.conv.bias [3] vs [32]" in message


@pytest.mark.parametrize(
    "key",
    [
        "encoder.0.SDlayer.convs.0.scale",
        "encoder.0.conv_modules.0.layers.0.2.weight",  # the GLU holds no weights
        "separation_net.feature_conversion.0.weight",
        "separation_net.dp_modules.0.lstm_layers.2.weight_ih_l0",
        "decoder.0.2.conv.weight",
        "stft.window",
    ],
)
def test_keys_outside_msst_layout_do_not_map(key):
    assert rename_msst_key(key) is None


def test_msst_configs_give_the_papers_models():
    kwargs = kwargs_from_msst(MSST_BASE)
    assert kwargs["sample_rate"] == 44100 and kwargs["segment"] == 11.0
    assert kwargs["normalize_input"] is False
    assert kwargs["sources"] == ["drums", "bass", "other", "vocals"]
    defaults = {key: value for key, value in SCNet().init_kwargs.items() if key in MODEL_KEYS}
    assert {key: kwargs[key] for key in MODEL_KEYS} == defaults
    assert count_parameters("scnet", **kwargs_from_msst(MSST_LARGE)) == count_parameters(
        "scnet", **LARGE_CONFIG
    )


def test_msst_stem_names_follow_the_training_section():
    vocals_only = {
        "model": {**MSST_SMALL_MODEL, "sources": ["vocals"]},
        "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
    }
    assert kwargs_from_msst(vocals_only)["sources"] == ["vocals"]
    renamed = {"model": MSST_SMALL_MODEL, "training": {"instruments": ["voice", "accompaniment"]}}
    assert kwargs_from_msst(renamed)["sources"] == ["voice", "accompaniment"]
    with pytest.raises(
        ValueError, match=r"target_instrument names 1 stem\(s\) \['vocals'\], but the number of model.sources"
    ):
        kwargs_from_msst({**vocals_only, "model": MSST_SMALL_MODEL})


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        ({"model": {"band_sr": [0.2, 0.3, 0.5]}}, ["model.band_sr", "did you mean 'model.band_SR'?"]),
        ({"model": {"num_dplayers": 6}}, ["model.num_dplayers", "did you mean 'model.num_dplayer'?"]),
        ({"model": {"audio_channels": 2}, "audio": {"num_channels": 1}}, ["audio.num_channels is 1"]),
        ({"model": ["dims"]}, ["model: expected a section (a mapping of keys), got list"]),
    ],
)
def test_bad_msst_configs_fail_in_one_line(config, fragments):
    with pytest.raises(ValueError) as info:
        kwargs_from_msst(config)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_rename_state_accepts_the_mapping_for_the_papers_layout():
    model = SCNet(**{**kwargs_from_msst(MSST_BASE), "dims": [4, 8, 8, 8]})
    shapes = msst_state_shapes({**MSST_BASE["model"], "dims": [4, 8, 8, 8]})
    state = {key: torch.zeros(shape) for key, shape in shapes.items()}
    renamed = rename_state(state, rename_msst_key, model.state_dict(), "paper-layout.ckpt")
    assert set(renamed) == set(model.state_dict())


def test_msst_files_convert_through_the_msst_converter(tmp_path):
    config = {
        "audio": {"chunk_size": 44100, "num_channels": 2, "sample_rate": 44100},
        "model": MSST_SMALL_MODEL,
        "training": {"instruments": ["vocals", "other"], "target_instrument": None},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.randn(shape, generator=generator)
        for key, shape in msst_state_shapes(MSST_SMALL_MODEL).items()
    }
    torch.save(state, tmp_path / "model.ckpt")
    model, provenance = convert_checkpoint(tmp_path / "model.ckpt", tmp_path / "config.yaml", "scnet")
    assert isinstance(model, SCNet) and provenance["msst_model_type"] == "scnet"
    assert model.segment == 1.0 and model.sources == ["vocals", "other"]
    weights = model.state_dict()
    assert all(torch.equal(weights[rename_msst_key(key)], value) for key, value in state.items())
