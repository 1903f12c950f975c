"""BSSEval v4 (museval's ``v4`` mode) in torch: SDR, ISR, SIR and SAR per source and frame.

The definition (Vincent et al., BSS Eval; Stöter, Liutkus & Ito, SiSEC 2018): each estimate is
projected, by least squares, onto delayed copies (lags ``0 .. filters_len - 1``) of

* its own reference, all channels (the filtered true source, ``s_true + e_spat``), and
* every reference, all channels (adding the interference ``e_interf``);

what neither projection explains is the artifacts ``e_artif``. In version 4 the distortion
filters are time-invariant: they are solved once over the whole track, then applied to each
frame (window and hop of one second at 44.1 kHz by default), and the energy ratios are taken per
frame. A frame where any reference or any estimate is silent (its channels sum to zero at every
sample) is NaN for every source, as museval reports it.

Everything runs in float64. The correlations are computed with real FFTs of the whole track,
the filters are applied to all frames at once by FFT convolution.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = float(torch.finfo(torch.float64).eps)
"""Ridge added to the correlation matrices before solving for the filters (museval's)."""


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


def _frame_slices(length: int, window: int, hop: int) -> list[tuple[int, int]]:
    """museval's frames: whole windows only, or one frame of the whole track when shorter."""
    if window >= length:
        return [(0, length)]
    count = (length - window + hop) // hop
    return [(index * hop, index * hop + window) for index in range(count)]


def _lagged_correlations(first: Tensor, second: Tensor, n_fft: int, lags: Tensor) -> Tensor:
    """``out[p, q, k] = sum_t first[p, t + lags[k]] * second[q, t]`` (zero outside the signals).

    Args:
        first: Real FFTs ``[P, F]`` of zero-padded signals.
        second: Real FFTs ``[Q, F]``.
        n_fft: The FFT size (at least the signal length plus the largest lag).
        lags: Lags, negative ones included, ``[K]``.
    """
    rows = []
    for index in range(first.shape[0]):
        circular = torch.fft.irfft(first[index].unsqueeze(0) * second.conj(), n=n_fft)  # Q, n_fft
        rows.append(circular[:, lags % n_fft])
    return torch.stack(rows)  # P, Q, K


def _normal_equations(reference_spectra: Tensor, n_fft: int, filters_len: int) -> Tensor:
    """The Gram matrix ``[P*L, P*L]`` of the references delayed by ``0 .. L-1``, plus museval's
    ridge, rows ordered (reference, lag)."""
    lags = torch.arange(-(filters_len - 1), filters_len, device=reference_spectra.device)
    correlations = _lagged_correlations(reference_spectra, reference_spectra, n_fft, lags)  # P, P, 2L-1
    delay = torch.arange(filters_len, device=lags.device)
    # <r_p delayed by a, r_q delayed by b> = corr_pq[b - a]
    index = delay.unsqueeze(0) - delay.unsqueeze(1) + filters_len - 1  # L, L
    gram = correlations[:, :, index]  # P, Q, L(a), L(b)
    count = reference_spectra.shape[0]
    gram = gram.permute(0, 2, 1, 3).reshape(count * filters_len, count * filters_len)
    return gram + EPS * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)


def _cross_correlations(
    reference_spectra: Tensor, estimate_spectra: Tensor, n_fft: int, filters_len: int
) -> Tensor:
    """``<r_p delayed by m, e_c>`` for every reference ``p``, lag ``m`` and estimate channel
    ``c``: ``[P*L, C]``, rows ordered (reference, lag)."""
    delay = torch.arange(filters_len, device=reference_spectra.device)
    cross = _lagged_correlations(reference_spectra, estimate_spectra, n_fft, -delay)  # P, C, L
    return cross.permute(0, 2, 1).reshape(reference_spectra.shape[0] * filters_len, -1)


def _solve(gram: Tensor, right: Tensor) -> Tensor:
    """``gram^-1 right`` for the symmetric positive (semi-)definite ``gram``: by Cholesky, which
    serves every right-hand side at once, or by LU where the factorisation fails."""
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        return torch.cholesky_solve(right, factor)
    return torch.linalg.solve(gram, right)


def _project(frames: Tensor, filter_spectra: Tensor, n_fft: int, length: int) -> Tensor:
    """Sum over references of each frame convolved with its filters: ``[N, C, length]``.

    Args:
        frames: Real FFTs of the reference frames, ``[P, N, F]``.
        filter_spectra: Real FFTs of the filters, ``[P, C, F]``.
        n_fft: The FFT size.
        length: Samples to keep (frame plus filter tail).
    """
    spectra = torch.einsum("pnf,pcf->ncf", frames, filter_spectra)
    return torch.fft.irfft(spectra, n=n_fft)[..., :length]


