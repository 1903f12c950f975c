"""The multichannel Wiener filter: statistics, gains, their application and the EM refinement,
checked on cases whose answer is known."""

from __future__ import annotations

import pytest
import torch

from sepzoo.dsp.wiener import (
    expectation_maximization,
    mixture_phase_estimates,
    power_spectral_density,
    softmask_estimates,
    spatial_covariance,
    wiener_filter,
    wiener_gains,
    wiener_gains_apply,
)


def random_stft(*shape: int, seed: int = 0, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype)


def oracle_model(sources: torch.Tensor, eps: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """Power spectral densities and spatial covariances of true sources ``[B, S, C, F, T]``."""
    psds = power_spectral_density(sources)
    return psds, spatial_covariance(sources, psds, eps)


def panned(signal: torch.Tensor, left: float, right: float) -> torch.Tensor:
    """A stereo source ``[B, 2, F, T]`` from a mono STFT ``[B, F, T]`` at fixed gains."""
    return torch.stack([left * signal, right * signal], dim=1)


def test_power_spectral_density_is_the_channel_mean_of_the_power():
    stft = random_stft(3, 2, 5, 7)
    expected = (stft[:, 0].abs() ** 2 + stft[:, 1].abs() ** 2) / 2
    torch.testing.assert_close(power_spectral_density(stft), expected)
    assert power_spectral_density(stft).dtype == torch.float64
    assert power_spectral_density(stft.to(torch.complex64)).dtype == torch.float32


def test_spatial_covariance_matches_its_definition():
    stft = random_stft(2, 2, 4, 6)  # B, C, F, T
    psd = power_spectral_density(stft)
    covariance = spatial_covariance(stft, psd, eps=1e-3)
    assert covariance.shape == (2, 4, 2, 2)
    for item in range(2):
        for bin_ in range(4):
            frames = stft[item, :, bin_]  # C, T
            expected = frames @ frames.conj().T / (1e-3 + psd[item, bin_].sum())
            torch.testing.assert_close(covariance[item, bin_], expected)
    torch.testing.assert_close(covariance, covariance.conj().transpose(-1, -2))


def test_spatial_covariance_has_trace_channels_and_is_zero_for_silence():
    stft = random_stft(1, 2, 3, 50)
    covariance = spatial_covariance(stft, power_spectral_density(stft), eps=1e-12)
    trace = covariance.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    torch.testing.assert_close(trace.real, torch.full_like(trace.real, 2.0))
    silent = torch.zeros(1, 2, 3, 50, dtype=torch.complex128)
    assert (spatial_covariance(silent, power_spectral_density(silent)) == 0).all()


def test_a_single_source_gets_the_whole_mixture():
    mix = random_stft(2, 2, 9, 40)  # B, C, F, T, independent channels: full-rank covariance
    psds, covariances = oracle_model(mix[:, None])
    estimate = wiener_gains_apply(mix, psds, covariances)
    assert estimate.shape == (2, 1, 2, 9, 40)
    torch.testing.assert_close(estimate[:, 0], mix, rtol=0, atol=1e-4)


def test_sources_in_disjoint_bins_are_separated_exactly():
    first = random_stft(1, 2, 8, 30, seed=1)
    second = random_stft(1, 2, 8, 30, seed=2)
    first[..., ::2, :] = 0  # the first source lives in the odd bins,
    second[..., 1::2, :] = 0  # the second in the even ones
    sources = torch.stack([first, second], dim=1)  # B, S, C, F, T
    estimate = wiener_gains_apply(sources.sum(dim=1), *oracle_model(sources))
    torch.testing.assert_close(estimate, sources, rtol=0, atol=1e-4)


def test_sources_at_different_pan_positions_are_separated_exactly_where_they_overlap():
    # Two point sources in stereo: rank-one covariances with independent directions, so the
    # filter inverts the 2x2 mixing exactly in every bin, although both sources are everywhere.
    first = panned(random_stft(1, 6, 25, seed=3), 0.9, 0.3)
    second = panned(random_stft(1, 6, 25, seed=4), 0.2, 1.0)
    sources = torch.stack([first, second], dim=1)
    estimate = wiener_gains_apply(sources.sum(dim=1), *oracle_model(sources))
    torch.testing.assert_close(estimate, sources, rtol=0, atol=1e-3)


def test_gains_sum_to_the_identity_up_to_the_regularisation():
    sources = random_stft(2, 3, 2, 5, 8, seed=5)
    psds, covariances = oracle_model(sources)
    identity = torch.eye(2, dtype=torch.complex128)
    exact = wiener_gains(psds, covariances, eps=0.0).sum(dim=1)  # B, F, T, C, C
    torch.testing.assert_close(exact, identity.expand_as(exact), rtol=0, atol=1e-10)
    regularised = wiener_gains(psds, covariances).sum(dim=1)
    torch.testing.assert_close(regularised, identity.expand_as(regularised), rtol=0, atol=1e-4)
    assert not torch.equal(regularised, exact)


def test_applying_the_gains_equals_multiplying_by_them_in_any_block_size():
    sources = random_stft(2, 3, 2, 5, 11, seed=6)
    mix = random_stft(2, 2, 5, 11, seed=7)
    psds, covariances = oracle_model(sources)
    gains = wiener_gains(psds, covariances)  # B, S, F, T, C, C
    expected = torch.einsum("bsftcd,bdft->bscft", gains, mix)
    for block_frames in (1, 3, 256):
        applied = wiener_gains_apply(mix, psds, covariances, block_frames=block_frames)
        torch.testing.assert_close(applied, expected)


def test_mono_gains_are_power_ratio_masks():
    sources = random_stft(1, 3, 1, 6, 10, seed=8)
    mix = sources.sum(dim=1)
    psds, covariances = oracle_model(sources, eps=0.0)
    estimate = wiener_gains_apply(mix, psds, covariances, eps=0.0)
    ratios = psds / psds.sum(dim=1, keepdim=True)  # B, S, F, T
    torch.testing.assert_close(estimate, ratios[:, :, None] * mix[:, None])


def test_results_keep_the_input_precision_and_silence_stays_silent():
    sources = random_stft(1, 2, 2, 4, 5, dtype=torch.complex64)
    psds, covariances = oracle_model(sources)
    assert psds.dtype == torch.float32 and covariances.dtype == torch.complex64
    assert wiener_gains_apply(sources.sum(dim=1), psds, covariances).dtype == torch.complex64
    silent = torch.zeros(1, 2, 2, 4, 5, dtype=torch.complex64)
    estimate = expectation_maximization(silent.sum(dim=1), silent, iterations=2)
    assert torch.isfinite(torch.view_as_real(estimate)).all() and (estimate == 0).all()


def test_expectation_maximization_keeps_exact_estimates_and_returns_the_start_with_no_iterations():
    first = random_stft(1, 2, 8, 30, seed=9)
    second = random_stft(1, 2, 8, 30, seed=10)
    first[..., ::2, :] = 0
    second[..., 1::2, :] = 0
    sources = torch.stack([first, second], dim=1)
    mix = sources.sum(dim=1)
    refined = expectation_maximization(mix, sources, iterations=3)
    torch.testing.assert_close(refined, sources, rtol=0, atol=1e-3)
    start = random_stft(1, 2, 2, 8, 30, seed=11, dtype=torch.complex64)
    assert torch.equal(expectation_maximization(mix.to(torch.complex64), start, iterations=0), start)


def test_one_iteration_improves_a_start_that_ignores_panning():
    first = panned(random_stft(1, 6, 40, seed=12), 1.0, 0.1)
    second = panned(random_stft(1, 6, 40, seed=13), 0.1, 1.0)
    sources = torch.stack([first, second], dim=1)
    mix = sources.sum(dim=1)
    # Magnitudes that are right on average but blind to panning: each source's channel mean.
    magnitudes = sources.abs().mean(dim=2, keepdim=True).expand(-1, -1, 2, -1, -1)
    start = mixture_phase_estimates(magnitudes, mix)
    refined = expectation_maximization(mix, start, iterations=1)

    def error(estimate: torch.Tensor) -> float:
        return float((estimate - sources).abs().square().sum() / sources.abs().square().sum())

    assert error(refined) < 0.8 * error(start)


def test_initial_estimates():
    mix = random_stft(2, 2, 4, 6, seed=14)
    magnitudes = random_stft(2, 3, 2, 4, 6, seed=15).abs().real
    with_phase = mixture_phase_estimates(magnitudes, mix)
    torch.testing.assert_close(with_phase.abs(), magnitudes)
    torch.testing.assert_close(with_phase.angle(), mix.angle()[:, None].expand_as(with_phase.angle()))
    zero_mix = torch.zeros_like(mix)
    torch.testing.assert_close(mixture_phase_estimates(magnitudes, zero_mix).real, magnitudes)
    torch.testing.assert_close(softmask_estimates(magnitudes, mix, eps=0.0).sum(dim=1), mix)


def test_wiener_filter_residual_and_shapes():
    mix = random_stft(2, 2, 5, 9, seed=16, dtype=torch.complex64)
    magnitudes = random_stft(2, 3, 2, 5, 9, seed=17).abs().float()
    plain = wiener_filter(magnitudes, mix, iterations=0)
    torch.testing.assert_close(plain, mixture_phase_estimates(magnitudes, mix))
    with_residual = wiener_filter(magnitudes, mix, iterations=0, residual=True)
    assert with_residual.shape == (2, 4, 2, 5, 9)
    torch.testing.assert_close(with_residual.sum(dim=1), mix)
    refined = wiener_filter(magnitudes, mix, iterations=1, residual=True)
    assert refined.shape == (2, 4, 2, 5, 9) and refined.dtype == torch.complex64
    torch.testing.assert_close(refined.sum(dim=1), mix, rtol=0, atol=1e-3)


def test_wiener_filter_treats_loud_mixtures_alike_at_any_level():
    mix = 20 * random_stft(2, 2, 5, 9, seed=18)
    magnitudes = 20 * random_stft(2, 2, 2, 5, 9, seed=19).abs().real
    quiet_batch_item = mix.clone()
    quiet_batch_item[1] /= 1000  # a batch item's level must not change another's filter
    reference = wiener_filter(magnitudes, mix, iterations=2)
    louder = wiener_filter(100 * magnitudes, 100 * mix, iterations=2)
    torch.testing.assert_close(louder, 100 * reference)
    alone = wiener_filter(magnitudes[:1], quiet_batch_item[:1], iterations=2)
    together = wiener_filter(magnitudes, quiet_batch_item, iterations=2)
    torch.testing.assert_close(together[:1], alone)


def test_bad_shapes_raise_with_the_shape():
    with pytest.raises(ValueError, match=r"1 or 2 channels, got 3"):
        sources = random_stft(1, 3, 4, 5)
        spatial_covariance(sources, power_spectral_density(sources))
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        spatial_covariance(random_stft(1, 2, 4, 5), torch.zeros(1, 4))
    psds, covariances = oracle_model(random_stft(1, 2, 2, 4, 5))
    with pytest.raises(ValueError, match=r"\[1, 2, 4, 6\]"):
        wiener_gains_apply(random_stft(1, 2, 4, 6), psds, covariances)
    with pytest.raises(ValueError, match="iterations"):
        expectation_maximization(random_stft(1, 2, 4, 5), random_stft(1, 2, 2, 4, 5), iterations=-1)
    with pytest.raises(ValueError, match=r"\[1, 2, 3, 5\]"):
        expectation_maximization(random_stft(1, 2, 3, 5), random_stft(1, 2, 2, 4, 5), iterations=1)
