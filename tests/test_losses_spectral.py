"""Tests of the complex-spectrogram L1 loss of band-split RNN."""

from __future__ import annotations

import pytest
import torch

from sepzoo.errors import ConfigError
from sepzoo.training.losses import ComplexSpectrogramL1Loss, build_loss, list_losses

SOURCES = ["drums", "bass", "other", "vocals"]


def test_registered_under_its_name():
    assert "complex_spec_l1" in list_losses()
    assert isinstance(build_loss("complex_spec_l1", SOURCES), ComplexSpectrogramL1Loss)


def test_zero_on_identical_and_positive_otherwise():
    torch.manual_seed(0)
    loss = build_loss("complex_spec_l1", SOURCES, n_fft=64, hop_length=16)
    reference = torch.randn(2, 4, 2, 300)
    total, per_source = loss(reference.clone(), reference)
    assert total.item() == 0 and per_source.abs().max().item() == 0
    total, per_source = loss(reference + 0.1 * torch.randn_like(reference), reference)
    assert total.item() > 0 and (per_source > 0).all()


def test_value_by_hand():
    # n_fft 4, hop 2, a 2-sample difference [1, 0]: with the centred zero padding the frames are
    # [0, 0, 1, 0] and [1, 0, 0, 0]; the periodic Hann window [0, .5, 1, .5] keeps only the 1 of
    # the first, whose spectrum is (-1)^k for bins k = 0, 1, 2. Real parts sum to 3, imaginary
    # parts to 0, the waveform difference to 1: (3 + 1) / 2 samples.
    loss = build_loss("complex_spec_l1", ["vocals"], n_fft=4, hop_length=2)
    estimate = torch.tensor([[[[1.0, 0.0]]]])
    total, _ = loss(estimate, torch.zeros_like(estimate))
    torch.testing.assert_close(total, torch.tensor(2.0))


def test_per_sample_scale_does_not_depend_on_length_or_batch():
    torch.manual_seed(0)
    loss = build_loss("complex_spec_l1", ["vocals"], n_fft=64, hop_length=16)
    difference = torch.randn(1, 1, 2, 4000)
    one, _ = loss(difference, torch.zeros_like(difference))
    repeated = torch.cat([difference, difference], dim=-1)
    two, _ = loss(repeated, torch.zeros_like(repeated))
    batch = torch.cat([difference, difference])
    doubled, _ = loss(batch, torch.zeros_like(batch))
    torch.testing.assert_close(two, one, rtol=2e-3, atol=0)  # only the edge frames differ
    torch.testing.assert_close(doubled, one)


def test_gradient_reaches_the_estimate():
    torch.manual_seed(0)
    loss = build_loss("complex_spec_l1", SOURCES, n_fft=64, hop_length=16)
    estimate = torch.randn(1, 4, 2, 200, requires_grad=True)
    total, _ = loss(estimate, torch.randn(1, 4, 2, 200))
    total.backward()
    assert estimate.grad is not None and estimate.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_fft": 0}, "loss.n_fft"),
        ({"hop_length": 1.5}, "loss.hop_length"),
        ({"n_fft": 8, "hop_length": 16}, "exceeds"),
    ],
)
def test_bad_arguments_raise_one_line_config_error(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        build_loss("complex_spec_l1", SOURCES, **kwargs)
    assert "\n" not in str(info.value)
