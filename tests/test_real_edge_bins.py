"""Spectra handed to the inverse STFT have real DC and Nyquist bins on every device."""

from __future__ import annotations

import torch

from sepzoo.dsp.stft import real_edge_bins


def test_the_edge_bins_lose_their_imaginary_parts_and_nothing_else():
    spectrum = torch.randn(3, 129, 20, dtype=torch.complex64)
    edged = real_edge_bins(spectrum, 256)
    assert torch.equal(edged.imag[:, [0, -1]], torch.zeros(3, 2, 20))
    assert torch.equal(edged.real, spectrum.real)
    assert torch.equal(edged.imag[:, 1:-1], spectrum.imag[:, 1:-1])
    # With an odd transform length the last bin is not the Nyquist bin and keeps its phase.
    odd = real_edge_bins(spectrum, 257)
    assert torch.equal(odd.imag[:, -1], spectrum.imag[:, -1]) and torch.equal(
        odd.imag[:, 0], torch.zeros(3, 20)
    )


def test_on_the_cpu_the_inverse_stft_is_unchanged_bit_for_bit():
    # The CPU's inverse FFT ignores those imaginary parts already: CPU results (and the parity
    # tests against other projects) do not move; CUDA, which uses them, now computes the same.
    torch.manual_seed(0)
    spectrum = torch.randn(2, 129, 40, dtype=torch.complex64)
    window = torch.hann_window(256)
    plain = torch.istft(spectrum, 256, 64, window=window, normalized=True, length=2000)
    edged = torch.istft(real_edge_bins(spectrum, 256), 256, 64, window=window, normalized=True, length=2000)
    assert torch.equal(plain, edged)


def test_gradients_flow_through_the_real_parts_of_the_edge_bins():
    spectrum = torch.randn(1, 65, 8, dtype=torch.complex64, requires_grad=True)
    real_edge_bins(spectrum, 128).abs().sum().backward()
    assert spectrum.grad is not None and torch.isfinite(torch.view_as_real(spectrum.grad)).all()
