"""Separation quality metrics.

``nsdr`` is the SDR of the Music Demixing Challenge 2021 (also called "uSDR", utterance-level
SDR; Demucs reports it as ``nsdr``): one number per source and track, from the energies of
the reference and of the error summed over channels and time. Unlike the BSSEval SDR of
``museval`` it involves no distortion filter and no framing, so it is cheap enough to
compute during validation. ``si_sdr`` is the scale-invariant SDR of Le Roux et al. 2019,
``sd_sdr`` their scale-dependent SDR.

All three are sums over a whole track in float64. On the CPU they are summed over short blocks
of samples (:data:`BLOCK_ELEMENTS`) rather than over whole-track float64 copies: a block's
arrays stay in the processor's caches, where a 3-minute track's copies (hundreds of MB for
four stereo stems) cost a page fault per 4 kB every time one is made, and cost more than the
arithmetic.

:class:`~sepzoo.evaluation.nsdr_metric.NSDR` averages ``nsdr`` over tracks in a way that stays
exact under distributed validation; it lives in its own module because it needs
``torchmetrics``, which takes one to two seconds to import and which scoring does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

MDX_DELTA = 1e-7
"""The stabiliser of the MDX 2021 challenge's scoring code."""

BLOCK_ELEMENTS = 16384
"""Elements of each signal summed at a time on the CPU (every row of a stretch of samples).

torch runs an operation on fewer than 32768 elements on the calling thread, so a block this
small opens no parallel region. Blocks eight times larger open thousands per track, each of
which waits for every thread of torch's pool: on a two-core machine with one core taken by
other work, that made the metrics of one 30-second track of four stereo sources take 30 s
instead of 0.4 s."""


def _check_stems(estimate: Tensor, reference: Tensor) -> None:
    if estimate.shape != reference.shape:
        raise ValueError(
            f"estimate and reference shapes differ: {list(estimate.shape)} vs {list(reference.shape)}"
        )
    if estimate.dim() < 3:
        raise ValueError(
            f"expected stems of shape [..., sources, channels, time], got {list(estimate.shape)}"
        )


