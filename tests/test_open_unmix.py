"""Open-Unmix specifics: the reference configuration, sizes, masking and the Wiener option."""

from __future__ import annotations

import pytest
import torch

from sepzoo import DEFAULT_SOURCES
from sepzoo.models import create_model, get_model_class
from sepzoo.models.open_unmix import OpenUnmix, bandwidth_to_max_bin
from sepzoo.training.losses import build_loss

TINY = OpenUnmix.test_kwargs


def tiny(seed: int = 0, **overrides) -> OpenUnmix:
    torch.manual_seed(seed)
    return OpenUnmix(**{**TINY, **overrides})


def lstm_parameters(input_size: int, hidden: int, layers: int, directions: int) -> int:
    """Weights and both biases of a stacked LSTM, by hand."""
    total = 0
    for layer in range(layers):
        layer_input = input_size if layer == 0 else hidden * directions
        total += directions * (4 * hidden * (layer_input + hidden) + 2 * 4 * hidden)
    return total


def target_parameters(
    channels: int, bins: int, max_bin: int, hidden: int, layers: int, bidirectional: bool = True
) -> int:
    """Parameters of one target network, layer by layer as in openunmix/model.py."""
    directions = 2 if bidirectional else 1
    return (
        2 * max_bin  # input shift and scale
        + channels * max_bin * hidden  # fc1, no bias
        + 2 * hidden  # bn1
        + lstm_parameters(hidden, hidden // directions, layers, directions)
        + 2 * hidden * hidden  # fc2, no bias
        + 2 * hidden  # bn2
        + hidden * channels * bins  # fc3, no bias
        + 2 * channels * bins  # bn3
        + 2 * bins  # output scale and offset
    )


def test_registered_with_open_unmix_defaults():
    assert get_model_class("open_unmix") is OpenUnmix
    model = create_model("open_unmix", sources=["vocals"])
    assert OpenUnmix.domain == "spectrogram"
    assert model.n_fft == 4096 and model.hop_length == 1024
    assert model.sample_rate == 44100 and model.audio_channels == 2
    assert model.segment == 6.0 and model.segment_length == 6 * 44100
    assert model.max_bin == 1487  # 16 kHz at 44.1 kHz with 4096-point frames
    assert model.wiener_iterations == 0 and model.wiener_window == 300
    network = model.target_networks["vocals"]
    assert network.lstm.num_layers == 3 and network.lstm.bidirectional
    assert network.lstm.hidden_size == 256 and network.lstm.dropout == 0.4
    assert network.encoder.bias is None and network.hidden_layer.bias is None and network.decoder.bias is None
    assert OpenUnmix().sources == list(DEFAULT_SOURCES)


def test_default_target_has_the_size_of_umxhq():
    # One umxhq target (hidden 512, 3 layers, stereo, 2049 bins, 1487 read) is about 8.9M.
    model = create_model("open_unmix", sources=["vocals"])
    expected = target_parameters(channels=2, bins=2049, max_bin=1487, hidden=512, layers=3)
    assert model.num_parameters() == expected == 8_893_348


@pytest.mark.parametrize("bidirectional", [True, False])
def test_parameter_count_of_a_small_config(bidirectional):
    model = tiny(sources=["bass", "vocals"], hidden_size=8, lstm_layers=2, bidirectional=bidirectional)
    assert model.max_bin == bandwidth_to_max_bin(44100, 32, 16000.0) == 12
    one = target_parameters(channels=2, bins=17, max_bin=12, hidden=8, layers=2, bidirectional=bidirectional)
    assert model.num_parameters() == 2 * one
    mono = tiny(sources=["vocals"], audio_channels=1, bandwidth=None)
    assert mono.num_parameters() == target_parameters(channels=1, bins=17, max_bin=17, hidden=6, layers=1)


def test_bandwidth_to_max_bin():
    assert bandwidth_to_max_bin(44100, 4096, 16000) == 1487
    assert bandwidth_to_max_bin(44100, 4096, None) == 2049
    assert bandwidth_to_max_bin(44100, 4096, 30000) == 2049
    assert bandwidth_to_max_bin(44100, 4096, 0) == 1
    assert bandwidth_to_max_bin(16000, 8, 2000) == 2  # bins at 0, 2000, 4000, ... Hz


def test_mask_of_one_gives_back_the_mixture():
    model = tiny().eval()
    with torch.no_grad():
        for network in model.target_networks.values():
            network.output_scale.zero_()
            network.output_shift.fill_(1.0)
    for length in (1, 8, 100, 1001):
        mix = torch.randn(2, 2, length)
        with torch.no_grad():
            stems = model(mix)
        torch.testing.assert_close(stems, mix[:, None].expand_as(stems), rtol=0, atol=1e-5)


def test_stems_are_the_mask_times_the_mixture_spectrogram():
    model = tiny(seed=1).eval()
    mix = torch.randn(2, 2, 300)
    with torch.no_grad():
        spectrum = model.stft(mix)
        masks = torch.stack([net(spectrum.abs()) for net in model.target_networks.values()], dim=1)
        expected = model.istft(masks * spectrum[:, None], 300)
        torch.testing.assert_close(model(mix), expected)
    assert (masks >= 0).all()


def test_wiener_iterations_zero_is_the_plain_mask_output():
    plain = tiny(seed=2).eval()
    filtered = tiny(seed=3, wiener_iterations=1).eval()
    filtered.load_state_dict(plain.state_dict())
    mix = torch.randn(2, 2, 500)
    with torch.no_grad():
        assert torch.equal(tiny(seed=2, wiener_iterations=0).eval()(mix), plain(mix))
        refined = filtered(mix)
        assert refined.shape == plain(mix).shape and torch.isfinite(refined).all()
        assert not torch.allclose(refined, plain(mix))
        # After the filter the stems add up to the mixture (its gains sum to the identity).
        torch.testing.assert_close(refined.sum(dim=1), mix, rtol=0, atol=1e-3)
    filtered.train()
    plain.train()
    with torch.no_grad():
        torch.testing.assert_close(filtered(mix), plain(mix))  # training always uses the masks


@pytest.mark.parametrize(
    "options",
    [
        {"wiener_iterations": 2, "wiener_window": 3},
        {"wiener_iterations": 1, "wiener_window": None, "wiener_softmask": True},
        {"wiener_iterations": 1, "wiener_residual": True, "audio_channels": 1},
    ],
)
def test_wiener_options_keep_the_contract(options):
    model = tiny(**options).eval()
    for length in (1, 77, 1001):
        mix = torch.randn(2, model.audio_channels, length)
        with torch.no_grad():
            stems = model(mix)
        assert stems.shape == (2, 4, model.audio_channels, length)
        assert torch.isfinite(stems).all()


def test_a_single_target_filters_against_the_residual():
    with pytest.raises(ValueError, match="wiener_residual"):
        tiny(sources=["vocals"], wiener_iterations=1)
    model = tiny(sources=["vocals"], wiener_iterations=1, wiener_residual=True).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 400)).shape == (1, 1, 2, 400)


