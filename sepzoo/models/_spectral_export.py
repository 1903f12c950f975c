"""The export plan of the spectrogram models (BSRNN, the RoFormers, MDX23C, SCNet).

Each of them splits its ``forward`` into an STFT, a real-valued core (the spectrum as
``[B, C, F, N, 2]`` in; masks or the stems' spectra as ``[B, S, C, F, N, 2]`` out) and complex
masking with the inverse STFT. The core is a method of the model, which ``forward`` calls too;
:class:`SpectralCore` makes it the module that is traced, and :func:`spectral_export` writes the
settings of the NumPy adapters in :mod:`sepzoo.deploy.spectral`.
"""

from __future__ import annotations

from torch import Tensor, nn

from sepzoo.deploy.spectral import INPUT_LAYOUT, OUTPUT_LAYOUT
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport


class SpectralCore(nn.Module):
    """A model's real-valued core method as a module of its own (the model's layers, no copies).

    Args:
        model: The separator.
        method: Name of its core method, ``spectrum [B, C, F, N, 2] -> [B, S, C, F, N, 2]``.
        export: Keyword arguments of the method when it is traced (e.g. to choose an exportable
            equivalent of an operation). (Default: none)
    """

    def __init__(self, model: Separator, method: str, export: dict[str, bool] | None = None) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.export = dict(export or {})

    def forward(self, spectrum: Tensor) -> Tensor:
        """The core's output for ``spectrum``.

        Args:
            spectrum: The mixture's STFT, real and imaginary parts last, ``[B, C, F, N, 2]``.
        """
        return getattr(self.model, self.method)(spectrum, **self.export)


def spectral_export(
    model: Separator,
    method: str,
    *,
    masks: bool,
    length: int,
    padded_length: int,
    n_fft: int,
    hop_length: int,
    win_length: int,
    window: str,
    normalized: bool,
    pad_mode: str,
    export: dict[str, bool] | None = None,
) -> OnnxExport:
    """The plan of a spectrogram model whose ``forward`` is STFT -> ``method`` -> iSTFT.

    Args:
        model: The separator.
        method: Its core method (see :class:`SpectralCore`).
        masks: The core outputs complex masks of the mixture's spectrum (else the stems' spectra).
        length: Samples per exported chunk.
        padded_length: Samples the chunk is zero-padded to at the end before the STFT; the
            inverse STFT gives as many, of which the first ``length`` are kept.
        n_fft: FFT size.
        hop_length: Samples between frames.
        win_length: Window length, at most ``n_fft`` (centred in the frame).
        window: ``"hann"`` (periodic) or ``"rectangular"``.
        normalized: The STFT is multiplied by ``1 / sqrt(n_fft)``.
        pad_mode: The STFT's padding of half a frame at each end, ``"constant"`` or ``"reflect"``.
        export: Keyword arguments of ``method`` in the traced core. (Default: none)
    """
    settings = {
        "n_fft": int(n_fft),
        "hop_length": int(hop_length),
        "win_length": int(win_length),
        "window": window,
        "normalized": bool(normalized),
        "pad_mode": pad_mode,
        "length": int(length),
        "padded_length": int(padded_length),
        "sources": len(model.sources),
        "input_layout": INPUT_LAYOUT,
        "output_layout": OUTPUT_LAYOUT,
    }
    return OnnxExport(
        core=SpectralCore(model, method, export),
        adapter="spectral_mask" if masks else "spectral_stems",
        settings=settings,
        input_names=["spectrum"],
        output_names=["masks" if masks else "spectra"],
    )


__all__ = ["SpectralCore", "spectral_export"]