def _decibels(numerator: Tensor, denominator: Tensor) -> Tensor:
    ratio = 10 * torch.log10(numerator / denominator)
    return torch.where(denominator == 0, torch.full_like(ratio, math.inf), ratio)


def bss_eval_v4(
    references: Tensor,
    estimates: Tensor,
    window: int = 44100,
    hop: int = 44100,
    filters_len: int = 512,
) -> dict[str, Tensor]:
    """SDR, ISR, SIR and SAR of every source and frame, as ``museval.evaluate(mode="v4")``.

    Args:
        references: True stems ``[S, C, T]``.
        estimates: Estimated stems, same shape.
        window: Frame length in samples. (Default: ``44100``)
        hop: Hop between frames in samples. (Default: ``44100``)
        filters_len: Taps of the distortion filters. (Default: ``512``)

    Returns:
        ``{"SDR", "ISR", "SIR", "SAR"}``, each ``[S, frames]`` float64, NaN on silent frames.
    """
    if references.shape != estimates.shape or references.dim() != 3:
        raise ValueError(
            f"references and estimates must both be [sources, channels, time], got {list(references.shape)} "
            f"and {list(estimates.shape)}"
        )
    references, estimates = references.double(), estimates.double()
    sources, channels, length = references.shape
    n_fft = _next_power_of_two(length + filters_len - 1)
    reference_spectra = torch.fft.rfft(references.reshape(sources * channels, length), n=n_fft)  # P, F
    estimate_spectra = torch.fft.rfft(estimates, n=n_fft)  # S, C, F

    slices = _frame_slices(length, window, hop)
    frame_length = slices[0][1] - slices[0][0]
    starts = torch.tensor([start for start, _ in slices], device=references.device)
    positions = starts.unsqueeze(1) + torch.arange(frame_length, device=references.device)  # N, W
    reference_frames = references[..., positions]  # S, C, N, W
    estimate_frames = estimates[..., positions]  # S, C, N, W
    conv_fft = _next_power_of_two(frame_length + filters_len - 1)
    padded = frame_length + filters_len - 1
    frame_spectra = torch.fft.rfft(reference_frames, n=conv_fft).reshape(sources * channels, len(slices), -1)

    silent = (reference_frames.sum(dim=1) == 0).all(dim=-1).any(dim=0)  # N
    silent |= (estimate_frames.sum(dim=1) == 0).all(dim=-1).any(dim=0)

    # The filters of every estimate onto all references share one Gram matrix; those onto the
    # estimate's own reference share that reference's block of it.
    gram = _normal_equations(reference_spectra, n_fft, filters_len)  # P*L, P*L
    cross = torch.stack(
        [
            _cross_correlations(reference_spectra, estimate_spectra[s], n_fft, filters_len)
            for s in range(sources)
        ]
    )  # S, P*L, C
    every_filters = _solve(gram, cross.permute(1, 0, 2).reshape(gram.shape[0], -1))  # P*L, S*C
    every_filters = every_filters.reshape(sources * channels, filters_len, sources, channels)
    block = channels * filters_len

    results = {name: [] for name in ("SDR", "ISR", "SIR", "SAR")}
    for target in range(sources):
        own = slice(target * channels, (target + 1) * channels)
        rows = slice(target * block, (target + 1) * block)
        every_filter = every_filters[:, :, target]  # P, L, C
        own_filter = _solve(gram[rows, rows], cross[target, rows]).reshape(channels, filters_len, channels)
        every_spectra = torch.fft.rfft(every_filter.permute(0, 2, 1), n=conv_fft)  # P, C, F
        own_spectra = torch.fft.rfft(own_filter.permute(0, 2, 1), n=conv_fft)  # C, C, F
        projected = _project(frame_spectra, every_spectra, conv_fft, padded)  # N, C, W+L-1
        projected_own = _project(frame_spectra[own], own_spectra, conv_fft, padded)  # N, C, W+L-1
        true = torch.nn.functional.pad(reference_frames[target].transpose(0, 1), (0, filters_len - 1))
        estimate = torch.nn.functional.pad(estimate_frames[target].transpose(0, 1), (0, filters_len - 1))

        def energy(x: Tensor) -> Tensor:
            return x.square().sum(dim=(1, 2))  # N

        scores = {
            "SDR": _decibels(energy(true), energy(estimate - true)),
            "ISR": _decibels(energy(true), energy(projected_own - true)),
            "SIR": _decibels(energy(projected_own), energy(projected - projected_own)),
            "SAR": _decibels(energy(projected), energy(estimate - projected)),
        }
        for name, values in scores.items():
            results[name].append(torch.where(silent, torch.full_like(values, math.nan), values))
    return {name: torch.stack(values) for name, values in results.items()}
