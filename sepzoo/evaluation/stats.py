"""Statistics for comparing separation models on the same tracks.

Scores of one model on a test set vary a lot from track to track, so a difference between two
models means little without its uncertainty. Three tools:

* :func:`bootstrap_interval`: a percentile bootstrap confidence interval of a statistic (the
  mean, or the median as SiSEC reports) over tracks;
* :func:`paired_comparison`: two models scored on the same tracks, compared through their
  per-track differences: the mean difference with a bootstrap interval, and the two-sided
  Wilcoxon signed-rank test's p-value;
* :func:`seed_spread`: the mean and sample standard deviation of a score over training seeds.
* :func:`equivalence_tests`: an exported (e.g. quantised) model against the model it came
  from: TOST with two one-sided exact Wilcoxon signed-rank tests on the per-track differences,
  Holm-adjusted across sources, with a verdict per source.

Tracks with a NaN score (BSSEval on a track with a silent stem) are left out, pairwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

STATISTICS = ("mean", "median")


@dataclass(frozen=True)
class Interval:
    """A statistic over tracks and its confidence interval.

    Args:
        estimate: The statistic on the tracks themselves.
        low: Lower end of the interval.
        high: Upper end of the interval.
        count: Tracks used (NaN scores left out).
        confidence: The interval's coverage, e.g. ``0.95``.
    """

    estimate: float
    low: float
    high: float
    count: int
    confidence: float

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"


@dataclass(frozen=True)
class PairedComparison:
    """Model A against model B on the same tracks (differences are A minus B).

    Args:
        mean_difference: Mean over tracks of the per-track differences.
        interval: Bootstrap confidence interval of that mean.
        p_value: Two-sided Wilcoxon signed-rank p-value, exact (NaN with fewer than 2 tracks).
        count: Tracks compared (pairs with a NaN left out).
        alpha: Significance level the comparison is judged at.
    """

    mean_difference: float
    interval: Interval
    p_value: float
    count: int
    alpha: float

    @property
    def significant(self) -> bool:
        """True when the p-value is below ``alpha``."""
        return not math.isnan(self.p_value) and self.p_value < self.alpha


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    return array[~np.isnan(array)]


def _statistic(name: str):  # noqa: ANN202 - returns a NumPy reduction
    if name not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {name!r}")
    return np.mean if name == "mean" else np.median


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    statistic: str = "mean",
    confidence: float = 0.95,
    resamples: int = 10000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap confidence interval of a statistic over tracks.

    Tracks are resampled with replacement ``resamples`` times; the interval runs between the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the statistic over the
    resamples. The generator is seeded, so the interval is reproducible.

    Args:
        values: One score per track.
        statistic: ``"mean"`` or ``"median"``. (Default: ``"mean"``)
        confidence: Coverage of the interval, in (0, 1). (Default: ``0.95``)
        resamples: Bootstrap resamples. (Default: ``10000``)
        seed: Seed of the resampling. (Default: ``0``)

    Returns:
        The statistic and its interval; NaN throughout when no value is finite.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    reduce = _statistic(statistic)
    kept = _finite(values)
    if kept.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, kept.size, size=(resamples, kept.size))
    spread = reduce(kept[picks], axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(spread, [tail, 1 - tail])
    return Interval(float(reduce(kept)), float(low), float(high), int(kept.size), confidence)


def paired_comparison(
    first: Sequence[float] | np.ndarray,
    second: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    alpha: float = 0.05,
    resamples: int = 10000,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models scored on the same tracks, in the same order.

    Args:
        first: Model A's score per track.
        second: Model B's score per track.
        confidence: Coverage of the interval of the mean difference. (Default: ``0.95``)
        alpha: Significance level of the Wilcoxon test. (Default: ``0.05``)
        resamples: Bootstrap resamples. (Default: ``10000``)
        seed: Seed of the resampling. (Default: ``0``)
    """
    a = np.asarray(first, dtype=np.float64).reshape(-1)
    b = np.asarray(second, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need one value per track for both models, got {a.size} and {b.size}")
    differences = (a - b)[~(np.isnan(a) | np.isnan(b))]
    interval = bootstrap_interval(differences, "mean", confidence, resamples, seed)
    p_value = signed_rank_p_value(differences) if differences.size >= 2 else math.nan
    return PairedComparison(interval.estimate, interval, p_value, int(differences.size), alpha)


def signed_rank_p_value(differences: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided p-value of the Wilcoxon signed-rank test, ties included.

    Zero differences are dropped (Wilcoxon's rule); tied magnitudes share their average rank.
    The null distribution of the positive rank sum is counted exactly over all ``2**n`` sign
    patterns, on ranks doubled to integers so that half ranks from ties count too: the p-value
    of a permutation test over signs, without its sampling error, in ``O(n^3)`` steps. (SciPy's
    ``wilcoxon`` falls back to a sampled permutation test when scores tie, as rounded scores
    often do, and takes about a second per test.)

    Args:
        differences: Per-track differences between two models.

    Returns:
        The p-value; ``1.0`` when every difference is zero.
    """
    null = _signed_rank_null(differences)
    if null is None:
        return 1.0
    probability, observed = null
    low = probability[: observed + 1].sum()
    high = probability[observed:].sum()
    return float(min(1.0, 2 * min(low, high)))


def one_sided_signed_rank_p_value(
    differences: Sequence[float] | np.ndarray, alternative: Literal["greater", "less"]
) -> float:
    """Exact one-sided p-value of the Wilcoxon signed-rank test, ties included.

    The same exact null distribution as :func:`signed_rank_p_value` (zeros dropped, tied
    magnitudes at their average rank), read on one side: ``"greater"`` tests whether the
    differences lie above zero (a large positive rank sum), ``"less"`` whether they lie below.

    Args:
        differences: Per-track differences.
        alternative: ``"greater"`` or ``"less"``.

    Returns:
        The p-value; ``1.0`` when every difference is zero.
    """
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    null = _signed_rank_null(differences)
    if null is None:
        return 1.0
    probability, observed = null
    tail = probability[observed:] if alternative == "greater" else probability[: observed + 1]
    return float(min(1.0, tail.sum()))


def _signed_rank_null(differences: Sequence[float] | np.ndarray) -> tuple[np.ndarray, int] | None:
    """The exact null distribution of the doubled positive rank sum, and its observed value.

    ``None`` when no difference is left after dropping NaN and zero ones.
    """
    from scipy.stats import rankdata

    kept = _finite(differences)
    kept = kept[kept != 0]
    if kept.size == 0:
        return None
    ranks = np.rint(2 * rankdata(np.abs(kept))).astype(np.int64)  # doubled average ranks
    observed = int(ranks[kept > 0].sum())
    probability = np.zeros(int(ranks.sum()) + 1)
    probability[0] = 1.0
    for rank in ranks:  # each sign is + or - with probability 1/2
        shifted = np.zeros_like(probability)
        shifted[rank:] = probability[:-rank]
        probability = 0.5 * (probability + shifted)
    return probability, observed


def seed_spread(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation of a score over training seeds.

    Args:
        values: One score per seed (e.g. each seed's mean nSDR over tracks).

    Returns:
        ``(mean, std)``; the standard deviation is NaN with fewer than two seeds.
    """
    kept = _finite(values)
    if kept.size == 0:
        return math.nan, math.nan
    std = float(np.std(kept, ddof=1)) if kept.size > 1 else math.nan
    return float(np.mean(kept)), std


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values for a family of tests run together.

    Comparing many pairs of models on many sources makes some small p-values likely by chance;
    judging the adjusted values at ``alpha`` keeps the chance of any false claim in the family
    at or below ``alpha``. NaN p-values (too few tracks) stay NaN and do not count as tests.

    Args:
        p_values: One p-value per test.

    Returns:
        The adjusted p-values, in the order given.
    """
    values = np.asarray(p_values, dtype=np.float64).reshape(-1)
    adjusted = np.full(values.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(values))
    order = tested[np.argsort(values[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (order.size - rank) * values[index]))
        adjusted[index] = running
    return [float(v) for v in adjusted]


STATISTIC_OF_METRIC: dict[str, str] = {"cSDR": "median", "nSDR": "mean"}
"""How each comparison metric is summarised over tracks: cSDR by its median (as SiSEC and
museval report it), nSDR by its mean (as the MDX challenges do)."""


def compare_systems(
    systems: list[dict],
    sources: Sequence[str],
    confidence: float = 0.95,
    alpha: float = 0.05,
    resamples: int = 10000,
) -> dict:
    """Intervals, paired tests and the waveform-vs-spectrogram panel of a comparison.

    Each system is a dict with ``label``, ``domain`` (``waveform``, ``spectrogram``, ``hybrid``,
    ``oracle`` ...), ``kind`` (``trained`` or ``oracle``), ``per_track[metric][source]`` (one
    score per track, every system in the same track order, ``None`` for a missing score) and,
    optionally, ``per_seed[metric][source]`` (one summary per training seed). A ``summary`` is
    added to every system: per metric and source the statistic over tracks
    (:data:`STATISTIC_OF_METRIC`) with its bootstrap interval and the standard deviation over
    seeds.

    Paired tests compare every two trained systems of different domains, per metric and
    source, on their per-track scores (mean difference, bootstrap interval, Wilcoxon p-value).
    The panel compares the domains themselves: per track, the mean score of each domain's
    trained systems, waveform against spectrogram (and hybrid against each, where present).
    The tests of one metric and source form a family (every pair of models, or every pair of
    domains, on drums, say): their p-values are Holm-adjusted together, and ``significant`` is
    judged on the adjusted value. (One family over all sources and metrics would need, with 10
    tracks, a p-value below what a Wilcoxon test of 10 tracks can give.)

    Args:
        systems: The systems, changed in place (``summary`` is added).
        sources: The sources to compare.
        confidence: Coverage of every interval. (Default: ``0.95``)
        alpha: Significance level. (Default: ``0.05``)
        resamples: Bootstrap resamples. (Default: ``10000``)

    Returns:
        ``{"domains": {domain: [labels]}, "paired": [...], "domain_panel": [...]}``; each test is
        a dict with ``metric``, ``source``, ``a``, ``b``, ``mean_difference``, ``low``, ``high``,
        ``count``, ``p_value``, ``p_holm`` and ``significant``.
    """
    metrics = list(STATISTIC_OF_METRIC)
    for system in systems:
        system["summary"] = {
            metric: {source: _summary(system, metric, source, confidence, resamples) for source in sources}
            for metric in metrics
        }
    domains: dict[str, list[str]] = {}
    for system in systems:
        domains.setdefault(system["domain"], []).append(system["label"])
    trained = [s for s in systems if s.get("kind") == "trained"]
    pairs = [(a, b) for i, a in enumerate(trained) for b in trained[i + 1 :] if a["domain"] != b["domain"]]
    paired: list[dict] = []
    panel: list[dict] = []
    domain_scores = _domain_means(trained)
    domain_pairs = [
        (a, b)
        for a, b in (("waveform", "spectrogram"), ("hybrid", "waveform"), ("hybrid", "spectrogram"))
        if a in domain_scores and b in domain_scores
    ]
    for metric in metrics:
        family = [
            _test(
                metric,
                source,
                a["label"],
                b["label"],
                _scores(a, metric, source),
                _scores(b, metric, source),
                confidence,
                alpha,
                resamples,
            )
            for a, b in pairs
            for source in sources
        ]
        panel_family = [
            _test(
                metric,
                source,
                a,
                b,
                domain_scores[a][metric][source],
                domain_scores[b][metric][source],
                confidence,
                alpha,
                resamples,
            )
            for a, b in domain_pairs
            for source in sources
        ]
        for tests in (family, panel_family):
            for source in sources:
                members = [t for t in tests if t["source"] == source]
                for test, adjusted in zip(members, holm_adjust([t["p_value"] for t in members])):
                    test["p_holm"] = adjusted
                    test["significant"] = not math.isnan(adjusted) and adjusted < alpha
        paired += family
        panel += panel_family
    return {"domains": domains, "paired": paired, "domain_panel": panel}


EQUIVALENT = "equivalent within the margin"
WORSE = "worse"
NOT_SHOWN = "not shown"
TOO_FEW = "not shown (n too small)"
VERDICTS = (EQUIVALENT, WORSE, NOT_SHOWN, TOO_FEW)
"""The verdicts of :func:`equivalence_tests`, per source."""


def equivalence_test(
    exported: Sequence[float] | np.ndarray, original: Sequence[float] | np.ndarray, margin: float
) -> dict:
    """TOST on paired per-track scores: is the exported model within ``margin`` dB of the original?

    The differences are ``exported - original``, per track (pairs with a NaN left out). Two
    one-sided exact Wilcoxon signed-rank tests (:func:`one_sided_signed_rank_p_value`, zeros
    dropped, ties at average ranks) reject H0 "median difference <= -margin" (the differences
    plus ``margin`` lie above zero: ``p_lower``) and H0 "median difference >= +margin" (the
    differences minus ``margin`` lie below zero: ``p_upper``); the TOST p-value is the larger.
    ``p_worse`` is the one-sided test of "the exported model is worse by more than the margin"
    (the differences plus ``margin`` lie below zero), the complement of ``p_lower``.

    Args:
        exported: The exported model's score per track.
        original: The original model's score per track, same order.
        margin: The equivalence margin in dB, positive.

    Returns:
        ``count``, ``median_difference``, ``p_lower``, ``p_upper``, ``p_tost`` and ``p_worse``
        (p-values NaN when no track has both scores).
    """
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    a = np.asarray(exported, dtype=np.float64).reshape(-1)
    b = np.asarray(original, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need one value per track for both models, got {a.size} and {b.size}")
    differences = (a - b)[~(np.isnan(a) | np.isnan(b))]
    if differences.size == 0:
        nan = math.nan
        return {
            "count": 0,
            "median_difference": nan,
            "p_lower": nan,
            "p_upper": nan,
            "p_tost": nan,
            "p_worse": nan,
        }
    p_lower = one_sided_signed_rank_p_value(differences + margin, "greater")
    p_upper = one_sided_signed_rank_p_value(differences - margin, "less")
    return {
        "count": int(differences.size),
        "median_difference": float(np.median(differences)),
        "p_lower": p_lower,
        "p_upper": p_upper,
        "p_tost": max(p_lower, p_upper),
        "p_worse": one_sided_signed_rank_p_value(differences + margin, "less"),
    }


def equivalence_tests(
    exported: dict[str, Sequence[float] | np.ndarray],
    original: dict[str, Sequence[float] | np.ndarray],
    sources: Sequence[str],
    margin: float,
    alpha: float = 0.05,
) -> list[dict]:
    """The equivalence test of one exported model against its original, on every source.

    The sources form one family: the TOST p-values are Holm-adjusted together (``p_holm``),
    and so are the p-values of being worse (``p_worse_holm``). The verdict per source is
    :data:`EQUIVALENT` when ``p_holm < alpha``, else :data:`WORSE` when ``p_worse_holm < alpha``
    (the two cannot both hold), else :data:`TOO_FEW` when ``n`` tracks cannot reach ``alpha``
    whatever the scores (the smallest exact one-sided p-value is ``1 / 2**n``, and Holm
    multiplies the smallest of ``m`` by ``m``: ``m / 2**n >= alpha``), else :data:`NOT_SHOWN`.

    Args:
        exported: The exported model's per-track scores, by source.
        original: The original model's per-track scores, by source.
        sources: The sources to test.
        margin: The equivalence margin in dB, positive.
        alpha: Significance level. (Default: ``0.05``)

    Returns:
        One dict per source: ``source``, the fields of :func:`equivalence_test`, ``p_holm``,
        ``p_worse_holm`` and ``verdict``.
    """
    tests = [
        {"source": source, **equivalence_test(exported[source], original[source], margin)}
        for source in sources
    ]
    family = sum(1 for test in tests if test["count"] > 0)
    for test, p_holm, p_worse_holm in zip(
        tests,
        holm_adjust([t["p_tost"] for t in tests]),
        holm_adjust([t["p_worse"] for t in tests]),
    ):
        test["p_holm"], test["p_worse_holm"] = p_holm, p_worse_holm
        if p_holm < alpha:
            test["verdict"] = EQUIVALENT
        elif p_worse_holm < alpha:
            test["verdict"] = WORSE
        elif test["count"] == 0 or family / 2.0 ** test["count"] >= alpha:
            test["verdict"] = TOO_FEW
        else:
            test["verdict"] = NOT_SHOWN
    return tests


def compare_equivalence(
    systems: list[dict],
    pairs: Sequence[Sequence[str]],
    sources: Sequence[str],
    margin: float,
    alpha: float = 0.05,
    metric: str = "nSDR",
) -> list[dict]:
    """The equivalence tests of a comparison: each pair ``(exported, original)`` of system labels.

    Args:
        systems: The systems as :func:`compare_systems` takes them (``label`` and ``per_track``).
        pairs: ``(exported label, original label)`` pairs.
        sources: The sources to test.
        margin: The equivalence margin in dB, positive.
        alpha: Significance level. (Default: ``0.05``)
        metric: The per-track metric compared. (Default: ``"nSDR"``)

    Returns:
        Per pair and source, the dict of :func:`equivalence_tests` with ``metric``, ``exported``,
        ``original`` and ``margin``; Holm families are one pair's sources.
    """
    by_label = {system["label"]: system for system in systems}
    results: list[dict] = []
    for exported, original in pairs:
        first, second = by_label[exported], by_label[original]
        tests = equivalence_tests(
            {s: _scores(first, metric, s) for s in sources},
            {s: _scores(second, metric, s) for s in sources},
            sources,
            margin,
            alpha,
        )
        head = {"metric": metric, "exported": exported, "original": original, "margin": margin}
        results += [{**head, **test} for test in tests]
    return results


def _scores(system: dict, metric: str, source: str) -> np.ndarray:
    values = system.get("per_track", {}).get(metric, {}).get(source)
    if values is None:
        return np.array([], dtype=np.float64)
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _summary(system: dict, metric: str, source: str, confidence: float, resamples: int) -> dict:
    interval = bootstrap_interval(
        _scores(system, metric, source), STATISTIC_OF_METRIC[metric], confidence, resamples
    )
    seeds = system.get("per_seed", {}).get(metric, {}).get(source) or []
    _, spread = seed_spread([math.nan if v is None else v for v in seeds])
    return {
        "estimate": interval.estimate,
        "low": interval.low,
        "high": interval.high,
        "count": interval.count,
        "seed_std": spread,
    }


def _domain_means(trained: list[dict]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Per domain, metric and source: the per-track mean over the domain's trained systems."""
    grouped: dict[str, list[dict]] = {}
    for system in trained:
        grouped.setdefault(system["domain"], []).append(system)
    means: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for domain, members in grouped.items():
        means[domain] = {}
        for metric in STATISTIC_OF_METRIC:
            sources = members[0].get("per_track", {}).get(metric, {})
            means[domain][metric] = {
                source: np.mean(np.stack([_scores(m, metric, source) for m in members]), axis=0)
                for source in sources
            }
    return means


def _test(
    metric: str,
    source: str,
    a: str,
    b: str,
    first: np.ndarray,
    second: np.ndarray,
    confidence: float,
    alpha: float,
    resamples: int,
) -> dict:
    result = paired_comparison(first, second, confidence, alpha, resamples)
    return {
        "metric": metric,
        "source": source,
        "a": a,
        "b": b,
        "mean_difference": result.mean_difference,
        "low": result.interval.low,
        "high": result.interval.high,
        "count": result.count,
        "p_value": result.p_value,
    }
