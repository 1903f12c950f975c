"""The separator contract, checked for every registered model, and the model registry."""

from __future__ import annotations

import inspect
import uuid

import pytest
import torch
from torch import nn

from sepzoo import DEFAULT_SOURCES
from sepzoo.models import (
    MODELS,
    count_parameters,
    create_model,
    get_model_class,
    list_models,
    register_model,
)
from sepzoo.models.base import Separator
from sepzoo.models.conv_tasnet import ConvTasNet, GlobalLayerNorm, SeparableConvBlock
from sepzoo.registry import DuplicateNameError, UnknownNameError

MODEL_NAMES = list_models()
LENGTHS = [1, 7, 160, 333, 1001]


def build(name: str, seed: int = 0) -> Separator:
    torch.manual_seed(seed)
    model = create_model(name, **get_model_class(name).test_kwargs)
    model.eval()
    return model


def make_inputs(model: Separator, batch: int, length: int, seed: int = 1):
    """A mixture and, for models that need them, reference stems that sum to it."""
    generator = torch.Generator().manual_seed(seed)
    stems = torch.randn(batch, len(model.sources), model.audio_channels, length, generator=generator)
    references = stems if model.needs_references else None
    return stems.sum(dim=1), references


def test_conv_tasnet_is_registered():
    assert "conv_tasnet" in MODEL_NAMES
    assert get_model_class("conv_tasnet") is ConvTasNet


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape_for_any_length(name):
    model = build(name)
    for length in LENGTHS + [model.valid_length(500)]:
        mix, references = make_inputs(model, batch=2, length=length)
        with torch.no_grad():
            stems = model(mix, references)
        expected = [2, len(model.sources), model.audio_channels, length]
        assert list(stems.shape) == expected, f"length {length}"
        assert stems.dtype == mix.dtype


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_valid_length_is_at_least_length_and_idempotent(name):
    model = build(name)
    for length in LENGTHS + [4096, 44101]:
        valid = model.valid_length(length)
        assert isinstance(valid, int)
        assert valid >= length
        assert model.valid_length(valid) == valid


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradient_reaches_every_parameter(name):
    model = build(name)
    if not any(p.requires_grad for p in model.parameters()):
        assert get_model_class(name).domain == "oracle", "only oracles may have nothing to train"
        return
    model.train()
    mix, references = make_inputs(model, batch=2, length=333)
    model(mix, references).pow(2).sum().backward()
    for parameter_name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        assert parameter.grad is not None, f"{parameter_name} gets no gradient"
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} has an all-zero gradient"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rebuild_from_name_kwargs_and_state_dict(name):
    model = build(name, seed=3)
    rebuilt_kwargs = model.init_kwargs
    torch.manual_seed(99)  # different initial weights, so only the state dict can make them equal
    rebuilt = create_model(model.registry_name, **rebuilt_kwargs)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    mix, references = make_inputs(model, batch=1, length=1001)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(mix, references), model(mix, references), rtol=0, atol=0)
    assert rebuilt.init_kwargs == rebuilt_kwargs


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_init_kwargs_records_every_argument(name):
    cls = get_model_class(name)
    model = build(name)
    arguments = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert set(model.init_kwargs) == set(arguments)
    for key, value in cls.test_kwargs.items():
        assert model.init_kwargs[key] == value


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_contract_attributes(name):
    cls = get_model_class(name)
    model = build(name)
    assert cls.registry_name == name
    assert cls.domain in ("waveform", "spectrogram", "hybrid", "oracle")
    assert model.sources and len(set(model.sources)) == len(model.sources)
    assert model.sample_rate > 0
    assert model.audio_channels in (1, 2)
    assert model.num_parameters() == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if not get_model_class(n).needs_references])