def test_input_statistics_standardise_the_input():
    model = tiny(audio_channels=1, bandwidth=None)
    audio = torch.randn(3, 1, 2000) * torch.linspace(0.1, 2.0, 2000)
    mean, std = model.input_statistics(audio)
    assert mean.shape == std.shape == (17,)
    model.set_input_statistics(mean, std)
    magnitude = model.stft(audio).abs()[:, 0]  # B, F, N
    for network in model.target_networks.values():
        normalised = (magnitude.transpose(1, 2) + network.input_shift) * network.input_scale  # B, N, F
        frames = normalised.detach().reshape(-1, 17)
        torch.testing.assert_close(frames.mean(dim=0), torch.zeros(17), rtol=0, atol=1e-4)
        torch.testing.assert_close(frames.std(dim=0, correction=0), torch.ones(17), rtol=0, atol=1e-4)
    model.set_input_statistics(torch.zeros(17), torch.tensor([0.0] * 16 + [2.0]))
    assert model.target_networks["drums"].input_scale.max() == 1 / (1e-4 * 2.0)


def test_bad_settings_raise_with_the_value():
    with pytest.raises(ValueError, match="even, got 7"):
        tiny(hidden_size=7)
    tiny(hidden_size=7, bidirectional=False)
    with pytest.raises(ValueError, match="at most n_fft // 2 = 16, got 17"):
        tiny(hop_length=17)
    with pytest.raises(ValueError, match="lstm_layers must be a positive integer, got 0"):
        tiny(lstm_layers=0)
    with pytest.raises(ValueError, match="got -1"):
        tiny(wiener_iterations=-1)
    with pytest.raises(ValueError, match=r"shape \[>= 12\]"):
        tiny().set_input_statistics(torch.zeros(5), torch.ones(5))


def test_trains_on_magnitudes_of_a_toy_signal():
    torch.manual_seed(0)
    model = tiny(sources=["low", "high"], hidden_size=16)
    time = torch.arange(2000) / 44100
    low = torch.sin(2 * torch.pi * 1500 * time) * torch.rand(8, 2, 1)
    high = torch.sin(2 * torch.pi * 9000 * time) * torch.rand(8, 2, 1)
    stems = torch.stack([low, high], dim=1)  # B, S, C, T
    loss = build_loss("magnitude_mse", sources=model.sources, n_fft=32, hop_length=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        total, _ = loss(model(stems.sum(dim=1)), stems)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0]
