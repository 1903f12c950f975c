"""Multichannel Wiener filtering of short-time Fourier transforms.

The local Gaussian model of Duong, Vincent & Gribonval (2010), as used by norbert and Open-Unmix
(``openunmix.filtering``): in every time-frequency bin ``(f, t)``, each source ``j`` is a
zero-mean complex Gaussian vector over the ``C`` channels with covariance ``v_j(f, t) R_j(f)``,
the product of a power spectral density that changes over time and a spatial covariance matrix
that does not. Given those, the minimum mean squared error estimate of source ``j`` from the
mixture ``x(f, t)`` is ``W_j(f, t) x(f, t)`` with the multichannel Wiener gain

    ``W_j = v_j R_j (sum_k v_k R_k)^-1``.

:func:`power_spectral_density` and :func:`spatial_covariance` estimate ``v_j`` and ``R_j`` from a
(true or estimated) source STFT, :func:`wiener_gains_apply` separates a mixture with them, and
:func:`expectation_maximization` alternates the two, starting from initial estimates (Nugraha,
Liutkus & Vincent 2016, "Multichannel audio source separation with deep neural networks").
:func:`wiener_filter` is the whole post-processing of Open-Unmix: initial estimates from
magnitude estimates, an optional residual source, and the iterations.

The same machinery serves the two other references sepzoo matches, with their numerics as
options: :func:`demucs_wiener` is Demucs's copy of that post-processing (its own start from the
mixture's phase and its float32 constants), and the oracle multichannel Wiener filter of
sigsep-mus-oracle separates with :func:`wiener_gains_apply` from the statistics of
:func:`normalised_spatial_covariance` and :func:`explained_power_spectral_density`, with no ridge
and ``eps`` added to the determinants instead.

Shapes put channels, frequencies and frames last: an STFT is ``[..., C, F, T]`` (``C`` is 1 or
2), power spectral densities ``[..., F, T]`` and spatial covariances ``[..., F, C, C]``. Every
function computes in double precision (``complex128``), where the 2x2 inversions of nearly
singular matrices need it, and returns results in the precision of its input; the filters a
model calls (:func:`wiener_filter`, :func:`demucs_wiener`, :func:`wiener_gains_apply`,
:func:`expectation_maximization`) run with autocast off and return half-precision inputs'
results in float32 (:func:`~sepzoo.dsp.precision.full_precision`).

Regularisation: the mixture covariance gets ``sqrt(eps)`` times the identity (the ridge)
added before it is inverted, as norbert does. Its determinant is then at least ``eps`` (the
source covariances are Hermitian positive semi-definite), and in bins where every source's
modelled power is far below ``sqrt(eps)`` the gains go to zero: ``eps`` acts as the power of a
white noise that the filter takes out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sepzoo.dsp.precision import full_precision

FRAMES_PER_BLOCK = 256
"""Frames whose gains :func:`wiener_gains_apply` forms at once, which bounds its memory."""

TINY = float(torch.finfo(torch.float64).tiny)
"""Smallest positive float64: the floor of a trace before it divides, so silence gives zeros."""


def _double(x: Tensor) -> Tensor:
    """``x`` in double precision: ``complex128`` for complex tensors, ``float64`` otherwise."""
    return x.to(torch.complex128 if x.is_complex() else torch.float64)


def _check_channels(channels: int, where: str) -> None:
    if channels not in (1, 2):
        raise ValueError(f"the Wiener filter handles 1 or 2 channels, got {channels} in {where}")


def power_spectral_density(stft: Tensor) -> Tensor:
    """The power spectral density of a source: ``|X|^2`` averaged over channels.

    Args:
        stft: Complex STFT, ``[..., C, F, T]``.

    Returns:
        ``[..., F, T]``, real, in the precision of ``stft``.
    """
    if stft.dim() < 3 or not stft.is_complex():
        raise ValueError(
            f"expected a complex STFT of shape [..., channels, freqs, frames], got {list(stft.shape)}"
        )
    power = _double(stft).abs().square().mean(dim=-3)  # ..., F, T
    return power.to(stft.real.dtype)


def spatial_covariance(stft: Tensor, psd: Tensor, eps: float = 1e-10) -> Tensor:
    """The time-invariant spatial covariance of a source, as norbert estimates it:
    ``R(f) = sum_t X(f, t) X(f, t)^H / (eps + sum_t v(f, t))``.

    Weighting by the power spectral density ``v`` makes ``R`` a channel correlation that is
    independent of the source's loudness; with ``v`` from :func:`power_spectral_density` its
    trace is ``C`` (up to ``eps``).

    Args:
        stft: Complex STFT of the source, ``[..., C, F, T]``.
        psd: Its power spectral density, ``[..., F, T]``.
        eps: Added to the summed power before the division, so that silent sources give zero.
            (Default: ``1e-10``)

    Returns:
        ``[..., F, C, C]``, complex, Hermitian, in the precision of ``stft``.
    """
    if stft.dim() < 3 or not stft.is_complex():
        raise ValueError(
            f"expected a complex STFT of shape [..., channels, freqs, frames], got {list(stft.shape)}"
        )
    expected = list(stft.shape[:-3]) + list(stft.shape[-2:])
    if list(psd.shape) != expected:
        raise ValueError(
            f"expected psd of shape {expected} for an STFT {list(stft.shape)}, got {list(psd.shape)}"
        )
    _check_channels(stft.shape[-3], "spatial_covariance")
    stft_double = _double(stft)
    outer = torch.einsum("...cft,...dft->...fcd", stft_double, stft_double.conj())  # ..., F, C, C
    weight = eps + _double(psd).sum(dim=-1)  # ..., F
    return (outer / weight[..., None, None]).to(stft.dtype)


def normalised_spatial_covariance(stft: Tensor, psd: Tensor, eps: float) -> Tensor:
    """The time-invariant spatial covariance of a source as sigsep-mus-oracle estimates it: the
    mean over frames of ``X(f, t) X(f, t)^H / (eps + v(f, t))``, scaled to trace ``C``, plus
    ``eps I``.

    Unlike :func:`spatial_covariance`, every frame counts alike whatever its loudness. A source
    silent at some frequency keeps a zero covariance there (plus ``eps I``) instead of dividing
    zero by zero.

    Args:
        stft: Complex STFT of the source, ``[..., C, F, T]``.
        psd: Its power spectral density, ``[..., F, T]``.
        eps: Added to the density before the division, and times the identity at the end.

    Returns:
        ``[..., F, C, C]``, complex, Hermitian, in the precision of ``stft``.
    """
    _check_channels(stft.shape[-3], "normalised_spatial_covariance")
    channels, frames = stft.shape[-3], stft.shape[-1]
    bins = _double(stft).movedim(-3, -1)  # ..., F, T, C
    weights = (1 / (eps + _double(psd))).to(bins.dtype)  # ..., F, T
    covariance = torch.einsum("...ftc,...ftd,...ft->...fcd", bins, bins.conj(), weights) / frames
    trace = torch.diagonal(covariance, dim1=-2, dim2=-1).sum(-1).real.clamp_min(TINY)  # ..., F
    identity = torch.eye(channels, dtype=covariance.dtype, device=covariance.device)
    return (covariance * (channels / trace)[..., None, None] + eps * identity).to(stft.dtype)


def explained_power_spectral_density(
    stft: Tensor, covariance: Tensor, determinant_eps: float = 0.0
) -> Tensor:
    """The power spectral density that a spatial covariance ``R`` explains in an STFT ``X``:
    ``Re tr(R^-1 X X^H) / C``, sigsep-mus-oracle's second estimate of a source's density.

    Args:
        stft: Complex STFT of the source, ``[..., C, F, T]``.
        covariance: Its spatial covariance, ``[..., F, C, C]``.
        determinant_eps: Added to the determinant when ``R`` is inverted (see
            :func:`invert_channel_matrices`). (Default: ``0.0``)

    Returns:
        ``[..., F, T]``, real, in the precision of ``stft``.
    """
    channels = stft.shape[-3]
    bins = _double(stft).movedim(-3, -1)  # ..., F, T, C
    inverse = invert_channel_matrices(_double(covariance), determinant_eps)  # ..., F, C, C
    psd = torch.einsum("...fcd,...ftd,...ftc->...ft", inverse, bins, bins.conj()).real / channels
    return psd.to(stft.real.dtype)


def invert_channel_matrices(matrices: Tensor, determinant_eps: float = 0.0) -> Tensor:
    """Closed-form inverse of 1x1 or 2x2 complex matrices ``[..., C, C]``.

    Args:
        matrices: The matrices, in their last two dimensions.
        determinant_eps: Added to the determinant (to the value, for 1x1) before dividing by
            it, as sigsep-mus-oracle regularises its inverses. (Default: ``0.0``, none)
    """
    if matrices.shape[-1] == 1:
        return 1 / (matrices + determinant_eps) if determinant_eps else 1 / matrices
    if matrices.shape[-1] != 2:
        raise ValueError(
            f"only 1x1 and 2x2 matrices have a closed-form inverse here, got {list(matrices.shape)}"
        )
    a, b = matrices[..., 0, 0], matrices[..., 0, 1]
    c, d = matrices[..., 1, 0], matrices[..., 1, 1]
    determinant = a * d - b * c
    inverse_determinant = 1 / (determinant + determinant_eps) if determinant_eps else 1 / determinant
    rows = [torch.stack([d, -b], dim=-1), torch.stack([-c, a], dim=-1)]
    return torch.stack(rows, dim=-2) * inverse_determinant[..., None, None]


def _check_model(psds: Tensor, covariances: Tensor) -> None:
    if psds.dim() != 4:
        raise ValueError(f"expected psds of shape [batch, sources, freqs, frames], got {list(psds.shape)}")
    batch, sources, frequencies, _ = psds.shape
    if covariances.dim() != 5 or list(covariances.shape[:3]) != [batch, sources, frequencies]:
        raise ValueError(
            f"expected covariances of shape [{batch}, {sources}, {frequencies}, channels, channels], "
            f"got {list(covariances.shape)}"
        )
    if covariances.shape[-1] != covariances.shape[-2]:
        raise ValueError(f"covariances must be square in the last two axes, got {list(covariances.shape)}")
    _check_channels(covariances.shape[-1], "the covariances")


def _inverse_mixture_covariance(
    psds: Tensor, covariances: Tensor, ridge: float, determinant_eps: float
) -> Tensor:
    """``(ridge I + sum_k v_k R_k)^-1``, ``[B, F, T, C, C]``, from double-precision inputs."""
    channels = covariances.shape[-1]
    mixture = torch.einsum("bsft,bsfcd->bftcd", psds.to(covariances.dtype), covariances)  # B, F, T, C, C
    if ridge:
        mixture = mixture + ridge * torch.eye(channels, dtype=covariances.dtype, device=covariances.device)
    return invert_channel_matrices(mixture, determinant_eps)


def wiener_gains(
    psds: Tensor,
    covariances: Tensor,
    eps: float = 1e-10,
    ridge: float | None = None,
    determinant_eps: float = 0.0,
) -> Tensor:
    """The multichannel Wiener gains ``W_j = v_j R_j (sqrt(eps) I + sum_k v_k R_k)^-1``.

    They hold one ``C x C`` matrix per source and bin; :func:`wiener_gains_apply` applies them
    without forming them all at once. Summed over sources they give
    ``I - sqrt(eps) (sqrt(eps) I + sum_k v_k R_k)^-1``, the identity up to the regularisation.

    Args:
        psds: Power spectral densities, ``[B, S, F, T]``.
        covariances: Spatial covariances, ``[B, S, F, C, C]``.
        eps: Regularisation; ``sqrt(eps)`` times the identity is added to the mixture
            covariance. (Default: ``1e-10``)
        ridge: Added times the identity instead of ``sqrt(eps)``. (Default: ``None``)
        determinant_eps: Added to the mixture covariance's determinant when it is inverted,
            as sigsep-mus-oracle regularises. (Default: ``0.0``)

    Returns:
        ``[B, S, F, T, C, C]``, complex, in the precision of ``covariances``.
    """
    _check_model(psds, covariances)
    psds_double, covariances_double = _double(psds), _double(covariances)
    ridge = eps**0.5 if ridge is None else ridge
    inverse = _inverse_mixture_covariance(
        psds_double, covariances_double, ridge, determinant_eps
    )  # B, F, T, C, C
    source_covariances = (
        psds_double[..., None, None].to(covariances_double.dtype) * covariances_double[:, :, :, None]
    )
    gains = source_covariances @ inverse[:, None]  # B, S, F, T, C, C
    return gains.to(covariances.dtype)


@full_precision
def wiener_gains_apply(
    mix_stft: Tensor,
    psds: Tensor,
    covariances: Tensor,
    eps: float = 1e-10,
    block_frames: int = FRAMES_PER_BLOCK,
    ridge: float | None = None,
    determinant_eps: float = 0.0,
) -> Tensor:
    """Separate a mixture with the multichannel Wiener gains of :func:`wiener_gains`.

    Computes ``y_j = v_j R_j z`` with ``z = (sqrt(eps) I + sum_k v_k R_k)^-1 x``, which is
    ``W_j x`` without a ``C x C`` matrix per source and bin; ``block_frames`` frames at a time,
    so that whole tracks fit in memory.

    Args:
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.
        psds: Power spectral densities of the sources, ``[B, S, F, T]``.
        covariances: Spatial covariances of the sources, ``[B, S, F, C, C]``.
        eps: Regularisation; ``sqrt(eps)`` times the identity is added to the mixture
            covariance before it is inverted. (Default: ``1e-10``)
        block_frames: Frames handled at once. (Default: ``256``)
        ridge: Added times the identity instead of ``sqrt(eps)``; ``0.0`` for none, as in
            sigsep-mus-oracle. (Default: ``None``)
        determinant_eps: Added to the mixture covariance's determinant when it is inverted,
            as sigsep-mus-oracle regularises. (Default: ``0.0``)

    Returns:
        The source estimates, ``[B, S, C, F, T]``, complex, in the precision of ``mix_stft``.
    """
    if mix_stft.dim() != 4 or not mix_stft.is_complex():
        raise ValueError(
            f"expected a complex mixture STFT [batch, channels, freqs, frames], got {list(mix_stft.shape)}"
        )
    _check_model(psds, covariances)
    batch, channels, frequencies, frames = mix_stft.shape
    if list(psds.shape) != [batch, psds.shape[1], frequencies, frames]:
        raise ValueError(
            f"expected psds of shape [{batch}, sources, {frequencies}, {frames}] for a mixture "
            f"{list(mix_stft.shape)}, got {list(psds.shape)}"
        )
    if covariances.shape[-1] != channels:
        raise ValueError(
            f"covariances are {covariances.shape[-1]}x{covariances.shape[-1]} for {channels} channels"
        )
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    mix_double, psds_double, covariances_double = _double(mix_stft), _double(psds), _double(covariances)
    ridge = eps**0.5 if ridge is None else ridge
    blocks = []
    for start in range(0, frames, block_frames):
        block = slice(start, start + block_frames)
        block_psds = psds_double[..., block]  # B, S, F, Tb
        inverse = _inverse_mixture_covariance(
            block_psds, covariances_double, ridge, determinant_eps
        )  # B, F, Tb, C, C
        mixture = mix_double[..., block].permute(0, 2, 3, 1)  # B, F, Tb, C
        whitened = (inverse @ mixture[..., None])[..., 0]  # B, F, Tb, C
        projected = torch.einsum("bsfcd,bftd->bscft", covariances_double, whitened)  # B, S, C, F, Tb
        blocks.append(projected * block_psds[:, :, None].to(projected.dtype))  # B, S, C, F, Tb
    return torch.cat(blocks, dim=-1).to(mix_stft.dtype)  # B, S, C, F, T


@full_precision
def expectation_maximization(
    mix_stft: Tensor,
    initial_estimates: Tensor,
    iterations: int,
    eps: float = 1e-10,
    ridge: float | None = None,
) -> Tensor:
    """Refine source estimates by the expectation-maximisation of norbert and Open-Unmix.

    Each iteration re-estimates every source's power spectral density and spatial covariance
    from the current estimates (:func:`power_spectral_density`, :func:`spatial_covariance`)
    and separates the mixture again with them (:func:`wiener_gains_apply`). This is the
    simplified update of Nugraha et al. 2016 (the empirical covariance of the current
    estimates), not the exact EM with posterior covariances.

    Args:
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.
        initial_estimates: Complex STFTs of the sources to start from, ``[B, S, C, F, T]``
            (e.g. magnitude estimates with the mixture's phase).
        iterations: Number of iterations; ``0`` returns the initial estimates.
        eps: Regularisation of the covariances and of the inverse. (Default: ``1e-10``)
        ridge: Added times the identity to the mixture covariance instead of ``sqrt(eps)``.
            (Default: ``None``)

    Returns:
        The refined estimates, ``[B, S, C, F, T]``, in the precision of ``initial_estimates``.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if initial_estimates.dim() != 5 or not initial_estimates.is_complex():
        raise ValueError(
            "expected complex initial estimates [batch, sources, channels, freqs, frames], "
            f"got {list(initial_estimates.shape)}"
        )
    if mix_stft.dim() != 4 or list(mix_stft.shape) != [
        initial_estimates.shape[0],
        *initial_estimates.shape[2:],
    ]:
        raise ValueError(
            f"expected a mixture STFT of shape {[initial_estimates.shape[0], *initial_estimates.shape[2:]]}, "
            f"got {list(mix_stft.shape)}"
        )
    mix_double = _double(mix_stft)
    estimates = _double(initial_estimates)
    for _ in range(iterations):
        psds = power_spectral_density(estimates)  # B, S, F, T
        covariances = spatial_covariance(estimates, psds, eps)  # B, S, F, C, C
        estimates = wiener_gains_apply(mix_double, psds, covariances, eps, ridge=ridge)  # B, S, C, F, T
    return estimates.to(initial_estimates.dtype)


def mixture_phase_estimates(magnitudes: Tensor, mix_stft: Tensor) -> Tensor:
    """Complex source estimates from magnitude estimates and the mixture's phase.

    A bin where the mixture is zero has phase zero, as ``atan2(0, 0)`` gives in norbert.

    Args:
        magnitudes: Non-negative magnitude estimates, ``[B, S, C, F, T]``.
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.

    Returns:
        ``[B, S, C, F, T]``, complex.
    """
    phase = mix_stft.angle()[:, None]  # B, 1, C, F, T
    return torch.polar(magnitudes, phase.to(magnitudes.dtype).expand_as(magnitudes))


def softmask_estimates(magnitudes: Tensor, mix_stft: Tensor, eps: float = 1e-10) -> Tensor:
    """Complex source estimates by soft masks: ``x * |y_j| / (eps + sum_k |y_k|)``.

    Norbert's ``softmask`` start, better than :func:`mixture_phase_estimates` when the
    magnitude estimates are poor, worse otherwise.

    Args:
        magnitudes: Non-negative magnitude estimates, ``[B, S, C, F, T]``.
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.
        eps: Added to the denominator. (Default: ``1e-10``)

    Returns:
        ``[B, S, C, F, T]``, complex.
    """
    ratios = magnitudes / (eps + magnitudes.sum(dim=1, keepdim=True))  # B, S, C, F, T
    return mix_stft[:, None] * ratios


@full_precision
def wiener_filter(
    magnitudes: Tensor,
    mix_stft: Tensor,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    eps: float = 1e-10,
    scale_factor: float = 10.0,
) -> Tensor:
    """Complex source estimates from magnitude estimates, as Open-Unmix post-processes them
    (``openunmix.filtering.wiener``).

    The initial estimates take the mixture's phase (or soft masks, with ``softmask``); with
    ``residual``, a last source, the mixture minus the others, is added; then ``iterations``
    rounds of :func:`expectation_maximization` run on signals divided by
    ``max(1, max |x| / scale_factor)`` (per batch item), which keeps the regularisation small
    relative to loud mixtures, and are scaled back.

    Args:
        magnitudes: Non-negative magnitude estimates, ``[B, S, C, F, T]``.
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.
        iterations: Expectation-maximisation rounds; ``0`` keeps the initial estimates.
            (Default: ``1``)
        softmask: Start from soft masks instead of the mixture's phase. (Default: ``False``)
        residual: Add the residual source. (Default: ``False``)
        eps: Regularisation (see the module docstring). (Default: ``1e-10``)
        scale_factor: Largest mixture magnitude the iterations see. (Default: ``10.0``)

    Returns:
        ``[B, S, C, F, T]``, or ``[B, S + 1, C, F, T]`` with ``residual``; complex, in the
        precision of ``mix_stft``.
    """
    if magnitudes.dim() != 5 or list(magnitudes.shape[2:]) != list(mix_stft.shape[1:]):
        raise ValueError(
            f"expected magnitudes [batch, sources, {', '.join(map(str, mix_stft.shape[1:]))}], "
            f"got {list(magnitudes.shape)}"
        )
    if softmask:
        estimates = softmask_estimates(magnitudes, mix_stft, eps)  # B, S, C, F, T
    else:
        estimates = mixture_phase_estimates(magnitudes, mix_stft)  # B, S, C, F, T
    return _refine(estimates, mix_stft, iterations, residual, eps, scale_factor)


def _refine(
    estimates: Tensor,
    mix_stft: Tensor,
    iterations: int,
    residual: bool,
    eps: float,
    scale_factor: float,
    ridge: float | None = None,
) -> Tensor:
    """The steps that Open-Unmix and Demucs take alike after their initial estimates
    ``[B, S, C, F, T]``: the residual source, the scaling, the iterations, the scaling back."""
    if scale_factor <= 0:
        raise ValueError(f"scale_factor must be positive, got {scale_factor}")
    if residual:
        remainder = mix_stft - estimates.sum(dim=1)  # B, C, F, T
        estimates = torch.cat([estimates, remainder[:, None]], dim=1)  # B, S+1, C, F, T
    if iterations == 0:
        return estimates.to(mix_stft.dtype)
    peak = mix_stft.abs().flatten(1).amax(dim=1)  # B
    scale = torch.clamp(peak / scale_factor, min=1.0)[:, None, None, None]  # B, 1, 1, 1
    refined = expectation_maximization(mix_stft / scale, estimates / scale[:, None], iterations, eps, ridge)
    return (refined * scale[:, None]).to(mix_stft.dtype)  # B, S(+1), C, F, T


@full_precision
def demucs_wiener(
    magnitudes: Tensor,
    mix_stft: Tensor,
    iterations: int,
    residual: bool = False,
    eps: float = 1e-10,
    scale_factor: float = 10.0,
) -> Tensor:
    """Complex stems of one item from magnitude estimates, as Hybrid Demucs post-processes them
    (``demucs.wiener.wiener``, Demucs's copy of Open-Unmix's filter, without soft masks).

    :func:`wiener_filter` with the mixture's phase as the start, and Demucs's numerics where
    they differ from norbert's:

    * the phase is ``atan(im / re)`` shifted by a float32 pi in the left half-plane, which
      float64 results show (up to 1e-7 rad);
    * Demucs's ``atan2`` turns the mixture's zero bins into ``1 + 0j`` in place, so they are
      that for the residual and the iterations too;
    * ``eps`` and the ridge ``sqrt(eps)`` are float32 numbers whatever the precision.

    The iterations run in double precision, as everywhere in this module.

    Args:
        magnitudes: Non-negative magnitude estimates, ``[S, C, F, T]`` (``C`` is 1 or 2).
        mix_stft: The mixture's complex STFT, ``[C, F, T]``.
        iterations: Expectation-maximisation rounds; ``0`` keeps the mixture's phase.
        residual: Add a last source, the mixture minus the others, before the rounds.
            (Default: ``False``)
        eps: Regularisation (see the module docstring). (Default: ``1e-10``)
        scale_factor: Largest mixture magnitude the iterations see. (Default: ``10.0``)

    Returns:
        ``[S, C, F, T]``, or ``[S + 1, C, F, T]`` with ``residual``; complex, in the precision
        of ``mix_stft``.
    """
    if magnitudes.dim() != 4 or list(magnitudes.shape[1:]) != list(mix_stft.shape):
        raise ValueError(
            f"expected magnitudes [sources, {', '.join(map(str, mix_stft.shape))}], "
            f"got {list(magnitudes.shape)}"
        )
    _check_channels(mix_stft.shape[0], "demucs_wiener")
    mix_stft = torch.where(mix_stft == 0, torch.ones_like(mix_stft), mix_stft)
    phase = _demucs_phase(mix_stft)  # C, F, T
    estimates = torch.complex(magnitudes * phase.cos(), magnitudes * phase.sin())  # S, C, F, T
    eps_float32 = torch.tensor(eps, dtype=torch.float32)
    ridge = eps_float32.sqrt().item()
    refined = _refine(
        estimates[None], mix_stft[None], iterations, residual, eps_float32.item(), scale_factor, ridge
    )
    return refined[0]  # S(+1), C, F, T


def _demucs_phase(mix_stft: Tensor) -> Tensor:
    """The phase of the non-zero bins of ``mix_stft`` as Demucs's ``atan2`` computes it: from
    ``atan(im / re)``, with a float32 pi for the left half-plane."""
    half_turn = torch.tensor(math.pi, dtype=torch.float32).item()
    real, imag = mix_stft.real, mix_stft.imag
    on_axis = real == 0
    angle = torch.atan(imag / torch.where(on_axis, torch.ones_like(real), real))
    angle = angle + (real < 0) * torch.where(imag >= 0, half_turn, -half_turn)
    return torch.where(on_axis, torch.sign(imag) * (half_turn / 2), angle)


__all__ = [
    "FRAMES_PER_BLOCK",
    "demucs_wiener",
    "expectation_maximization",
    "explained_power_spectral_density",
    "invert_channel_matrices",
    "mixture_phase_estimates",
    "normalised_spatial_covariance",
    "power_spectral_density",
    "softmask_estimates",
    "spatial_covariance",
    "wiener_filter",
    "wiener_gains",
    "wiener_gains_apply",
]
