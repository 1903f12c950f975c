"""Band-split RNN specifics: band schemes and their bins, bad schemes, the STFT round trip,
single- and multi-target shapes, and the parameter count."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from sepzoo import DEFAULT_SOURCES
from sepzoo.models import create_model, get_model_class
from sepzoo.models.band_split_rnn import (
    NAMED_BAND_SCHEMES,
    BandSplitRNN,
    SequenceNorm,
    band_bins,
    band_edges_hz,
    default_band_scheme,
)

TINY = BandSplitRNN.test_kwargs


def tiny(**overrides) -> BandSplitRNN:
    torch.manual_seed(0)
    return BandSplitRNN(**{**TINY, **overrides}).eval()


def assert_tiles(bins: list[tuple[int, int]], n_fft: int) -> None:
    assert bins[0][0] == 0
    assert bins[-1][1] == n_fft // 2 + 1
    for (_, end), (start, _) in zip(bins[:-1], bins[1:]):
        assert end == start
    assert all(end > start for start, end in bins)


def test_is_registered_as_a_spectrogram_model():
    assert get_model_class("bsrnn") is BandSplitRNN
    assert BandSplitRNN.domain == "spectrogram"


# Band schemes.


def test_vocals_scheme_bins_at_the_paper_settings():
    bins = band_bins("vocals", 2048, 44100)
    # 10 bands of 100 Hz, 12 of 250 Hz, 8 of 500 Hz, 8 of 1 kHz, 2 of 2 kHz, and the rest.
    assert len(bins) == 10 + 12 + 8 + 8 + 2 + 1 == 41
    starts = [start for start, _ in bins]
    # An edge f lies at bin floor(f * 2048 / 44100 + 0.5): 100 Hz is bin 4.64 -> 5, 200 Hz 9.29 -> 9,
    # 1 kHz 46.44 -> 46, 4 kHz 185.76 -> 186, 8 kHz 371.52 -> 372, 16 kHz 743.04 -> 743 and
    # 20 kHz 928.80 -> 929; the last band ends past the Nyquist bin 1024.
    assert bins[:3] == [(0, 5), (5, 9), (9, 14)]
    assert starts[10] == 46 and starts[22] == 186 and starts[30] == 372 and starts[38] == 743
    assert bins[-1] == (929, 1025)
    assert_tiles(bins, 2048)


@pytest.mark.parametrize(("name", "count"), [("vocals", 41), ("bass", 30), ("drums", 55), ("other", 41)])
def test_named_schemes_have_the_papers_band_counts(name, count):
    assert len(band_bins(name, 2048, 44100)) == count


@pytest.mark.parametrize("name", sorted(NAMED_BAND_SCHEMES))
@pytest.mark.parametrize(
    ("n_fft", "sample_rate"), [(1024, 44100), (2048, 44100), (4096, 44100), (2048, 48000)]
)
def test_every_named_scheme_tiles_the_bins(name, n_fft, sample_rate):
    assert_tiles(band_bins(name, n_fft, sample_rate), n_fft)


def test_steps_and_explicit_bands_in_hz():
    assert band_edges_hz({"steps": [[300, 1000]]}, 8000) == [
        (0, 300),
        (300, 600),
        (600, 900),
        (900, 1000),
        (1000, 4000),
    ]
    assert band_edges_hz({"bands": [[0, 1000], [1000, None]]}, 8000) == [(0, 1000), (1000, 4000)]
    # A step that ends at Nyquist leaves no rest band; an odd n_fft still tiles its bins.
    assert band_edges_hz({"steps": [[2000, 4000]]}, 8000) == [(0, 2000), (2000, 4000)]
    assert_tiles(band_bins({"steps": [[1000, 3000]]}, 63, 8000), 63)


def test_default_scheme_follows_the_target():
    assert default_band_scheme(["bass"]) == "bass"
    assert default_band_scheme(["piano"]) == "vocals"
    assert default_band_scheme(list(DEFAULT_SOURCES)) == "vocals"
    assert len(BandSplitRNN(sources=["drums"], **{**TINY, "band_scheme": None, "n_fft": 2048}).bands) == 55


@pytest.mark.parametrize(
    ("scheme", "n_fft", "fragments"),
    [
        ({"bands": [[0, 1000], [2000, None]]}, 2048, ["gap", "bins [46, 93)", "1000 Hz", "2000 Hz"]),
        ({"bands": [[0, 1000], [500, None]]}, 2048, ["overlaps", "band 1 [500 Hz, 22050 Hz]", "bin 46"]),
        ({"bands": [[0, 10000]]}, 2048, ["gap", "bins [464, 1025)", "22050 Hz"]),
        ({"steps": [[1000, 30000]]}, 2048, ["beyond Nyquist", "30000 Hz", "22050 Hz"]),
        ({"bands": [[0, 1000], [1000, 25000]]}, 2048, ["beyond Nyquist", "bands[1]", "25000 Hz"]),
        ("drums", 512, ["n_fft=512 is too small", "band 1 [50 Hz, 100 Hz]", "bins [1, 1)"]),
        ({"steps": [[100, 1000]]}, 64, ["too small", "holds no STFT bin"]),
        ("vocal", 2048, ["unknown band scheme 'vocal'", "did you mean 'vocals'"]),
        ({"octaves": [[0, 100]]}, 2048, ["band_scheme must be"]),
        ({"bands": [[1000, 500]]}, 2048, ["bands[0]", "above the low edge"]),
    ],
)
def test_bad_schemes_fail_at_construction_in_one_line(scheme, n_fft, fragments):
    with pytest.raises(ValueError) as info:
        BandSplitRNN(**{**TINY, "band_scheme": scheme, "n_fft": n_fft})
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_bad_stft_and_sizes_raise():
    with pytest.raises(ValueError, match="hop_length"):
        BandSplitRNN(**{**TINY, "hop_length": 40})
    with pytest.raises(ValueError, match="num_blocks"):
        BandSplitRNN(**{**TINY, "num_blocks": 0})


# The model.


def test_sequence_norm_is_a_one_group_group_norm():
    torch.manual_seed(0)
    norm = SequenceNorm(6)
    reference = nn.GroupNorm(1, 6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
        reference.load_state_dict({"weight": norm.weight, "bias": norm.bias})
    sequences = 3 * torch.randn(2, 40, 6) + 1
    expected = reference(sequences.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(norm(sequences), expected, rtol=1e-5, atol=1e-5)


class UnitMask(nn.Module):
    """A mask estimator stand-in whose mask is 1 + 0j everywhere (real and imaginary parts last)."""

    def __init__(self, channels: int, bins: int) -> None:
        super().__init__()
        self.channels = channels
        self.bins = bins

    def forward(self, features: Tensor) -> Tensor:
        batch, _, frames, _ = features.shape
        ones = torch.ones(batch, self.channels, self.bins, frames)
        return torch.stack([ones, torch.zeros_like(ones)], dim=-1)


@pytest.mark.parametrize(
    ("n_fft", "hop_length", "scheme"), [(64, 16, TINY["band_scheme"]), (2048, 512, "vocals")]
)
def test_unit_mask_returns_the_mixture(n_fft, hop_length, scheme):
    model = tiny(sources=list(DEFAULT_SOURCES), n_fft=n_fft, hop_length=hop_length, band_scheme=scheme)
    model.mask_estimators = nn.ModuleList(UnitMask(2, n_fft // 2 + 1) for _ in model.sources)
    for length in (1, 7, 333, 5000):
        mix = torch.randn(2, 2, length, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            stems = model(mix)
        assert stems.shape == (2, 4, 2, length)
        for index in range(4):
            torch.testing.assert_close(stems[:, index], mix, rtol=0, atol=1e-5)


def test_single_and_multi_target_shapes():
    mix = torch.randn(3, 2, 1001)
    with torch.no_grad():
        assert tiny(sources=["vocals"])(mix).shape == (3, 1, 2, 1001)
        assert tiny(sources=list(DEFAULT_SOURCES))(mix).shape == (3, 4, 2, 1001)
        assert tiny(sources=["bass", "drums"], audio_channels=1)(mix[:, :1]).shape == (3, 2, 1, 1001)


def test_multi_target_shares_the_trunk_and_trains_every_mask_estimator():
    model = tiny(sources=list(DEFAULT_SOURCES)).train()
    assert len(model.mask_estimators) == 4 and len(model.band_sequence) == 1
    model(torch.randn(2, 2, 400)).pow(2).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_each_band_sees_both_channels_and_masks_each_channel():
    model = tiny()
    mix = torch.randn(1, 2, 800)
    swapped = mix.flip(1)
    with torch.no_grad():
        left_alone = model(torch.stack([mix[:, 0], torch.zeros_like(mix[:, 0])], dim=1))
        left_with_right = model(mix)
        swapped_output = model(swapped)
    # The left output depends on the right input, and the masks differ per channel.
    assert not torch.allclose(left_alone[:, :, 0], left_with_right[:, :, 0])
    assert not torch.allclose(swapped_output.flip(2), left_with_right)


def expected_parameters(
    band_widths: list[int],
    channels: int,
    features: int,
    blocks: int,
    hidden: int,
    mask_hidden: int,
    sources: int,
) -> int:
    """The parameter count of Section II, written out layer by layer."""
    band_split = sum(
        2 * (2 * channels * width)  # layer norm gain and bias
        + (2 * channels * width) * features
        + features  # linear to N
        for width in band_widths
    )
    lstm_direction = 4 * hidden * (features + hidden) + 2 * 4 * hidden  # weights and two biases
    residual_blstm = 2 * features + 2 * lstm_direction + (2 * hidden * features + features)
    mask_estimator = sum(
        2 * features  # layer norm
        + features * mask_hidden
        + mask_hidden  # hidden layer
        + mask_hidden * (4 * channels * width)
        + 4 * channels * width  # values and gates of the GLU
        for width in band_widths
    )
    return band_split + blocks * 2 * residual_blstm + sources * mask_estimator


def test_parameter_count_of_a_small_model_by_hand():
    model = BandSplitRNN(
        sources=["vocals", "bass"],
        band_scheme={"bands": [[0, 1000], [1000, 5000], [5000, None]]},
        n_fft=256,
        hop_length=64,
        feature_size=16,
        num_blocks=2,
        lstm_hidden_size=8,
        mask_hidden_size=32,
    )
    # Edges at 1000 and 5000 Hz are bins 5.80 -> 6 and 29.02 -> 29; the spectrum has 129 bins.
    assert model.bands == [(0, 6), (6, 29), (29, 129)]
    expected = expected_parameters([6, 23, 100], 2, 16, 2, 8, 32, 2)
    assert model.num_parameters() == expected == sum(p.numel() for p in model.parameters())


def test_paper_defaults_and_their_parameter_count():
    model = create_model("bsrnn")
    assert model.sources == ["vocals"]
    assert (model.n_fft, model.hop_length, model.segment, model.sample_rate) == (2048, 512, 3.0, 44100)
    assert model.band_scheme == "vocals" and len(model.bands) == 41
    assert len(model.band_sequence) == 12
    assert model.band_sequence[0].sequence_rnn.lstm.hidden_size == 256
    assert model.mask_estimators[0].band_mlps[0][1].out_features == 512
    widths = [end - start for start, end in model.bands]
    expected = expected_parameters(widths, 2, 128, 12, 256, 512, 1)
    assert model.num_parameters() == expected
    assert math.isclose(expected, 28.0e6, rel_tol=0.01)


def test_silence_and_batch_items_stay_independent_at_paper_settings():
    model = tiny(n_fft=2048, hop_length=512, band_scheme="vocals")
    mix = torch.randn(2, 2, 4000)
    with torch.no_grad():
        together = model(mix)
        alone = model(mix[1:])
        silent = model(torch.zeros(1, 2, 4000))
    torch.testing.assert_close(together[1:], alone, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(silent).all() and silent.abs().max() == 0
