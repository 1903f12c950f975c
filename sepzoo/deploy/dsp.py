"""The STFT and inverse STFT in NumPy, as :mod:`sepzoo.dsp.stft` computes them with torch.

Signals are ``[..., T]`` and spectrograms ``[..., F, N]`` (``F = n_fft // 2 + 1`` bins, ``N``
frames), frames centred on ``n * hop``. The transforms run in float64 and return complex128 /
float64; callers cast to float32 where a graph wants it.
"""

from __future__ import annotations

import numpy as np

PAD_MODES = ("constant", "reflect")


def hann_window(length: int) -> np.ndarray:
    """The periodic Hann window of ``length`` samples (``torch.hann_window``'s), float64.

    Args:
        length: Window length in samples.
    """
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def _full_window(window: np.ndarray, n_fft: int) -> np.ndarray:
    """``window`` centred in a frame of ``n_fft`` samples (zeros around a shorter one)."""
    if window.shape[-1] > n_fft:
        raise ValueError(f"a window of {window.shape[-1]} samples does not fit n_fft={n_fft}")
    left = (n_fft - window.shape[-1]) // 2
    return np.pad(window, (left, n_fft - window.shape[-1] - left))


def stft(
    signal: np.ndarray,
    n_fft: int,
    hop_length: int,
    window: np.ndarray,
    normalized: bool = False,
    pad_mode: str = "constant",
) -> np.ndarray:
    """The centred STFT of real ``signal`` ``[..., T]``, complex ``[..., F, N]`` with
    ``N = 1 + T // hop_length``; :func:`sepzoo.dsp.stft.stft` in NumPy.

    Args:
        signal: Real waveforms, time last, any leading dimensions.
        n_fft: FFT size.
        hop_length: Samples between frames.
        window: The window, of at most ``n_fft`` samples; a shorter one is centred in the frame.
        normalized: Multiply by ``1 / sqrt(n_fft)``. (Default: ``False``)
        pad_mode: ``"constant"`` (zeros) or ``"reflect"`` padding of half a frame at each end.
            (Default: ``"constant"``)
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    signal = np.asarray(signal, dtype=np.float64)
    half = n_fft // 2
    widths = [(0, 0)] * (signal.ndim - 1) + [(half, half)]
    padded = np.pad(signal, widths, mode=pad_mode)
    frames = 1 + signal.shape[-1] // hop_length
    starts = np.arange(frames) * hop_length
    index = starts[:, None] + np.arange(n_fft)[None, :]  # N, n_fft
    windowed = padded[..., index] * _full_window(np.asarray(window, dtype=np.float64), n_fft)
    spectrum = np.fft.rfft(windowed, n=n_fft, axis=-1)  # ..., N, F
    if normalized:
        spectrum = spectrum / np.sqrt(n_fft)
    return np.swapaxes(spectrum, -1, -2)


def _overlap_add(frames: np.ndarray, hop_length: int, total: int) -> np.ndarray:
    """Sum frames ``[..., N, n_fft]`` placed ``hop_length`` apart into ``[..., total]``.

    The frames are cut into hop-long pieces, and piece ``j`` of every frame is added at once: a
    loop over the ``ceil(n_fft / hop)`` pieces of a frame instead of over the frames.
    """
    count, n_fft = frames.shape[-2:]
    pieces = -(-n_fft // hop_length)
    frames = np.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(0, pieces * hop_length - n_fft)])
    frames = frames.reshape(*frames.shape[:-1], pieces, hop_length)  # ..., N, pieces, hop
    blocks = np.zeros((*frames.shape[:-3], count + pieces - 1, hop_length))
    for piece in range(pieces):
        blocks[..., piece : piece + count, :] += frames[..., piece, :]
    return blocks.reshape(*blocks.shape[:-2], -1)[..., :total]


def istft(
    spectrum: np.ndarray,
    n_fft: int,
    hop_length: int,
    window: np.ndarray,
    length: int,
    normalized: bool = False,
) -> np.ndarray:
    """Real waveforms ``[..., length]`` from complex ``[..., F, N]``: the inverse of :func:`stft`
    (least-squares overlap-add, as ``torch.istft``), with the imaginary parts of the DC and
    Nyquist bins ignored as :func:`sepzoo.dsp.stft.real_edge_bins` does.

    Args:
        spectrum: Complex spectrograms, bins and frames last, any leading dimensions.
        n_fft: FFT size.
        hop_length: Samples between frames.
        window: The window of the forward transform.
        length: Samples to return from the centre of the first frame on.
        normalized: The forward transform was normalised. (Default: ``False``)
    """
    spectrum = np.asarray(spectrum)
    if normalized:
        spectrum = spectrum * np.sqrt(n_fft)
    # irfft ignores the imaginary parts of the DC and Nyquist bins, as real_edge_bins asks.
    frames = np.fft.irfft(np.swapaxes(spectrum, -1, -2), n=n_fft, axis=-1)  # ..., N, n_fft
    full = _full_window(np.asarray(window, dtype=np.float64), n_fft)
    frames = frames * full
    count = frames.shape[-2]
    total = n_fft + hop_length * (count - 1)
    signal = _overlap_add(frames, hop_length, total)
    norm = _overlap_add(np.broadcast_to(full**2, (count, n_fft)), hop_length, total)
    half = n_fft // 2
    end = half + length
    if end > total:
        signal = np.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(0, end - total)])
        norm = np.pad(norm, (0, end - total))
    signal, norm = signal[..., half:end], norm[half:end]
    return signal / np.where(norm > 1e-11, norm, 1.0)


__all__ = ["PAD_MODES", "hann_window", "istft", "stft"]
