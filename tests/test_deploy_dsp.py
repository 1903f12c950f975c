"""The NumPy STFT pair of exported models computes what sepzoo.dsp.stft computes with torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepzoo.deploy import dsp
from sepzoo.dsp.stft import istft, stft


@pytest.mark.parametrize(
    ("n_fft", "hop", "window_length", "normalized", "pad_mode"),
    [(64, 16, 64, False, "reflect"), (64, 16, 48, True, "constant"), (65, 16, 65, False, "reflect")],
)
def test_numpy_stft_and_inverse_match_torch(n_fft, hop, window_length, normalized, pad_mode):
    signal = torch.randn(2, 2, 1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    window = torch.hann_window(window_length, dtype=torch.float64)
    np.testing.assert_allclose(dsp.hann_window(window_length), window.numpy(), atol=1e-15)

    spectrum = stft(signal, n_fft, hop, window, normalized, pad_mode)
    ours = dsp.stft(signal.numpy(), n_fft, hop, dsp.hann_window(window_length), normalized, pad_mode)
    np.testing.assert_allclose(ours, spectrum.numpy(), atol=1e-12)

    # An estimate is not the spectrum of a real signal: its DC/Nyquist imaginary parts are ignored.
    estimate = spectrum * 1.3 + 0.1j
    expected = istft(estimate, n_fft, hop, window, 990, normalized)
    inverse = dsp.istft(ours * 1.3 + 0.1j, n_fft, hop, dsp.hann_window(window_length), 990, normalized)
    np.testing.assert_allclose(inverse, expected.numpy(), atol=1e-12)


def test_numpy_stft_refuses_an_unknown_padding():
    with pytest.raises(ValueError, match="pad_mode"):
        dsp.stft(np.zeros((1, 100)), 16, 4, dsp.hann_window(16), pad_mode="edge")