def test_batch_items_are_independent(name):
    model = build(name)
    mix, references = make_inputs(model, batch=2, length=1001)
    with torch.no_grad():
        together = model(mix, references)
        alone = model(mix[:1], None)
    torch.testing.assert_close(together[:1], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_silent_input_gives_finite_output(name):
    model = build(name)
    mix = torch.zeros(1, model.audio_channels, 1001)
    references = None
    if model.needs_references:
        references = torch.zeros(1, len(model.sources), model.audio_channels, 1001)
    with torch.no_grad():
        stems = model(mix, references)
    assert torch.isfinite(stems).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_wrong_input_shape_raises_with_the_shape(name):
    model = build(name)
    with pytest.raises(ValueError, match=r"\[1, 3, 100\]"):
        model(torch.zeros(1, 3, 100), None)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_counting_without_weights_matches_a_built_model(name):
    kwargs = get_model_class(name).test_kwargs
    assert count_parameters(name, **kwargs) == build(name).num_parameters()


@pytest.mark.parametrize("name", ["bsrnn", "conv_tasnet", "hdemucs", "htdemucs", "open_unmix"])
def test_counting_at_default_size_matches_a_built_model(name):
    # Default sizes are what ``sepzoo models`` lists; the demucs family's defaults also take the
    # initialisation paths (weight rescaling, the smooth frequency embedding) that counting skips.
    assert count_parameters(name) == create_model(name).num_parameters()


def test_counting_leaves_later_models_and_the_random_state_alone():
    torch.manual_seed(0)
    before = build("hdemucs").state_dict()
    torch.manual_seed(0)
    count_parameters("hdemucs", **get_model_class("hdemucs").test_kwargs)
    after = build("hdemucs").state_dict()  # build() seeds again; the mode must be gone
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert all(tensor.device.type == "cpu" for tensor in after.values())


def test_listing_models_loads_no_compiler(tmp_path):
    import json
    import subprocess
    import sys

    modules = tmp_path / "modules.json"
    # The whole command in a fresh interpreter; what it imported is written when it exits.
    script = (
        "import atexit, json, runpy, sys\n"
        f"atexit.register(lambda: open({str(modules)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "sys.argv = ['sepzoo', 'models']\n"
        "runpy.run_module('sepzoo.cli.main', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "htdemucs" in done.stdout
    imported = set(json.loads(modules.read_text()))
    assert "torch" in imported  # the check itself: the interpreter's modules were recorded
    # Random draws and reference kernels on the meta device import torch._dynamo (and triton),
    # which was 150 MB of the command's peak memory.
    assert "torch._dynamo" not in imported and "sympy" not in imported


def test_registry_rejects_duplicate_name():
    name = f"throwaway_{uuid.uuid4().hex[:8]}"

    class First(Separator):
        pass

    class Second(Separator):
        pass

    try:
        register_model(name)(First)
        with pytest.raises(DuplicateNameError, match=name):
            register_model(name)(Second)
        with pytest.raises(DuplicateNameError, match="conv_tasnet"):
            register_model("conv_tasnet")(Second)
        assert get_model_class(name) is First
    finally:
        MODELS._entries.pop(name, None)
    assert name not in list_models()
    assert get_model_class("conv_tasnet") is ConvTasNet


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="conv_tasnet") as info:
        get_model_class("conv_tasnt")
    assert "did you mean 'conv_tasnet'" in str(info.value)
    with pytest.raises(UnknownNameError):
        create_model("no_such_model_anywhere")


def test_registering_a_non_separator_raises():
    name = f"throwaway_{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(TypeError, match="Separator"):
            register_model(name)(nn.Linear)
        with pytest.raises(TypeError, match="Separator"):
            register_model(name)(lambda: None)
    finally:
        MODELS._entries.pop(name, None)
    assert name not in list_models()


# Conv-TasNet specifics.


def test_conv_tasnet_paper_defaults_and_parameter_count():
    model = ConvTasNet()
    assert model.sources == list(DEFAULT_SOURCES)
    assert model.sample_rate == 44100 and model.audio_channels == 2
    assert model.segment_length == 80000
    filters, kernel, bottleneck, hidden, conv_kernel, blocks, repeats = 256, 20, 256, 512, 3, 10, 4
    sources, channels = 4, 2
    block = (
        bottleneck * hidden  # 1x1 expand
        + 1  # PReLU
        + 2 * hidden  # gLN
        + hidden * conv_kernel  # depthwise
        + 1  # PReLU
        + 2 * hidden  # gLN
        + hidden * bottleneck  # 1x1 project
    )
    expected = (
        channels * filters * kernel  # encoder
        + 2 * filters  # input norm
        + filters * bottleneck  # bottleneck
        + repeats * blocks * block
        + bottleneck * sources * filters  # mask conv
        + filters * channels * kernel  # decoder basis
    )
    assert model.num_parameters() == expected == sum(p.numel() for p in model.parameters())
    assert 10_000_000 < expected < 12_000_000


def test_conv_tasnet_valid_length_tiles_encoder_frames():
    model = ConvTasNet(**ConvTasNet.test_kwargs)  # kernel 4, hop 2
    assert [model.valid_length(n) for n in (1, 4, 5, 6, 7)] == [4, 4, 6, 6, 8]
    paper = ConvTasNet(**{**ConvTasNet.test_kwargs, "encoder_kernel": 20})
    for length in (1, 20, 21, 44100, 80000):
        valid = paper.valid_length(length)
        assert valid >= 20 and (valid - 20) % 10 == 0
        assert valid == 20 or valid - 10 < length  # the smallest such length


def test_conv_tasnet_rejects_bad_settings():
    with pytest.raises(ValueError, match="input_norm"):
        ConvTasNet(**ConvTasNet.test_kwargs, input_norm="batch")
    with pytest.raises(ValueError, match="encoder_kernel"):
        ConvTasNet(**{**ConvTasNet.test_kwargs, "encoder_kernel": 1})
    with pytest.raises(ValueError, match="repeats"):
        ConvTasNet(**{**ConvTasNet.test_kwargs, "repeats": 0})


def test_conv_tasnet_decoder_is_linear_in_the_masked_features():
    # With all masks equal to one, the output is the decoded encoder features, for every source.
    torch.manual_seed(0)
    model = ConvTasNet(**ConvTasNet.test_kwargs)
    mix = torch.randn(1, 2, 64)
    features = model.encoder(mix)
    ones = torch.ones(1, len(model.sources), features.shape[1], features.shape[2])
    decoded = model.decoder(features.unsqueeze(1) * ones)
    torch.testing.assert_close(decoded[:, 0], decoded[:, 3])
    torch.testing.assert_close(model.decoder(2 * features.unsqueeze(1) * ones), 2 * decoded)


def test_global_layer_norm_matches_group_norm():
    torch.manual_seed(0)
    norm = GlobalLayerNorm(6)
    reference = nn.GroupNorm(1, 6, eps=1e-8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
        reference.weight.copy_(norm.weight)
        reference.bias.copy_(norm.bias)
    x = torch.randn(3, 6, 40)
    torch.testing.assert_close(norm(x), reference(x), rtol=1e-5, atol=1e-5)


def test_separable_block_keeps_shape_and_is_residual():
    block = SeparableConvBlock(8, 12, kernel_size=3, dilation=4)
    x = torch.randn(2, 8, 37)
    assert block(x).shape == x.shape
    with torch.no_grad():
        block.project.weight.zero_()
    torch.testing.assert_close(block(x), x)


def test_conv_tasnet_trains_on_a_toy_signal():
    torch.manual_seed(0)
    model = ConvTasNet(**ConvTasNet.test_kwargs)
    gains = torch.tensor([1.0, 0.5, 0.2, 0.1])[None, :, None, None]
    stems = torch.randn(2, 4, 2, 400) * gains
    mix = stems.sum(dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = (model(mix) - stems).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
