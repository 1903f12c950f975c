"""The scale-dependent SDR: a hand computation, and how it relates to SI-SDR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepzoo.evaluation.metrics import sd_sdr, si_sdr


def stems(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("zero_mean", [True, False])
def test_sd_sdr_by_hand(zero_mean):
    reference = stems(2, 4, 2, 600) + 0.3
    estimate = 0.7 * reference + 0.4 * stems(2, 4, 2, 600, seed=1)
    values = sd_sdr(estimate, reference, zero_mean=zero_mean)
    assert values.shape == (2, 4) and values.dtype == torch.float64
    for b in range(2):
        for s in range(4):
            x = estimate[b, s].numpy().ravel()  # the channels make one signal
            y = reference[b, s].numpy().ravel()
            if zero_mean:
                x, y = x - x.mean(), y - y.mean()
            alpha = (x @ y) / (y @ y)
            expected = 10 * np.log10(np.sum((alpha * y) ** 2) / np.sum((y - x) ** 2))
            assert values[b, s].item() == pytest.approx(expected, abs=1e-9)


def test_sd_sdr_never_exceeds_si_sdr_and_meets_it_at_unit_gain():
    reference = stems(8, 2, 500)
    for seed, gain in enumerate((0.3, 0.9, 1.5, -0.5)):
        estimate = gain * reference + 0.5 * stems(8, 2, 500, seed=seed + 1)
        assert (sd_sdr(estimate, reference) <= si_sdr(estimate, reference) + 1e-9).all()
    # An error orthogonal to the (zero-mean) reference leaves alpha = 1: the two coincide.
    centred = reference - reference.mean(dim=(-2, -1), keepdim=True)
    noise = stems(8, 2, 500, seed=9)
    noise = noise - noise.mean(dim=(-2, -1), keepdim=True)
    noise -= (
        (noise * centred).sum(dim=(-2, -1), keepdim=True)
        / centred.square().sum(dim=(-2, -1), keepdim=True)
        * centred
    )
    torch.testing.assert_close(sd_sdr(centred + noise, centred), si_sdr(centred + noise, centred))


@pytest.mark.parametrize("gain", [0.5, 2.0, -1.0, 0.9])
def test_sd_sdr_of_a_scaled_reference_charges_the_gain(gain):
    reference = stems(3, 2, 400)
    expected = 20 * np.log10(abs(gain) / abs(1 - gain))
    torch.testing.assert_close(
        sd_sdr(gain * reference, reference), torch.full((3,), expected, dtype=torch.float64)
    )
    assert (si_sdr(gain * reference, reference) > 60).all()  # SI-SDR sees no error at all


def test_sd_sdr_silence_is_finite_and_shapes_must_match():
    silent = torch.zeros(2, 2, 100)
    assert torch.isfinite(sd_sdr(stems(2, 2, 100), silent)).all()
    assert torch.isfinite(sd_sdr(silent, silent)).all()
    with pytest.raises(ValueError, match=r"\[4, 2, 10\] vs \[4, 2, 11\]"):
        sd_sdr(torch.zeros(4, 2, 10), torch.zeros(4, 2, 11))
