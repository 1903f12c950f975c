"""Scores of one track and their aggregation over a data set.

A track is scored with

* BSSEval v4 (:func:`~sepzoo.evaluation.bsseval.bss_eval_v4`): SDR, SIR, ISR and SAR per one-second
  frame, written in museval's per-track JSON layout, so that ``museval.EvalStore`` and
  ``museval.MethodStore`` load the files beside published results;
* nSDR (MDX 2021), SI-SDR and SD-SDR over the whole track, and the nSDR of the unprocessed
  mixture used as every source's estimate (the MIX baseline).

Over tracks, the BSSEval metrics are summarised as museval and the SiSEC 2018 papers do: the
median over a track's frames (frames that are NaN are skipped), then the median or the mean of
those per-track medians ("cSDR" for the SDR). nSDR, SI-SDR and SD-SDR are averaged over tracks,
as the Music Demixing Challenge averages nSDR.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

MUSEVAL_VERSION = "0.4.1"
"""The museval release whose JSON layout and BSSEval v4 definition the files follow."""

MUSDB_ORDER: tuple[str, ...] = ("vocals", "drums", "bass", "other")
"""The order of musdb's ``track.targets``, in which museval passes sources to BSSEval."""

BSSEVAL_METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")
TRACK_METRICS: tuple[str, ...] = ("nSDR", "SI-SDR", "SD-SDR", "mixture_nSDR")
REMAINDER = "accompaniment"
"""Name of the sum of the stems a model does not estimate, when it estimates only some."""


def bsseval_order(sources: Sequence[str]) -> list[int]:
    """Indices that put ``sources`` in museval's order (musdb's targets first, others after).

    BSSEval's SIR, ISR and SAR can depend on the order of the sources when the least-squares
    projections are ill-conditioned; scoring in museval's own order keeps them comparable with
    published museval results.

    Args:
        sources: Source names.
    """
    known = [sources.index(name) for name in MUSDB_ORDER if name in sources]
    return known + [index for index, name in enumerate(sources) if name not in MUSDB_ORDER]


