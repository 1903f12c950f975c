"""Separation quality metrics.

``nsdr`` is the SDR of the Music Demixing Challenge 2021 (also called "uSDR", utterance-level
SDR; Demucs reports it as ``nsdr``): one number per source and track, from the energies of
the reference and of the error summed over channels and time. Unlike the BSSEval SDR of
``museval`` it involves no distortion filter and no framing, so it is cheap enough to
compute during validation. ``si_sdr`` is the scale-invariant SDR of Le Roux et al. 2019,
``sd_sdr`` their scale-dependent SDR.
:class:`NSDR` averages ``nsdr`` over tracks in a way that stays exact under distributed
validation.
"""

from __future__ import annotations

import torch
import torchmetrics
from torch import Tensor

MDX_DELTA = 1e-7
"""The stabiliser of the MDX 2021 challenge's scoring code."""


def _check_stems(estimate: Tensor, reference: Tensor) -> None:
    if estimate.shape != reference.shape:
        raise ValueError(
            f"estimate and reference shapes differ: {list(estimate.shape)} vs {list(reference.shape)}"
        )
    if estimate.dim() < 3:
        raise ValueError(
            f"expected stems of shape [..., sources, channels, time], got {list(estimate.shape)}"
        )


def nsdr(estimate: Tensor, reference: Tensor, eps: float = MDX_DELTA) -> Tensor:
    """MDX 2021 SDR ("nSDR" / "uSDR") of every source, in dB.

    ``10 log10((eps + sum s^2) / (eps + sum (s - s_hat)^2))``, the sums running over channels
    and time of one source of one track, computed in float64. The ``eps`` in both terms keeps
    every case finite: a silent reference with a silent estimate scores 0 dB, a silent
    reference with a non-silent estimate scores a large negative value, and a perfect
    estimate of a non-silent reference scores ``10 log10(1 + sum s^2 / eps)``.

    Args:
        estimate: Estimated stems, ``[..., sources, channels, time]``.
        reference: True stems, same shape.
        eps: Added to both energies. (Default: ``1e-7``, the challenge's value)

    Returns:
        ``[..., sources]``, float64.
    """
    _check_stems(estimate, reference)
    reference = reference.detach().double()
    estimate = estimate.detach().double()
    signal = reference.square().sum(dim=(-2, -1))  # ..., S
    error = (reference - estimate).square().sum(dim=(-2, -1))  # ..., S
    return 10 * torch.log10((signal + eps) / (error + eps))


def _best_fit_scale(
    estimate: Tensor, reference: Tensor, eps: float, zero_mean: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Each source's channels joined into one float64 signal (made zero-mean if asked), and the
    scale ``alpha = <s_hat, s> / (||s||^2 + eps)`` that best fits the reference to the estimate:
    ``(estimate [..., S, C*T], reference [..., S, C*T], alpha [..., S, 1])``."""
    _check_stems(estimate, reference)
    estimate = estimate.detach().double().flatten(start_dim=-2)  # ..., S, C*T
    reference = reference.detach().double().flatten(start_dim=-2)
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        reference = reference - reference.mean(dim=-1, keepdim=True)
    alpha = (estimate * reference).sum(dim=-1, keepdim=True) / (
        reference.square().sum(dim=-1, keepdim=True) + eps
    )
    return estimate, reference, alpha


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
    estimate, reference, alpha = _best_fit_scale(estimate, reference, eps, zero_mean)
    target = alpha * reference
    noise = estimate - target
    return 10 * torch.log10((target.square().sum(dim=-1) + eps) / (noise.square().sum(dim=-1) + eps))


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
    estimate, reference, alpha = _best_fit_scale(estimate, reference, eps, zero_mean)
    target = (alpha * reference).square().sum(dim=-1)
    error = (reference - estimate).square().sum(dim=-1)
    return 10 * torch.log10((target + eps) / (error + eps))


class NSDR(torchmetrics.Metric):
    """Mean MDX SDR (:func:`nsdr`) over tracks, per source.

    Each batch item is one track (or one validation segment; each counts once). The states
    are the per-source sum of the scores and the number of tracks, both summed across
    processes, so the result is the exact mean over every track seen by every process, however
    unevenly the tracks were spread.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        eps: Added to both energies, see :func:`nsdr`. (Default: ``1e-7``)
        **kwargs: Passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    total: Tensor
    count: Tensor

    def __init__(self, sources: list[str], eps: float = MDX_DELTA, **kwargs: object) -> None:
        super().__init__(**kwargs)
        sources = list(sources)
        if not sources:
            raise ValueError("NSDR needs at least one source")
        if len(set(sources)) != len(sources):
            raise ValueError(f"source names must be unique, got {sources}")
        self.sources = sources
        self.eps = float(eps)
        self.add_state("total", default=torch.zeros(len(sources), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.tracks_scored = 0

    def update(self, estimate: Tensor, reference: Tensor) -> None:
        """Add the score of every track of a batch.

        Args:
            estimate: Estimated stems, ``[batch, sources, channels, time]``.
            reference: True stems, same shape.
        """
        if estimate.dim() != 4 or estimate.shape[1] != len(self.sources):
            raise ValueError(
                f"expected stems of shape [batch, {len(self.sources)}, channels, time], "
                f"got {list(estimate.shape)}"
            )
        scores = nsdr(estimate, reference, eps=self.eps)  # B, S
        self.total += scores.sum(dim=0).to(self.total.device)
        self.count += scores.shape[0]

    def _apply(self, fn, exclude_state="") -> NSDR:  # noqa: ANN001 - torchmetrics' signature
        this = super()._apply(fn, exclude_state)
        # A "16-true"/"bf16-true" run converts the whole LightningModule with `.to(dtype)`,
        # which torchmetrics applies to the states too; sums of dB values in half precision
        # would be off by whole dB, so the sum stays float64.
        if this.total.dtype != torch.float64:
            this.total = this.total.double()
            this._defaults["total"] = this._defaults["total"].double()
        return this

    def merge_state(self, incoming_state: dict[str, Tensor] | torchmetrics.Metric) -> None:
        """Add another instance's (or a state dict's) tracks to this one.

        Args:
            incoming_state: An :class:`NSDR` instance or a dict with ``total`` and ``count``.
        """
        super().merge_state(incoming_state)
        # torchmetrics keeps the result of an earlier compute() cached across a merge.
        self._computed = None

    def compute(self) -> Tensor:
        """Mean score of each source over all tracks, ``[sources]`` (NaN before any update).

        Also sets :attr:`tracks_scored` to the number of tracks behind the mean, over all
        processes.
        """
        self.tracks_scored = int(self.count)  # the states are synced across processes here
        return self.total / self.count

    def compute_dict(self) -> dict[str, float]:
        """The mean score of each source by name, and their mean under ``"mean"``."""
        values = self.compute().reshape(-1)  # torchmetrics squeezes a single source's score
        result = {name: float(value) for name, value in zip(self.sources, values.tolist())}
        result["mean"] = float(values.mean())
        return result


__all__ = ["MDX_DELTA", "NSDR", "nsdr", "sd_sdr", "si_sdr"]
