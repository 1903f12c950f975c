"""The adapters of the spectrogram models: an STFT before the graph, complex masking and the
inverse STFT after it.

BSRNN, BS-RoFormer, Mel-RoFormer, MDX23C and SCNet all compute the same three steps, which
differ only in their settings:

1. pad the mixture ``[B, C, T]`` with zeros at the end to ``padded_length`` samples and take the
   centred STFT of every channel (``n_fft``, ``hop_length``, a ``window`` of ``win_length``
   samples centred in the frame, ``normalized``, ``pad_mode``); the graph's input ``spectrum``
   is ``[B, C, F, N, 2]`` float32 (real and imaginary parts last, ``F = n_fft // 2 + 1``);
2. the graph: ``spectrum`` in, one float32 output ``[B, S, C, F, N, 2]`` out: a complex mask of
   the mixture's spectrum (adapter ``"spectral_mask"``), or each source's spectrum itself
   (adapter ``"spectral_stems"``);
3. the stems' spectra (mask times mixture, or the output as it is) through the inverse STFT at
   ``padded_length`` samples, cut back to the first ``length`` samples.

Settings (all required but ``window``, ``pad_mode``, ``normalized`` and ``padded_length``):

* ``n_fft``, ``hop_length``, ``win_length``: ints; ``window``: ``"hann"`` (periodic) or
  ``"rectangular"``; ``normalized``: bool (``1 / sqrt(n_fft)``); ``pad_mode``: ``"constant"``
  or ``"reflect"``;
* ``length``: the exported chunk's samples; ``padded_length``: samples after the zero padding
  (default ``length``);
* ``sources``: number of stems;
* ``input_layout`` ``"B,C,F,N,2"`` and ``output_layout`` ``"B,S,C,F,N,2"``: the only layouts,
  written down so that a manifest says what the graph's axes are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sepzoo.deploy.adapters import Adapter, channels_to_complex, complex_to_channels, register_adapter
from sepzoo.deploy.dsp import PAD_MODES, hann_window, istft, stft

INPUT_LAYOUT = "B,C,F,N,2"
"""Axes of the graph's ``spectrum`` input."""

OUTPUT_LAYOUT = "B,S,C,F,N,2"
"""Axes of the graph's output."""

WINDOWS = ("hann", "rectangular")


class SpectralAdapter(Adapter):
    """STFT -> graph -> (masking) -> inverse STFT; see the module's documentation.

    Args:
        settings: The adapter's settings.

    Raises:
        ValueError: A setting is missing or has a value this adapter cannot run.
    """

    output_name = ""
    masks = False

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        for key in ("n_fft", "hop_length", "win_length", "length", "sources"):
            if key not in self.settings:
                raise ValueError(f"{self.name} adapter settings lack {key!r}")
        self.n_fft = int(self.settings["n_fft"])
        self.hop_length = int(self.settings["hop_length"])
        self.length = int(self.settings["length"])
        self.padded_length = int(self.settings.get("padded_length", self.length))
        self.normalized = bool(self.settings.get("normalized", False))
        self.pad_mode = str(self.settings.get("pad_mode", "constant"))
        window = str(self.settings.get("window", "hann"))
        win_length = int(self.settings["win_length"])
        if window not in WINDOWS:
            raise ValueError(f"{self.name} adapter: window must be one of {WINDOWS}, got {window!r}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(
                f"{self.name} adapter: pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}"
            )
        if self.padded_length < self.length:
            raise ValueError(
                f"{self.name} adapter: padded_length {self.padded_length} is below length {self.length}"
            )
        for key, expected in (("input_layout", INPUT_LAYOUT), ("output_layout", OUTPUT_LAYOUT)):
            if self.settings.get(key, expected) != expected:
                raise ValueError(
                    f"{self.name} adapter: {key} must be {expected!r}, got {self.settings[key]!r}"
                )
        self.window = hann_window(win_length) if window == "hann" else np.ones(win_length)

    def inputs(self, mix: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
        if mix.shape[-1] != self.length:
            raise ValueError(
                f"{self.name} adapter: the graph takes {self.length} samples, got {mix.shape[-1]}"
            )
        padded = np.pad(
            np.asarray(mix, dtype=np.float64), [(0, 0), (0, 0), (0, self.padded_length - self.length)]
        )
        spectrum = stft(padded, self.n_fft, self.hop_length, self.window, self.normalized, self.pad_mode)
        return {"spectrum": complex_to_channels(spectrum)}, spectrum  # B, C, F, N, 2

    def outputs(self, results: Mapping[str, np.ndarray], state: Any, mix: np.ndarray) -> np.ndarray:
        estimate = channels_to_complex(results[self.output_name])  # B, S, C, F, N
        stems = estimate * state[:, None] if self.masks else estimate
        waves = istft(stems, self.n_fft, self.hop_length, self.window, self.padded_length, self.normalized)
        return np.ascontiguousarray(waves[..., : self.length], dtype=np.float32)  # B, S, C, T


@register_adapter("spectral_mask")
class SpectralMaskAdapter(SpectralAdapter):
    """The graph's output ``masks`` multiplies the mixture's spectrum (BSRNN, the RoFormers)."""

    output_name = "masks"
    masks = True


@register_adapter("spectral_stems")
class SpectralStemsAdapter(SpectralAdapter):
    """The graph's output ``spectra`` holds the stems' spectra themselves (MDX23C, SCNet)."""

    output_name = "spectra"
    masks = False


__all__ = ["INPUT_LAYOUT", "OUTPUT_LAYOUT", "SpectralAdapter", "SpectralMaskAdapter", "SpectralStemsAdapter"]
