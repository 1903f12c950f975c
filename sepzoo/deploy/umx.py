"""The NumPy steps around an exported Open-Unmix graph (adapter ``open_unmix``).

Before the graph: the mixture's centred STFT with a Hann window, handed over as real and
imaginary parts (``spectrum``, ``[B, C, F, N, 2]``). After it: the masks ``[B, S, C, F, N]``
multiply the mixture's spectrogram, or, with the Wiener filter enabled, give the magnitude
estimates that :func:`sepzoo.deploy.wiener.wiener_filter` refines in windows of
``wiener_window`` frames, as :meth:`sepzoo.models.open_unmix.OpenUnmix.stem_spectrograms` does in
evaluation mode; then the inverse STFT.

Settings: ``n_fft``, ``hop_length``, ``normalized``, ``pad_mode``, ``sources`` (the number of
targets), ``wiener_iterations``, ``wiener_softmask``, ``wiener_residual`` and ``wiener_window``
(frames, or ``None`` for the whole chunk).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sepzoo.deploy.adapters import Adapter, complex_to_channels, register_adapter
from sepzoo.deploy.dsp import hann_window, istft, stft
from sepzoo.deploy.wiener import wiener_filter


@register_adapter("open_unmix")
class OpenUnmixAdapter(Adapter):
    """Input ``spectrum`` ``[B, C, F, N, 2]``, output ``masks`` ``[B, S, C, F, N]``."""

    def _stft_settings(self) -> tuple[int, int, np.ndarray, bool]:
        n_fft = int(self.settings["n_fft"])
        return n_fft, int(self.settings["hop_length"]), hann_window(n_fft), bool(self.settings["normalized"])

    def inputs(self, mix: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
        n_fft, hop, window, normalized = self._stft_settings()
        spectrum = stft(mix, n_fft, hop, window, normalized, self.settings["pad_mode"])  # B, C, F, N
        return {"spectrum": complex_to_channels(spectrum)}, spectrum

    def outputs(self, results: Mapping[str, np.ndarray], state: Any, mix: np.ndarray) -> np.ndarray:
        n_fft, hop, window, normalized = self._stft_settings()
        mix_stft = state  # B, C, F, N
        masks = np.asarray(results["masks"], dtype=np.float64)  # B, S, C, F, N
        iterations = int(self.settings["wiener_iterations"])
        softmask = bool(self.settings["wiener_softmask"])
        if iterations == 0 and not softmask:
            stems = masks * mix_stft[:, None]
        else:
            magnitudes = masks * np.abs(mix_stft)[:, None]
            frames = mix_stft.shape[-1]
            size = self.settings["wiener_window"] or frames
            stems = np.concatenate(
                [
                    wiener_filter(
                        magnitudes[..., start : start + size],
                        mix_stft[..., start : start + size],
                        iterations,
                        softmask=softmask,
                        residual=bool(self.settings["wiener_residual"]),
                    )[:, : int(self.settings["sources"])]
                    for start in range(0, frames, size)
                ],
                axis=-1,
            )
        waves = istft(stems, n_fft, hop, window, mix.shape[-1], normalized)  # B, S, C, T
        return waves.astype(np.float32)


__all__ = ["OpenUnmixAdapter"]