def score_track(
    references: Tensor,
    estimates: Tensor,
    mixture: Tensor,
    sources: Sequence[str],
    sample_rate: int,
    window_seconds: float = 1.0,
    hop_seconds: float = 1.0,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Every score of one track.

    When ``sources`` do not make up the whole mixture (a model estimating vocals only), the
    rest of the mixture enters BSSEval as one more source, ``accompaniment``, with the rest of
    the mixture as its estimate, as museval scores a vocals/accompaniment pair; its scores are
    not reported.

    Args:
        references: True stems ``[S, C, T]``.
        estimates: Estimated stems ``[S, C, T]``.
        mixture: The mixture ``[C, T]``, the sum of all of the track's stems.
        sources: The names of the ``S`` stems.
        sample_rate: Sample rate, which sets the frame length.
        window_seconds: BSSEval frame length in seconds. (Default: ``1.0``)
        hop_seconds: BSSEval hop in seconds. (Default: ``1.0``)
        device: Where the scores are computed (a GPU speeds BSSEval up on long tracks).
            (Default: ``None``, the device of ``references``)

    Returns:
        ``{"frames": {source: {metric: [per-frame values]}}, "window": s, "hop": s,
        "nSDR": {source: dB}, "SI-SDR": ..., "SD-SDR": ..., "mixture_nSDR": ...}``.
    """
    from sepzoo.evaluation.bsseval import bss_eval_v4
    from sepzoo.evaluation.metrics import nsdr, sd_sdr, si_sdr

    if references.shape != estimates.shape or references.dim() != 3:
        raise ValueError(
            f"references and estimates must both be [sources, channels, time], got "
            f"{list(references.shape)} and {list(estimates.shape)}"
        )
    if len(sources) != references.shape[0]:
        raise ValueError(f"{len(sources)} source names for {references.shape[0]} stems")
    device = references.device if device is None else torch.device(device)
    references, estimates, mixture = (x.to(device) for x in (references, estimates, mixture))
    names = list(sources)
    reference_stems, estimate_stems = list(references.unbind(0)), list(estimates.unbind(0))  # C, T each
    whole_mixture = mixture.to(torch.float64)
    remainder = whole_mixture - references.sum(dim=0, dtype=torch.float64)
    if bool(remainder.abs().max() > 1e-6 * max(1.0, float(mixture.abs().max()))):
        names.append(REMAINDER)
        reference_stems.append(remainder)
        estimate_stems.append(whole_mixture - estimates.sum(dim=0, dtype=torch.float64))
    order = bsseval_order(names)
    framewise = bss_eval_v4(
        _stacked_in_float64([reference_stems[index] for index in order]),
        _stacked_in_float64([estimate_stems[index] for index in order]),
        window=int(window_seconds * sample_rate),
        hop=int(hop_seconds * sample_rate),
    )
    frames = {
        names[index]: {metric: framewise[metric][position].tolist() for metric in BSSEVAL_METRICS}
        for position, index in enumerate(order)
        if names[index] in sources
    }
    # Each of these converts the stems to float64 a block at a time, so they take the stems as
    # they are.
    mixture_as_estimates = mixture.unsqueeze(0).expand_as(references)
    track_scores = {
        "nSDR": nsdr(estimates, references),
        "SI-SDR": si_sdr(estimates, references),
        "SD-SDR": sd_sdr(estimates, references),
        "mixture_nSDR": nsdr(mixture_as_estimates, references),
    }
    record: dict[str, Any] = {
        "frames": {source: frames[source] for source in sources},
        "window": window_seconds,
        "hop": hop_seconds,
    }
    for metric, values in track_scores.items():
        record[metric] = {source: float(value) for source, value in zip(sources, values)}
    return record


def _stacked_in_float64(stems: Sequence[Tensor]) -> Tensor:
    """The stems ``[C, T]`` as one float64 tensor ``[S, C, T]``, each converted as it is copied
    in: the track's float64 copy is made once, already in the order asked for."""
    stacked = stems[0].new_empty((len(stems), *stems[0].shape), dtype=torch.float64)
    for row, stem in zip(stacked, stems):
        row.copy_(stem)
    return stacked


def frame_median(values: Sequence[float]) -> float:
    """The median of a track's frame values, skipping NaN (museval's ``np.nanmedian``).

    Args:
        values: Per-frame values.
    """
    kept = [v for v in values if not math.isnan(v)]
    return float(statistics.median(kept)) if kept else math.nan


def museval_json(track_name: str, record: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A track's scores in museval's JSON layout, with sepzoo's own scores in a ``sepzoo`` key.

    museval quantises every value to 1e-5 and writes infinite ratios as NaN; so does this.
    ``museval.aggregate.json2df`` reads only ``targets``, so the extra key leaves museval's
    tables unchanged.

    Args:
        track_name: The track.
        record: What :func:`score_track` returned.
        extra: Anything else to keep with the track (model, settings).
    """
    targets = []
    for source, metrics in record["frames"].items():
        count = len(metrics["SDR"])
        frames = [
            {
                "time": index * record["hop"],
                "duration": record["window"],
                "metrics": {
                    metric: _quantise(metrics[metric][index]) for metric in ("SDR", "SIR", "SAR", "ISR")
                },
            }
            for index in range(count)
        ]
        targets.append({"name": source, "frames": frames})
    own = {metric: record[metric] for metric in TRACK_METRICS}
    return {
        "targets": targets,
        "museval_version": MUSEVAL_VERSION,
        "sepzoo": {"track": track_name, **own, **extra},
    }


def record_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The record :func:`score_track` made, back from :func:`museval_json`'s output.

    Args:
        data: A per-track JSON file's contents.
    """
    frames = {}
    for target in data["targets"]:
        frames[target["name"]] = {
            metric: [_number(frame["metrics"][metric]) for frame in target["frames"]]
            for metric in BSSEVAL_METRICS
        }
    own = data["sepzoo"]
    record = {"frames": frames, "track": own["track"]}
    for metric in TRACK_METRICS:
        record[metric] = {source: _number(value) for source, value in own[metric].items()}
    return record


def aggregate(records: Sequence[dict[str, Any]], sources: Sequence[str]) -> dict[str, Any]:
    """Summaries over tracks of every metric and source.

    Args:
        records: One :func:`score_track` record per track.
        sources: The sources to summarise.

    Returns:
        ``{"bsseval": {metric: {"median": {source: dB}, "mean": {...}}}, "nSDR": {source: dB},
        "SI-SDR": ..., "SD-SDR": ..., "mixture_nSDR": ...}``: BSSEval metrics as the median /
        mean over tracks of each track's frame median (tracks whose frames are all NaN are
        skipped, as museval's tables skip them); the others as the mean over tracks.
    """
    summary: dict[str, Any] = {"bsseval": {}}
    for metric in BSSEVAL_METRICS:
        medians = {source: [frame_median(r["frames"][source][metric]) for r in records] for source in sources}
        summary["bsseval"][metric] = {
            "median": {s: nan_aggregate(medians[s], statistics.median) for s in sources},
            "mean": {s: nan_aggregate(medians[s], statistics.fmean) for s in sources},
        }
    for metric in TRACK_METRICS:
        summary[metric] = {
            s: nan_aggregate([r[metric][s] for r in records], statistics.fmean) for s in sources
        }
    return summary


def nan_aggregate(values: Sequence[float], function: Any) -> float:
    """``function`` (e.g. ``statistics.fmean``) of the values that are not NaN; NaN if none is.

    Args:
        values: The values.
        function: A reduction of a non-empty list to a number.
    """
    kept = [v for v in values if not math.isnan(v)]
    return float(function(kept)) if kept else math.nan


def _quantise(value: float) -> float:
    if math.isinf(value) or math.isnan(value):
        return math.nan
    return round(value, 5)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
