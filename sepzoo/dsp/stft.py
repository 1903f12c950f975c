"""Short-time Fourier transforms: the one STFT / inverse STFT pair of every model, loss and oracle.

Signals are ``[..., T]`` and spectrograms ``[..., F, N]`` (``F = n_fft // 2 + 1`` bins, ``N``
frames) with any leading dimensions, so no caller reshapes to the ``[batch, time]`` that
``torch.stft`` wants. Frames are centred: frame ``n`` is centred on sample ``n * hop``.

The reference implementations that sepzoo matches differ in three details, each an option here:

* the padding at the two ends: zeros (``pad_mode="constant"``) or a reflection (Demucs);
* the window's precision: a periodic Hann window computed in the signal's precision, or
  computed in float32 and then cast (``float32_window``), as Demucs's and Open-Unmix's published
  models do, which float64 parity tests can tell apart;
* the scaling: none, ``1 / sqrt(n_fft)`` (``normalized``, Demucs), or scipy's
  (``scipy_scaling``, the STFT of sigsep-mus-oracle).

Every inverse goes through :func:`real_edge_bins`, so that the CPU and CUDA compute the same
waveform from a network's estimate.

Under mixed precision every transform runs in float32 with autocast off
(:func:`~sepzoo.dsp.precision.full_precision`): a half-precision signal or spectrogram is cast
to float32 first, and the results are float32 (complex64).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepzoo.dsp.precision import full_precision

PadMode = Literal["constant", "reflect"]


def real_edge_bins(spectrum: Tensor, n_fft: int) -> Tensor:
    """``spectrum`` with the imaginary parts of its DC bin (and, for an even ``n_fft``, its
    Nyquist bin) set to zero, ready for ``torch.istft``.

    The spectrum of a real signal has real values in those bins; a network's estimate need not.
    The CPU's inverse FFT ignores their imaginary parts, CUDA's does not, so without this the
    same model gave different waveforms on the two devices (7% of the peak for a Hybrid Demucs
    with random weights). With it every device computes what the CPU always did, bit for bit.
    :func:`istft` applies it; nothing else needs to.

    Args:
        spectrum: Complex one-sided spectrogram, bins on the second-to-last axis.
        n_fft: The transform's length.
    """
    keep = torch.ones(spectrum.shape[-2], 1, dtype=spectrum.real.dtype, device=spectrum.device)  # F, 1
    keep[0] = 0
    if n_fft % 2 == 0:
        keep[-1] = 0
    return torch.complex(spectrum.real, spectrum.imag * keep)


def hann_window(length: int, like: Tensor, float32: bool = False) -> Tensor:
    """The periodic Hann window of ``length`` samples, on ``like``'s device in its real dtype.

    Args:
        length: Window length in samples.
        like: A signal or spectrogram the window will be used with.
        float32: Compute the window in float32 and cast it, as Demucs's and Open-Unmix's
            published models do, instead of computing it in ``like``'s precision.
            (Default: ``False``)
    """
    dtype = like.real.dtype
    if float32:
        return torch.hann_window(length, dtype=torch.float32, device=like.device).to(dtype)
    return torch.hann_window(length, dtype=dtype, device=like.device)


def _framing(n_fft: int, hop_length: int, window: Tensor, normalized: bool) -> dict[str, Any]:
    """The arguments ``torch.stft`` and ``torch.istft`` must share for one to invert the other."""
    return {
        "n_fft": n_fft,
        "hop_length": hop_length,
        "win_length": window.shape[-1],
        "window": window,
        "center": True,
        "normalized": normalized,
    }


@full_precision
def stft(
    signal: Tensor,
    n_fft: int,
    hop_length: int,
    window: Tensor,
    normalized: bool = False,
    pad_mode: PadMode = "constant",
) -> Tensor:
    """The centred STFT of real ``signal`` (``[..., T]``), complex ``[..., F, N]`` with
    ``N = 1 + T // hop_length``.

    Args:
        signal: Real waveforms, time last, any leading dimensions.
        n_fft: FFT size.
        hop_length: Samples between frames.
        window: The window, of at most ``n_fft`` samples; a shorter one is centred in the frame.
        normalized: Multiply by ``1 / sqrt(n_fft)``. (Default: ``False``)
        pad_mode: How half a frame is added at each end: ``"constant"`` (zeros) or
            ``"reflect"``. (Default: ``"constant"``)
    """
    spectrum = torch.stft(
        signal.reshape(-1, signal.shape[-1]),
        **_framing(n_fft, hop_length, window, normalized),
        pad_mode=pad_mode,
        return_complex=True,
    )  # *, F, N
    return spectrum.reshape(*signal.shape[:-1], *spectrum.shape[-2:])


@full_precision
def istft(
    spectrum: Tensor,
    n_fft: int,
    hop_length: int,
    window: Tensor,
    length: int,
    normalized: bool = False,
) -> Tensor:
    """Real waveforms ``[..., length]`` from complex spectrograms ``[..., F, N]``: the inverse of
    :func:`stft`, after :func:`real_edge_bins`.

    Args:
        spectrum: Complex spectrograms, bins and frames last, any leading dimensions.
        n_fft: FFT size.
        hop_length: Samples between frames.
        window: The window of the forward transform.
        length: Samples to return from the centre of the first frame on.
        normalized: The forward transform was normalised. (Default: ``False``)
    """
    signal = torch.istft(
        real_edge_bins(spectrum.reshape(-1, *spectrum.shape[-2:]), n_fft),
        **_framing(n_fft, hop_length, window, normalized),
        length=length,
    )  # *, T
    return signal.reshape(*spectrum.shape[:-2], length)


class STFT(nn.Module):
    """A model's STFT and inverse STFT with a periodic Hann window of ``n_fft`` samples.

    It holds no tensors: the window is made on the signal's device in its precision at each
    call, so the module never adds keys to a model's state.

    Args:
        n_fft: FFT size and window length; at least 2.
        hop_length: Samples between frames, in ``[1, n_fft // 2]`` so that every sample lies
            in two windows and the inverse is exact.
        normalized: Multiply by ``1 / sqrt(n_fft)``, as Demucs does. (Default: ``False``)
        pad_mode: Padding of half a frame at each end, ``"constant"`` or ``"reflect"``.
            (Default: ``"constant"``)
        float32_window: Compute the window in float32 and cast it to the signal's precision,
            as Demucs's and Open-Unmix's published models do. (Default: ``False``)
        scipy_scaling: Follow ``scipy.signal.stft``: zero-pad the signal at the end to a whole
            number of hops, and divide the spectra by the window's sum (which sets the size of
            a fixed ``eps`` relative to the signal, as in sigsep-mus-oracle). (Default:
            ``False``)
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        normalized: bool = False,
        pad_mode: PadMode = "constant",
        float32_window: bool = False,
        scipy_scaling: bool = False,
    ) -> None:
        super().__init__()
        if n_fft < 2:
            raise ValueError(f"n_fft must be at least 2, got {n_fft}")
        if not 0 < hop_length <= n_fft // 2:
            raise ValueError(
                f"hop_length must be in [1, n_fft // 2 = {n_fft // 2}] so that every sample is covered "
                f"by two windows, got {hop_length}"
            )
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.normalized = normalized
        self.pad_mode = pad_mode
        self.float32_window = float32_window
        self.scipy_scaling = scipy_scaling

    def extra_repr(self) -> str:
        return (
            f"n_fft={self.n_fft}, hop_length={self.hop_length}, normalized={self.normalized}, "
            f"pad_mode={self.pad_mode!r}, float32_window={self.float32_window}, "
            f"scipy_scaling={self.scipy_scaling}"
        )

    def window(self, like: Tensor) -> Tensor:
        """The Hann window for ``like``: its device and real dtype.

        Args:
            like: The signal or spectrogram it is used with.
        """
        return hann_window(self.n_fft, like, float32=self.float32_window)

    @full_precision
    def forward(self, signal: Tensor) -> Tensor:
        """Complex spectrograms ``[..., F, N]`` of real ``signal`` ``[..., T]``.

        Args:
            signal: Waveforms, time last, any leading dimensions.
        """
        window = self.window(signal)
        if self.scipy_scaling:
            # scipy pads with zeros so that the frames reach past the end by a whole hop.
            signal = F.pad(signal, (0, -signal.shape[-1] % self.hop_length))
        spectrum = stft(signal, self.n_fft, self.hop_length, window, self.normalized, self.pad_mode)
        return spectrum / window.sum() if self.scipy_scaling else spectrum

    @full_precision
    def inverse(self, spectrum: Tensor, length: int) -> Tensor:
        """Waveforms ``[..., length]`` from spectrograms ``[..., F, N]`` as :meth:`forward` makes
        them.

        Args:
            spectrum: Complex spectrograms, bins and frames last, any leading dimensions.
            length: Samples to return, usually the length of the analysed signal.
        """
        window = self.window(spectrum)
        if self.scipy_scaling:
            spectrum = spectrum * window.sum()
        return istft(spectrum, self.n_fft, self.hop_length, window, length, self.normalized)


__all__ = ["STFT", "PadMode", "hann_window", "istft", "real_edge_bins", "stft"]
