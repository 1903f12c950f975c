"""The magnitude-spectrogram MSE loss (Open-Unmix's training objective)."""

from __future__ import annotations

import pytest
import torch

from sepzoo.errors import ConfigError
from sepzoo.training.losses import MagnitudeMSELoss, build_loss, list_losses

SOURCES = ["drums", "bass", "other", "vocals"]


def magnitudes(signals: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft)
    flat = signals.reshape(-1, signals.shape[-1])
    spectrum = torch.stft(
        flat, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True
    )
    return spectrum.abs().reshape(*signals.shape[:-1], *spectrum.shape[-2:])


def test_registered_with_open_unmix_stft_defaults():
    assert "magnitude_mse" in list_losses()
    loss = build_loss("magnitude_mse", sources=SOURCES)
    assert isinstance(loss, MagnitudeMSELoss)
    assert (loss.n_fft, loss.hop_length) == (4096, 1024)


def test_value_is_the_mean_squared_magnitude_difference_per_source():
    torch.manual_seed(0)
    estimate, reference = torch.randn(2, 4, 2, 300), torch.randn(2, 4, 2, 300)
    loss = build_loss("magnitude_mse", sources=SOURCES, n_fft=64, hop_length=16)
    total, per_source = loss(estimate, reference)
    difference = magnitudes(estimate, 64, 16) - magnitudes(reference, 64, 16)  # B, S, C, F, N
    expected = difference.square().mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(per_source, expected)
    torch.testing.assert_close(total, expected.mean())


def test_blind_to_phase_but_not_to_level():
    torch.manual_seed(1)
    reference = torch.randn(1, 4, 2, 500)
    loss = build_loss("magnitude_mse", sources=SOURCES, n_fft=64, hop_length=16)
    assert loss(-reference, reference)[0] == 0  # a sign flip only changes the phase
    doubled = loss(2 * reference, reference)[1]
    torch.testing.assert_close(doubled, magnitudes(reference, 64, 16).square().mean(dim=(0, 2, 3, 4)))


def test_gradient_is_finite_for_silent_estimates_and_any_length():
    loss = build_loss("magnitude_mse", sources=SOURCES, n_fft=64, hop_length=16)
    for length in (1, 63, 640):
        estimate = torch.zeros(2, 4, 2, length, requires_grad=True)
        total, _ = loss(estimate, torch.randn(2, 4, 2, length))
        total.backward()
        assert torch.isfinite(estimate.grad).all()


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="loss.n_fft"):
        build_loss("magnitude_mse", sources=SOURCES, n_fft=0)
    with pytest.raises(ConfigError, match="hop_length 128 exceeds n_fft 64"):
        build_loss("magnitude_mse", sources=SOURCES, n_fft=64, hop_length=128)
