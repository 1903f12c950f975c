"""The nSDR of validation as a ``torchmetrics`` metric: an exact mean over tracks, however the
tracks are spread over processes.

It lives apart from :mod:`sepzoo.evaluation.metrics` because ``torchmetrics`` takes one to two
seconds to import (it brings scipy.signal and matplotlib along), and only training uses the
metric: ``sepzoo eval`` scores with the plain functions.
"""

from __future__ import annotations

import torch
import torchmetrics
from torch import Tensor

from sepzoo.evaluation.metrics import MDX_DELTA, nsdr


class NSDR(torchmetrics.Metric):
    """Mean MDX SDR (:func:`~sepzoo.evaluation.metrics.nsdr`) over tracks, per source.

    Each batch item is one track (or one validation segment; each counts once). The states
    are the per-source sum of the scores and the number of tracks, both summed across
    processes, so the result is the exact mean over every track seen by every process, however
    unevenly the tracks were spread.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        eps: Added to both energies, see :func:`~sepzoo.evaluation.metrics.nsdr`. (Default: ``1e-7``)
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


__all__ = ["NSDR"]
