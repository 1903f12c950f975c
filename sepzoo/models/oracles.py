"""Oracle baselines: upper bounds computed from the true stems, and the mixture baseline.

The oracles follow the definitions of sigsep's ``sigsep-mus-oracle`` (the oracle entries of the
SiSEC 2018 evaluation campaign, Stöter, Liutkus & Ito, "The 2018 Signal Separation Evaluation
Campaign", LVA/ICA 2018):

* **IRM1 / IRM2**, ideal ratio masks: each channel of the mixture STFT is multiplied by
  ``|S_j|^a / (eps + sum_k |S_k|^a)`` with ``a = 1`` (magnitudes) or ``a = 2`` (powers).
* **IBM1 / IBM2**, ideal binary masks: the mixture goes to source ``j`` wherever
  ``|S_j|^a / (eps + |X|^a) >= theta`` (``theta = 0.5``, a majority vote); several sources may
  claim a bin and a bin may go to none.
* **MWF**, the multichannel Wiener filter of the local Gaussian model with time-invariant
  spatial covariance matrices estimated from each true stem over the whole track.
* **MIX**: the mixture as every source's estimate (no separation at all).

All STFTs are scipy's defaults in mus-oracle: a periodic Hann window of 2048 samples, hop
1024, zero padding of half a window at both ends, the signal zero-padded to a whole number of
hops, and spectra scaled by the window's sum (which sets the size of ``eps`` relative to the
signal). The masks are computed in float64.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sepzoo import DEFAULT_SOURCES
from sepzoo.dsp.stft import STFT
from sepzoo.dsp.wiener import (
    explained_power_spectral_density,
    normalised_spatial_covariance,
    power_spectral_density,
    wiener_gains_apply,
)
from sepzoo.models import register_model
from sepzoo.models.base import Separator

EPS = float(torch.finfo(torch.float64).eps)
"""The ``eps`` of mus-oracle (NumPy's float64 epsilon)."""


class _Oracle(Separator):
    """Shared set-up of the oracle baselines: sources, rate, channels and the STFT."""

    domain = "oracle"
    needs_references = True

    def __init__(
        self,
        sources: list[str] | None = None,
        sample_rate: int = 44100,
        audio_channels: int = 2,
        n_fft: int = 2048,
        hop_length: int = 1024,
    ) -> None:
        super().__init__(list(sources or DEFAULT_SOURCES), sample_rate, audio_channels, segment=None)
        self.stft = STFT(n_fft, hop_length, scipy_scaling=True)

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        """Separate ``mix`` (``[B, C, T]``) with the help of the true stems.

        Args:
            mix: The mixture, ``[batch, audio_channels, time]``.
            references: The true stems ``[batch, sources, audio_channels, time]``; the sources
                must be all the stems of the mixture, since the masks weigh each against the
                others.
        """
        self.check_input(mix, references)
        assert references is not None  # check_input refuses a missing one
        mix_spectra = self.stft(mix.double())  # B, C, F, N
        stem_spectra = self.stft(references.double())  # B, S, C, F, N
        estimates = self.separate(mix_spectra, stem_spectra)  # B, S, C, F, N
        return self.stft.inverse(estimates, mix.shape[-1]).to(mix.dtype)  # B, S, C, T

    def separate(self, mix_spectra: Tensor, stem_spectra: Tensor) -> Tensor:
        """The estimated spectra ``[B, S, C, F, N]``.

        Args:
            mix_spectra: The mixture's spectra, ``[B, C, F, N]``.
            stem_spectra: The true stems' spectra, ``[B, S, C, F, N]``.
        """
        raise NotImplementedError


class _MaskOracle(_Oracle):
    """Shared set-up of the mask oracles, which compare spectrograms raised to ``alpha``."""

    def __init__(
        self,
        sources: list[str] | None = None,
        sample_rate: int = 44100,
        audio_channels: int = 2,
        n_fft: int = 2048,
        hop_length: int = 1024,
        alpha: float = 2.0,
    ) -> None:
        super().__init__(sources, sample_rate, audio_channels, n_fft, hop_length)
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.alpha = float(alpha)


@register_model("irm2")
class IdealRatioMask(_MaskOracle):
    """Ideal ratio mask of ``|STFT|^alpha``, per channel (mus-oracle's ``IRM``).

    Args:
        sources: The stems of the mixture, in output order. (Default: drums, bass, other,
            vocals)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Number of channels. (Default: ``2``)
        n_fft: STFT window and FFT size. (Default: ``2048``)
        hop_length: STFT hop. (Default: ``1024``)
        alpha: Exponent of the spectrograms: 1 for magnitudes, 2 for powers. (Default: ``2``)
    """

    test_kwargs: ClassVar[dict] = {"n_fft": 64, "hop_length": 32}

    def separate(self, mix_spectra: Tensor, stem_spectra: Tensor) -> Tensor:
        powers = stem_spectra.abs() ** self.alpha  # B, S, C, F, N
        masks = powers / (EPS + powers.sum(dim=1, keepdim=True))  # B, S, C, F, N
        return masks * mix_spectra.unsqueeze(1)


@register_model("irm1")
class IdealRatioMaskMagnitude(IdealRatioMask):
    """The ideal ratio mask of magnitudes (``alpha = 1``); see :class:`IdealRatioMask`."""

    variant_defaults: ClassVar[dict] = {"alpha": 1.0}


@register_model("ibm2")
class IdealBinaryMask(_MaskOracle):
    """Ideal binary mask: each mixture bin goes to the sources that hold at least ``theta`` of
    it, measured as ``|S_j|^alpha / |X|^alpha`` per channel (mus-oracle's ``IBM``).

    Args:
        sources: The stems of the mixture, in output order. (Default: drums, bass, other,
            vocals)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Number of channels. (Default: ``2``)
        n_fft: STFT window and FFT size. (Default: ``2048``)
        hop_length: STFT hop. (Default: ``1024``)
        alpha: Exponent of the spectrograms: 1 for magnitudes, 2 for powers. (Default: ``2``)
        theta: Share of the mixture a source needs to claim a bin. (Default: ``0.5``)
    """

    test_kwargs: ClassVar[dict] = {"n_fft": 64, "hop_length": 32}

    def __init__(
        self,
        sources: list[str] | None = None,
        sample_rate: int = 44100,
        audio_channels: int = 2,
        n_fft: int = 2048,
        hop_length: int = 1024,
        alpha: float = 2.0,
        theta: float = 0.5,
    ) -> None:
        super().__init__(sources, sample_rate, audio_channels, n_fft, hop_length, alpha)
        if not 0 < theta <= 1:
            raise ValueError(f"theta must be in (0, 1], got {theta}")
        self.theta = float(theta)

    def separate(self, mix_spectra: Tensor, stem_spectra: Tensor) -> Tensor:
        mix = mix_spectra.unsqueeze(1)  # B, 1, C, F, N
        ratios = stem_spectra.abs() ** self.alpha / (EPS + mix.abs() ** self.alpha)  # B, S, C, F, N
        return (ratios >= self.theta) * mix


@register_model("ibm1")
class IdealBinaryMaskMagnitude(IdealBinaryMask):
    """The ideal binary mask of magnitudes (``alpha = 1``); see :class:`IdealBinaryMask`."""

    variant_defaults: ClassVar[dict] = {"alpha": 1.0}


@register_model("mwf")
class OracleWienerFilter(_Oracle):
    """Multichannel Wiener filter with oracle parameters (mus-oracle's ``MWF``).

    For each source ``j``, from its true STFT ``S_j`` (``[C, F, N]``):

    1. a first power spectral density ``v_j(f, n) = mean_c |S_j(c, f, n)|^2``;
    2. a spatial covariance per frequency, the average over the whole track of
       ``S_j S_j^H / (eps + v_j)``, scaled to trace ``C`` and regularised by ``eps * I``;
    3. a refined density ``v_j = Re tr(R_j^-1 S_j S_j^H) / C``.

    The mixture covariance is ``C_x = sum_j v_j R_j``, and each estimate is
    ``v_j R_j C_x^-1 x``. Matrices are inverted with ``eps`` added to the determinant (the
    closed form for stereo; ``1 / (eps + m)`` for mono). The covariances span the track, so
    the model must see whole tracks.

    Args:
        sources: The stems of the mixture, in output order. (Default: drums, bass, other,
            vocals)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Number of channels. (Default: ``2``)
        n_fft: STFT window and FFT size. (Default: ``2048``)
        hop_length: STFT hop. (Default: ``1024``)
    """

    whole_track = True
    test_kwargs: ClassVar[dict] = {"n_fft": 64, "hop_length": 32}

    def separate(self, mix_spectra: Tensor, stem_spectra: Tensor) -> Tensor:
        density = power_spectral_density(stem_spectra)  # B, S, F, N
        covariance = normalised_spatial_covariance(stem_spectra, density, EPS)  # B, S, F, C, C
        density = explained_power_spectral_density(stem_spectra, covariance, determinant_eps=EPS)
        return wiener_gains_apply(
            mix_spectra, density, covariance, ridge=0.0, determinant_eps=EPS
        )  # B, S, C, F, N


@register_model("mix")
class MixtureBaseline(Separator):
    """The mixture itself as the estimate of every source: the score of doing nothing.

    Args:
        sources: The stems of the mixture, in output order. (Default: drums, bass, other,
            vocals)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Number of channels. (Default: ``2``)
    """

    domain = "oracle"

    def __init__(
        self, sources: list[str] | None = None, sample_rate: int = 44100, audio_channels: int = 2
    ) -> None:
        super().__init__(list(sources or DEFAULT_SOURCES), sample_rate, audio_channels, segment=None)

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        """Copy ``mix`` (``[B, C, T]``) to every source, ``[B, S, C, T]``.

        Args:
            mix: The mixture, ``[batch, audio_channels, time]``.
            references: Not used. (Default: ``None``)
        """
        self.check_input(mix)
        return mix.unsqueeze(1).expand(-1, len(self.sources), -1, -1).clone()
