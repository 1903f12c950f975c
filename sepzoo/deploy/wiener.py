"""The multichannel Wiener filter of :mod:`sepzoo.dsp.wiener` in NumPy, for exported models.

:mod:`sepzoo.dsp.wiener` stays the implementation that training, evaluation and separation with
torch use. This port exists only because an exported folder must separate without torch
(issue 14: the steps outside the ONNX graph run with NumPy and onnxruntime alone); it keeps the
public names, argument order and numerics of the torch functions that models call, with arrays
in place of tensors. Everything runs in ``complex128`` / ``float64`` and results come back in
double precision; the tests compare every function with its torch original.

Shapes as in :mod:`sepzoo.dsp.wiener`: an STFT is ``[..., C, F, T]`` (``C`` is 1 or 2), power
spectral densities ``[..., F, T]`` and spatial covariances ``[..., F, C, C]``.
"""

from __future__ import annotations

import math

import numpy as np

FRAMES_PER_BLOCK = 256
"""Frames whose gains :func:`wiener_gains_apply` forms at once, which bounds its memory."""

TINY = float(np.finfo(np.float64).tiny)
"""Smallest positive float64."""


def _complex(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.complex128)


def _real(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _check_channels(channels: int, where: str) -> None:
    if channels not in (1, 2):
        raise ValueError(f"the Wiener filter handles 1 or 2 channels, got {channels} in {where}")


def power_spectral_density(stft: np.ndarray) -> np.ndarray:
    """The power spectral density of a source: ``|X|^2`` averaged over channels.

    Args:
        stft: Complex STFT, ``[..., C, F, T]``.

    Returns:
        ``[..., F, T]``, float64.
    """
    stft = _complex(stft)
    if stft.ndim < 3:
        raise ValueError(f"expected a complex STFT of shape [..., channels, freqs, frames], got {stft.shape}")
    return (stft.real**2 + stft.imag**2).mean(axis=-3)


def spatial_covariance(stft: np.ndarray, psd: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """The time-invariant spatial covariance of a source:
    ``R(f) = sum_t X(f, t) X(f, t)^H / (eps + sum_t v(f, t))``.

    Args:
        stft: Complex STFT of the source, ``[..., C, F, T]``.
        psd: Its power spectral density, ``[..., F, T]``.
        eps: Added to the summed power before the division. (Default: ``1e-10``)

    Returns:
        ``[..., F, C, C]``, complex128.
    """
    stft, psd = _complex(stft), _real(psd)
    _check_channels(stft.shape[-3], "spatial_covariance")
    outer = np.einsum("...cft,...dft->...fcd", stft, stft.conj())  # ..., F, C, C
    weight = eps + psd.sum(axis=-1)  # ..., F
    return outer / weight[..., None, None]


def invert_channel_matrices(matrices: np.ndarray, determinant_eps: float = 0.0) -> np.ndarray:
    """Closed-form inverse of 1x1 or 2x2 complex matrices ``[..., C, C]``.

    Args:
        matrices: The matrices, in their last two dimensions.
        determinant_eps: Added to the determinant before dividing by it. (Default: ``0.0``)
    """
    matrices = _complex(matrices)
    if matrices.shape[-1] == 1:
        return 1 / (matrices + determinant_eps) if determinant_eps else 1 / matrices
    if matrices.shape[-1] != 2:
        raise ValueError(f"only 1x1 and 2x2 matrices have a closed-form inverse here, got {matrices.shape}")
    a, b = matrices[..., 0, 0], matrices[..., 0, 1]
    c, d = matrices[..., 1, 0], matrices[..., 1, 1]
    determinant = a * d - b * c
    inverse_determinant = 1 / (determinant + determinant_eps) if determinant_eps else 1 / determinant
    rows = [np.stack([d, -b], axis=-1), np.stack([-c, a], axis=-1)]
    return np.stack(rows, axis=-2) * inverse_determinant[..., None, None]


def _inverse_mixture_covariance(
    psds: np.ndarray, covariances: np.ndarray, ridge: float, determinant_eps: float
) -> np.ndarray:
    """``(ridge I + sum_k v_k R_k)^-1``, ``[B, F, T, C, C]``."""
    channels = covariances.shape[-1]
    mixture = np.einsum("bsft,bsfcd->bftcd", psds.astype(np.complex128), covariances)
    if ridge:
        mixture = mixture + ridge * np.eye(channels)
    return invert_channel_matrices(mixture, determinant_eps)


def wiener_gains_apply(
    mix_stft: np.ndarray,
    psds: np.ndarray,
    covariances: np.ndarray,
    eps: float = 1e-10,
    block_frames: int = FRAMES_PER_BLOCK,
    ridge: float | None = None,
    determinant_eps: float = 0.0,
) -> np.ndarray:
    """Separate a mixture with the multichannel Wiener gains ``v_j R_j (ridge I + sum_k v_k R_k)^-1``.

    Args:
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.
        psds: Power spectral densities of the sources, ``[B, S, F, T]``.
        covariances: Spatial covariances of the sources, ``[B, S, F, C, C]``.
        eps: Regularisation; ``sqrt(eps)`` times the identity is the ridge. (Default: ``1e-10``)
        block_frames: Frames handled at once. (Default: ``256``)
        ridge: Added times the identity instead of ``sqrt(eps)``. (Default: ``None``)
        determinant_eps: Added to the mixture covariance's determinant. (Default: ``0.0``)

    Returns:
        The source estimates, ``[B, S, C, F, T]``, complex128.
    """
    mix, psds, covariances = _complex(mix_stft), _real(psds), _complex(covariances)
    if mix.ndim != 4 or psds.ndim != 4 or covariances.ndim != 5:
        raise ValueError(
            f"expected a mixture [B, C, F, T], psds [B, S, F, T] and covariances [B, S, F, C, C], got "
            f"{mix.shape}, {psds.shape} and {covariances.shape}"
        )
    _check_channels(covariances.shape[-1], "the covariances")
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    ridge = eps**0.5 if ridge is None else ridge
    blocks = []
    for start in range(0, mix.shape[-1], block_frames):
        block = slice(start, start + block_frames)
        block_psds = psds[..., block]  # B, S, F, Tb
        inverse = _inverse_mixture_covariance(block_psds, covariances, ridge, determinant_eps)
        mixture = mix[..., block].transpose(0, 2, 3, 1)  # B, F, Tb, C
        whitened = np.matmul(inverse, mixture[..., None])[..., 0]  # B, F, Tb, C
        # Per source and bin, R_j (C x C) times the frames' whitened mixtures (C x Tb).
        projected = np.matmul(covariances, whitened.swapaxes(-1, -2)[:, None])  # B, S, F, C, Tb
        projected = projected.swapaxes(2, 3)  # B, S, C, F, Tb
        blocks.append(projected * block_psds[:, :, None])
    return np.concatenate(blocks, axis=-1)


def expectation_maximization(
    mix_stft: np.ndarray,
    initial_estimates: np.ndarray,
    iterations: int,
    eps: float = 1e-10,
    ridge: float | None = None,
) -> np.ndarray:
    """Refine source estimates by the expectation-maximisation of norbert and Open-Unmix.

    Args:
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.
        initial_estimates: Complex STFTs of the sources to start from, ``[B, S, C, F, T]``.
        iterations: Number of iterations; ``0`` returns the initial estimates.
        eps: Regularisation of the covariances and of the inverse. (Default: ``1e-10``)
        ridge: Added times the identity instead of ``sqrt(eps)``. (Default: ``None``)

    Returns:
        The refined estimates, ``[B, S, C, F, T]``, complex128.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    mix, estimates = _complex(mix_stft), _complex(initial_estimates)
    if estimates.ndim != 5 or mix.shape != (estimates.shape[0], *estimates.shape[2:]):
        raise ValueError(
            f"expected estimates [B, S, C, F, T] and a mixture [B, C, F, T], "
            f"got {estimates.shape} and {mix.shape}"
        )
    for _ in range(iterations):
        psds = power_spectral_density(estimates)  # B, S, F, T
        covariances = spatial_covariance(estimates, psds, eps)  # B, S, F, C, C
        estimates = wiener_gains_apply(mix, psds, covariances, eps, ridge=ridge)
    return estimates


def mixture_phase_estimates(magnitudes: np.ndarray, mix_stft: np.ndarray) -> np.ndarray:
    """Complex source estimates from magnitude estimates and the mixture's phase.

    Args:
        magnitudes: Non-negative magnitude estimates, ``[B, S, C, F, T]``.
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.

    Returns:
        ``[B, S, C, F, T]``, complex128.
    """
    mix = _complex(mix_stft)
    size = np.abs(mix)
    # The unit phasor mix / |mix| is exp(1j * angle(mix)) without the trigonometry; a silent bin
    # has angle 0, so phasor 1.
    phasor = np.where(size > 0, mix / np.where(size > 0, size, 1.0), 1.0)[:, None]  # B, 1, C, F, T
    return _real(magnitudes) * phasor


def softmask_estimates(magnitudes: np.ndarray, mix_stft: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Complex source estimates by soft masks: ``x * |y_j| / (eps + sum_k |y_k|)``.

    Args:
        magnitudes: Non-negative magnitude estimates, ``[B, S, C, F, T]``.
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.
        eps: Added to the denominator. (Default: ``1e-10``)

    Returns:
        ``[B, S, C, F, T]``, complex128.
    """
    magnitudes = _real(magnitudes)
    ratios = magnitudes / (eps + magnitudes.sum(axis=1, keepdims=True))
    return _complex(mix_stft)[:, None] * ratios


def _refine(
    estimates: np.ndarray,
    mix_stft: np.ndarray,
    iterations: int,
    residual: bool,
    eps: float,
    scale_factor: float,
    ridge: float | None = None,
) -> np.ndarray:
    """The residual source, the scaling, the iterations and the scaling back."""
    if scale_factor <= 0:
        raise ValueError(f"scale_factor must be positive, got {scale_factor}")
    if residual:
        remainder = mix_stft - estimates.sum(axis=1)  # B, C, F, T
        estimates = np.concatenate([estimates, remainder[:, None]], axis=1)
    if iterations == 0:
        return estimates
    peak = np.abs(mix_stft).reshape(mix_stft.shape[0], -1).max(axis=1)  # B
    scale = np.maximum(peak / scale_factor, 1.0)[:, None, None, None]  # B, 1, 1, 1
    refined = expectation_maximization(mix_stft / scale, estimates / scale[:, None], iterations, eps, ridge)
    return refined * scale[:, None]


def wiener_filter(
    magnitudes: np.ndarray,
    mix_stft: np.ndarray,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    eps: float = 1e-10,
    scale_factor: float = 10.0,
) -> np.ndarray:
    """Complex source estimates from magnitude estimates, as Open-Unmix post-processes them.

    Args:
        magnitudes: Non-negative magnitude estimates, ``[B, S, C, F, T]``.
        mix_stft: The mixture's complex STFT, ``[B, C, F, T]``.
        iterations: Expectation-maximisation rounds; ``0`` keeps the initial estimates.
            (Default: ``1``)
        softmask: Start from soft masks instead of the mixture's phase. (Default: ``False``)
        residual: Add the residual source. (Default: ``False``)
        eps: Regularisation. (Default: ``1e-10``)
        scale_factor: Largest mixture magnitude the iterations see. (Default: ``10.0``)

    Returns:
        ``[B, S, C, F, T]``, or ``[B, S + 1, C, F, T]`` with ``residual``; complex128.
    """
    magnitudes, mix = _real(magnitudes), _complex(mix_stft)
    if magnitudes.ndim != 5 or magnitudes.shape[2:] != mix.shape[1:]:
        raise ValueError(f"expected magnitudes [batch, sources, {mix.shape[1:]}], got {magnitudes.shape}")
    if softmask:
        estimates = softmask_estimates(magnitudes, mix, eps)
    else:
        estimates = mixture_phase_estimates(magnitudes, mix)
    return _refine(estimates, mix, iterations, residual, eps, scale_factor)


def demucs_wiener(
    magnitudes: np.ndarray,
    mix_stft: np.ndarray,
    iterations: int,
    residual: bool = False,
    eps: float = 1e-10,
    scale_factor: float = 10.0,
) -> np.ndarray:
    """Complex stems of one item from magnitude estimates, as Hybrid Demucs post-processes them
    (:func:`sepzoo.dsp.wiener.demucs_wiener`, with its phase and float32 constants).

    Args:
        magnitudes: Non-negative magnitude estimates, ``[S, C, F, T]`` (``C`` is 1 or 2).
        mix_stft: The mixture's complex STFT, ``[C, F, T]``.
        iterations: Expectation-maximisation rounds; ``0`` keeps the mixture's phase.
        residual: Add a last source, the mixture minus the others. (Default: ``False``)
        eps: Regularisation. (Default: ``1e-10``)
        scale_factor: Largest mixture magnitude the iterations see. (Default: ``10.0``)

    Returns:
        ``[S, C, F, T]``, or ``[S + 1, C, F, T]`` with ``residual``; complex128.
    """
    magnitudes, mix = _real(magnitudes), _complex(mix_stft)
    if magnitudes.ndim != 4 or magnitudes.shape[1:] != mix.shape:
        raise ValueError(f"expected magnitudes [sources, {mix.shape}], got {magnitudes.shape}")
    _check_channels(mix.shape[0], "demucs_wiener")
    mix = np.where(mix == 0, 1.0 + 0j, mix)
    phase = _demucs_phase(mix)  # C, F, T
    estimates = magnitudes * np.cos(phase) + 1j * (magnitudes * np.sin(phase))
    eps_float32 = np.float32(eps)
    ridge = float(np.sqrt(eps_float32))
    refined = _refine(
        estimates[None], mix[None], iterations, residual, float(eps_float32), scale_factor, ridge
    )
    return refined[0]


def _demucs_phase(mix_stft: np.ndarray) -> np.ndarray:
    """The phase of the non-zero bins as Demucs's ``atan2`` computes it."""
    half_turn = float(np.float32(math.pi))
    real, imag = mix_stft.real, mix_stft.imag
    on_axis = real == 0
    angle = np.arctan(imag / np.where(on_axis, 1.0, real))
    angle = angle + (real < 0) * np.where(imag >= 0, half_turn, -half_turn)
    return np.where(on_axis, np.sign(imag) * (half_turn / 2), angle)


__all__ = [
    "FRAMES_PER_BLOCK",
    "demucs_wiener",
    "expectation_maximization",
    "invert_channel_matrices",
    "mixture_phase_estimates",
    "power_spectral_density",
    "softmask_estimates",
    "spatial_covariance",
    "wiener_filter",
    "wiener_gains_apply",
]
