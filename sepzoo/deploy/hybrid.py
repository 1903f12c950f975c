"""The adapter of Hybrid Demucs and HT Demucs: the steps around their exported network, in NumPy.

Both models run a temporal branch on the waveform and a frequency branch on Demucs's STFT, and
sum the two. The graph is the network of both branches; around it, as
:class:`~sepzoo.models.hybrid_demucs.HybridDemucs` computes them:

1. the mixture ``[B, C, T]`` (``T = length``) is zero-padded at the end to ``padded_length``
   samples (HT Demucs's training segment, or more than half a frame for a spectrogram-only
   model), the graph's input ``mix``;
2. Demucs's spectrogram: with ``hybrid``, the signal is padded by ``3 * hop // 2`` samples on the
   left and as many plus the rounding to whole hops on the right (a reflection, zeros with
   ``hybrid_old``) and frames ``2 .. 2 + ceil(T / hop)`` are kept, so that frame ``n`` is
   centred on sample ``n * hop``; the centred STFT (``nfft``, ``hop``, periodic Hann window,
   ``normalized``, reflect padding) loses its top bin. The graph's input ``spec`` is that
   spectrum's real and imaginary parts as channels (``cac``: ``[B, 2C, Fr, N]``, channel
   ``2c + k`` holding part ``k`` of channel ``c``) or its magnitudes (``[B, C, Fr, N]``);
3. the graph's output ``freq`` ``[B, S, C', Fr, N]`` becomes the stems' complex spectra: read
   as real and imaginary channels (``cac``), or, from magnitudes, the mixture's phase
   (``wiener_iters < 0``) or Demucs's multichannel Wiener filter (``wiener_iters`` rounds, an
   extra residual source with ``wiener_residual``) over windows of ``wiener_window`` frames,
   item by item;
4. the inverse of step 2 (the top bin put back as zeros, two empty frames on each side), plus
   the graph's output ``time`` ``[B, S, C, T]`` (the temporal branch), cut to ``length``.

Without ``hybrid`` (a spectrogram-only Hybrid Demucs) there is no padding around the STFT, no
``mix`` input and no ``time`` output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sepzoo.deploy.adapters import Adapter, register_adapter
from sepzoo.deploy.dsp import hann_window, istft, stft
from sepzoo.deploy.wiener import demucs_wiener

REQUIRED = (
    "length",
    "sources",
    "audio_channels",
    "nfft",
    "hop",
    "hybrid",
    "hybrid_old",
    "cac",
    "wiener_iters",
    "wiener_residual",
    "wiener_window",
)
"""Settings the adapter cannot run without."""


def pad_reflect(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """Reflect-pad the last axis of ``x``, even when it is shorter than the padding:
    :func:`sepzoo.models.hybrid_demucs.pad_reflect` in NumPy (zeros first fill what a reflection
    cannot reach, on the right unless the right padding is too small for them).

    Args:
        x: Signal, time last.
        left: Samples to add on the left.
        right: Samples to add on the right.
    """
    length = x.shape[-1]
    if length <= max(left, right):
        missing = max(left, right) - length + 1
        zeros_right = min(right, missing)
        zeros_left = missing - zeros_right
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(zeros_left, zeros_right)])
        left, right = left - zeros_left, right - zeros_right
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(left, right)], mode="reflect")


@register_adapter("hybrid_demucs")
class HybridDemucsAdapter(Adapter):
    """Demucs's STFT before the graph; the stems' spectra, the inverse STFT and the sum of the
    branches after it (see the module's documentation).

    Args:
        settings: The adapter's settings: ``length``, ``padded_length`` (default ``length``),
            ``sources``, ``audio_channels``, ``nfft``, ``hop``, ``hybrid``, ``hybrid_old``,
            ``cac``, ``wiener_iters``, ``wiener_residual``, ``wiener_window``, and optionally
            ``window`` (``"hann"``), ``normalized`` (``True``) and ``pad_mode``
            (``"reflect"``), which are the only values Demucs uses.

    Raises:
        ValueError: A setting is missing or has a value this adapter cannot run.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        for key in REQUIRED:
            if key not in self.settings:
                raise ValueError(f"hybrid_demucs adapter settings lack {key!r}")
        for key, expected in (("window", "hann"), ("normalized", True), ("pad_mode", "reflect")):
            if self.settings.get(key, expected) != expected:
                raise ValueError(
                    f"hybrid_demucs adapter: {key} must be {expected!r}, got {self.settings[key]!r}"
                )
        self.length = int(self.settings["length"])
        self.padded_length = int(self.settings.get("padded_length", self.length))
        if self.padded_length < self.length:
            raise ValueError(
                f"hybrid_demucs adapter: padded_length {self.padded_length} is below length {self.length}"
            )
        self.sources = int(self.settings["sources"])
        self.channels = int(self.settings["audio_channels"])
        self.nfft = int(self.settings["nfft"])
        self.hop = int(self.settings["hop"])
        self.hybrid = bool(self.settings["hybrid"])
        self.hybrid_old = bool(self.settings["hybrid_old"])
        self.cac = bool(self.settings["cac"])
        self.wiener_iters = int(self.settings["wiener_iters"])
        self.wiener_residual = bool(self.settings["wiener_residual"])
        self.wiener_window = int(self.settings["wiener_window"])
        self.window = hann_window(self.nfft)
        # Demucs's padding around the STFT (hybrid mode): 1.5 hops and the rounding to whole hops.
        self.frames = math.ceil(self.padded_length / self.hop)
        self.side = self.hop // 2 * 3

    def inputs(self, mix: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
        if mix.ndim != 3 or mix.shape[1] != self.channels or mix.shape[-1] != self.length:
            raise ValueError(
                f"hybrid_demucs adapter: the graph takes [batch, {self.channels}, {self.length}], "
                f"got {list(mix.shape)}"
            )
        padded = np.pad(
            np.asarray(mix, dtype=np.float32), [(0, 0), (0, 0), (0, self.padded_length - self.length)]
        )
        spectrum = self._spectrogram(padded.astype(np.float64))  # B, C, Fr, N (complex)
        if self.cac:
            batch, channels, bins, frames = spectrum.shape
            parts = np.stack([spectrum.real, spectrum.imag], axis=2)  # B, C, 2, Fr, N
            spec = parts.reshape(batch, 2 * channels, bins, frames)
        else:
            spec = np.abs(spectrum)
        feeds = {"spec": np.ascontiguousarray(spec, dtype=np.float32)}
        if self.hybrid:
            feeds["mix"] = np.ascontiguousarray(padded)
        return feeds, spectrum

    def outputs(self, results: Mapping[str, np.ndarray], state: Any, mix: np.ndarray) -> np.ndarray:
        spectrum = state
        estimate = np.asarray(results["freq"], dtype=np.float64)  # B, S, C', Fr, N
        stems = self._stem_spectrograms(spectrum, estimate)  # B, S, C, Fr, N (complex)
        out = self._waveform(stems)  # B, S, C, T
        if self.hybrid:
            out = np.asarray(results["time"], dtype=np.float64) + out
        return np.ascontiguousarray(out[..., : self.length], dtype=np.float32)

    def _spectrogram(self, signal: np.ndarray) -> np.ndarray:
        """Demucs's STFT ``[B, C, nfft / 2, N]`` of ``signal`` ``[B, C, padded_length]``."""
        x = signal
        if self.hybrid:
            right = self.side + self.frames * self.hop - signal.shape[-1]
            if self.hybrid_old:
                x = np.pad(signal, [(0, 0), (0, 0), (self.side, right)])
            else:
                x = pad_reflect(signal, self.side, right)
        spectrum = stft(x, self.nfft, self.hop, self.window, normalized=True, pad_mode="reflect")
        spectrum = spectrum[..., :-1, :]  # the top bin dropped
        if self.hybrid:
            spectrum = spectrum[..., 2 : 2 + self.frames]
        return spectrum

    def _waveform(self, stems: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`_spectrogram` for ``stems`` ``[B, S, C, Fr, N]``."""
        widths = [(0, 0)] * (stems.ndim - 2)
        z = np.pad(stems, [*widths, (0, 1), (0, 0)])  # the top bin back, as zeros
        total = self.padded_length
        if self.hybrid:
            z = np.pad(z, [*widths, (0, 0), (2, 2)])
            total = self.hop * self.frames + (0 if self.hybrid_old else 2 * self.side)
        signal = istft(z, self.nfft, self.hop, self.window, total, normalized=True)
        if self.hybrid and not self.hybrid_old:
            return signal[..., self.side : self.side + self.padded_length]
        # hybrid_old models were trained with this misalignment (no removal of the padding).
        return signal[..., : self.padded_length]

    def _stem_spectrograms(self, spectrum: np.ndarray, estimate: np.ndarray) -> np.ndarray:
        """The stems' complex spectra ``[B, S, C, Fr, N]`` from the graph's ``freq``."""
        if self.cac:
            batch, sources, _, bins, frames = estimate.shape
            parts = estimate.reshape(batch, sources, -1, 2, bins, frames)
            return parts[:, :, :, 0] + 1j * parts[:, :, :, 1]
        if self.wiener_iters < 0:
            return spectrum[:, None] / (1e-8 + np.abs(spectrum)[:, None]) * estimate
        frames = spectrum.shape[-1]
        items = []
        for item in range(spectrum.shape[0]):
            windows = [
                demucs_wiener(
                    estimate[item, ..., start : start + self.wiener_window],
                    spectrum[item, ..., start : start + self.wiener_window],
                    self.wiener_iters,
                    residual=self.wiener_residual,
                )[: self.sources]
                for start in range(0, frames, self.wiener_window)
            ]
            items.append(np.concatenate(windows, axis=-1))  # S, C, Fr, N
        return np.stack(items)  # B, S, C, Fr, N


__all__ = ["HybridDemucsAdapter", "pad_reflect"]