def _summed_over_time(terms: Callable[..., tuple[Tensor, ...]], *signals: Tensor) -> tuple[Tensor, ...]:
    """The sums over channels and time of ``terms(*blocks)``, each block of every signal (cut
    along the last axis) converted to float64 first.

    A block holds :data:`BLOCK_ELEMENTS` elements of each signal. Off the CPU the whole signals
    make one block: the device's memory is not the bottleneck there, and every block would
    cost kernel launches.

    Args:
        terms: Maps the float64 blocks ``[..., C, t]`` to their sums over time, each ``[..., C]``.
        *signals: Tensors ``[..., C, T]`` of one shape.

    Returns:
        The totals, each ``[...]``.
    """
    length = signals[0].shape[-1]
    rows = signals[0].numel() // max(length, 1)  # everything but time
    on_cpu = signals[0].device.type == "cpu"
    step = max(1, BLOCK_ELEMENTS // max(rows, 1)) if on_cpu else max(length, 1)

    def block(start: int) -> tuple[Tensor, ...]:
        return terms(*(signal[..., start : start + step].detach().double() for signal in signals))

    totals = block(0)  # an empty signal is one empty block
    for start in range(step, length, step):
        totals = tuple(total + part for total, part in zip(totals, block(start)))
    return tuple(total.sum(dim=-1) for total in totals)


def _dot(first: Tensor, second: Tensor) -> Tensor:
    """Inner product over time, ``[..., C, t]`` to ``[..., C]``."""
    return torch.linalg.vecdot(first, second)


def _energy(signal: Tensor) -> Tensor:
    """Sum of squares over time, ``[..., C, t]`` to ``[..., C]``."""
    return torch.linalg.vecdot(signal, signal)


def nsdr(estimate: Tensor, reference: Tensor, eps: float = MDX_DELTA) -> Tensor:
    """MDX 2021 SDR ("nSDR" / "uSDR") of every source, in dB.

    ``10 log10((eps + sum s^2) / (eps + sum (s - s_hat)^2))``, the sums running over channels
    and time of one source of one track, computed in float64. The ``eps`` in both terms keeps
    every case finite: a silent reference with a silent estimate scores 0 dB, a silent
    reference with a non-silent estimate scores a large negative value, and a perfect
    estimate of a non-silent reference scores ``10 log10(1 + sum s^2 / eps)``.

    Args:
        estimate: Estimated stems, ``[..., sources, channels, time]`` (a broadcast view, such
            as the mixture expanded to every source, is read in place).
        reference: True stems, same shape.
        eps: Added to both energies. (Default: ``1e-7``, the challenge's value)

    Returns:
        ``[..., sources]``, float64.
    """
    _check_stems(estimate, reference)
    signal, error = _summed_over_time(
        lambda e, s: (_energy(s), _energy(s - e)), estimate, reference
    )  # ..., S each
    return 10 * torch.log10((signal + eps) / (error + eps))


def _means(estimate: Tensor, reference: Tensor, zero_mean: bool) -> tuple[Tensor | float, Tensor | float]:
    """Each source's mean over channels and time, ``[..., S, 1, 1]`` (zeros unless ``zero_mean``)."""
    if not zero_mean:
        return 0.0, 0.0
    samples = max(estimate.shape[-2] * estimate.shape[-1], 1)
    estimate_sum, reference_sum = _summed_over_time(
        lambda e, s: (e.sum(dim=-1), s.sum(dim=-1)), estimate, reference
    )
    return estimate_sum[..., None, None] / samples, reference_sum[..., None, None] / samples


class _BestFit(NamedTuple):
    """The reference scaled to best fit the estimate, each source's channels taken as one
    signal (made zero-mean if asked)."""

    estimate_mean: Tensor | float
    """``[..., S, 1, 1]``, or 0 without ``zero_mean``."""
    reference_mean: Tensor | float
    alpha: Tensor
    """``<s_hat, s> / (||s||^2 + eps)``, ``[..., S]``."""
    power: Tensor
    """``||s||^2``, ``[..., S]``."""
    error: Tensor
    """``||s - s_hat||^2``, ``[..., S]``."""


def _best_fit(estimate: Tensor, reference: Tensor, eps: float, zero_mean: bool) -> _BestFit:
    """The means (if ``zero_mean``), then the sums that fit and score the scaled reference."""
    _check_stems(estimate, reference)
    estimate_mean, reference_mean = _means(estimate, reference, zero_mean)

    def terms(e: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        e, s = e - estimate_mean, s - reference_mean
        return _dot(e, s), _energy(s), _energy(s - e)

    cross, power, error = _summed_over_time(terms, estimate, reference)
    return _BestFit(estimate_mean, reference_mean, cross / (power + eps), power, error)


def si_sdr(estimate: Tensor, reference: Tensor, eps: float = 1e-8, zero_mean: bool = True) -> Tensor:
    """Scale-invariant SDR (Le Roux et al. 2019, "SDR – half-baked or well done?"), in dB.

    The channels of one source are concatenated into one signal. Following the paper, both
    signals are first made zero-mean; then the reference is scaled to best fit the estimate,
    ``alpha = <s_hat, s> / ||s||^2``, and ``SI-SDR = 10 log10(||alpha s||^2 / ||alpha s - s_hat||^2)``.
    Computed in float64; ``eps`` is added to the scaling denominator and to both energies, so
    silent signals give finite values.

    Args:
        estimate: Estimated stems, ``[..., sources, channels, time]``.
        reference: True stems, same shape.
        eps: Stabiliser of the divisions. (Default: ``1e-8``)
        zero_mean: Remove each signal's mean first. (Default: ``True``)

    Returns:
        ``[..., sources]``, float64.
    """
    fit = _best_fit(estimate, reference, eps, zero_mean)
    scale = fit.alpha[..., None, None]
    # The residual is summed in a pass of its own, once alpha is known: expanding its square
    # into the sums above would cancel catastrophically for good estimates.
    (noise,) = _summed_over_time(
        lambda e, s: (_energy((e - fit.estimate_mean) - scale * (s - fit.reference_mean)),),
        estimate,
        reference,
    )
    return 10 * torch.log10((fit.alpha.square() * fit.power + eps) / (noise + eps))


def sd_sdr(estimate: Tensor, reference: Tensor, eps: float = 1e-8, zero_mean: bool = True) -> Tensor:
    """Scale-dependent SDR (Le Roux et al. 2019, "SDR – half-baked or well done?"), in dB.

    As :func:`si_sdr`, the channels of one source are concatenated into one signal, both
    signals are made zero-mean (unless ``zero_mean`` is off) and ``alpha = <s_hat, s> / ||s||^2``
    scales the reference to best fit the estimate; but the error is measured against the
    reference itself: ``SD-SDR = 10 log10(||alpha s||^2 / ||s - s_hat||^2)``. A wrong gain
    therefore costs: an estimate ``c s`` scores ``20 log10(|c| / |1 - c|)``. Since
    ``s_hat - alpha s`` is orthogonal to ``s``, ``||s - s_hat||^2 = ||alpha s - s_hat||^2 +
    (1 - alpha)^2 ||s||^2``, so SD-SDR never exceeds SI-SDR and equals it when ``alpha = 1``
    (both up to the effect of ``eps``). Computed in float64; ``eps`` is added to the scaling
    denominator and to both energies, so silent signals give finite values.

    Args:
        estimate: Estimated stems, ``[..., sources, channels, time]``.
        reference: True stems, same shape.
        eps: Stabiliser of the divisions. (Default: ``1e-8``)
        zero_mean: Remove each signal's mean first. (Default: ``True``)

    Returns:
        ``[..., sources]``, float64.
    """
    fit = _best_fit(estimate, reference, eps, zero_mean)
    return 10 * torch.log10((fit.alpha.square() * fit.power + eps) / (fit.error + eps))


def __getattr__(name: str) -> object:
    # `from sepzoo.evaluation.metrics import NSDR` keeps working, importing torchmetrics only
    # when NSDR is asked for.
    if name == "NSDR":
        from sepzoo.evaluation.nsdr_metric import NSDR

        return NSDR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BLOCK_ELEMENTS", "MDX_DELTA", "nsdr", "sd_sdr", "si_sdr"]
