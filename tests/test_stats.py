"""Confidence intervals and paired tests on synthetic scores with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sepzoo.evaluation.stats import bootstrap_interval, holm_adjust, paired_comparison, seed_spread


def test_the_interval_of_a_constant_is_that_constant():
    interval = bootstrap_interval([3.5] * 12)
    assert (interval.estimate, interval.low, interval.high, interval.count) == (3.5, 3.5, 3.5, 12)


def test_the_mean_interval_of_many_normal_scores_matches_the_normal_theory_one():
    rng = np.random.default_rng(1)
    values = rng.normal(5.0, 2.0, size=400)
    interval = bootstrap_interval(values, resamples=4000)
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low == pytest.approx(values.mean() - half_width, abs=0.05)
    assert interval.high == pytest.approx(values.mean() + half_width, abs=0.05)


def test_a_95_percent_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(200):
        values = rng.normal(0.0, 1.0, size=30)
        interval = bootstrap_interval(values, resamples=1000, seed=trial)
        covered += interval.low <= 0.0 <= interval.high
    assert 0.88 <= covered / 200 <= 0.99


def test_medians_nan_tracks_and_reproducibility():
    values = [1.0, 2.0, float("nan"), 10.0, 3.0]
    interval = bootstrap_interval(values, statistic="median")
    assert interval.estimate == 2.5 and interval.count == 4
    assert bootstrap_interval(values, statistic="median") == interval
    assert math.isnan(bootstrap_interval([float("nan")]).estimate)
    with pytest.raises(ValueError, match="statistic must be one of mean, median"):
        bootstrap_interval(values, statistic="mode")


def test_a_model_better_on_every_one_of_ten_tracks_has_the_exact_wilcoxon_p_value():
    base = np.linspace(-2, 6, 10)
    gains = np.arange(1, 11) * 0.1  # distinct, all positive: the exact two-sided p is 2 / 2**10
    result = paired_comparison(base + gains, base)
    assert result.p_value == pytest.approx(2 / 2**10)
    assert result.significant and result.count == 10
    assert result.mean_difference == pytest.approx(gains.mean())
    assert 0 < result.interval.low < gains.mean() < result.interval.high


def test_noise_alone_is_not_significant_and_identical_models_give_p_one():
    rng = np.random.default_rng(3)
    scores = rng.normal(4.0, 3.0, size=12)
    noisy = paired_comparison(
        scores + rng.normal(0.0, 0.01, size=12), scores + rng.normal(0.0, 0.01, size=12)
    )
    assert not noisy.significant and noisy.interval.low < 0 < noisy.interval.high
    same = paired_comparison(scores, scores)
    assert same.p_value == 1.0 and not same.significant and same.mean_difference == 0.0


def test_pairs_with_a_nan_are_dropped_and_unequal_lengths_refused():
    result = paired_comparison([1.0, float("nan"), 3.0, 4.0], [0.0, 1.0, float("nan"), 2.0])
    assert result.count == 2 and result.mean_difference == pytest.approx(1.5)
    with pytest.raises(ValueError, match="one value per track"):
        paired_comparison([1.0, 2.0], [1.0])


def test_seed_spread_is_the_mean_and_sample_standard_deviation():
    mean, std = seed_spread([4.0, 5.0, 6.0])
    assert mean == 5.0 and std == pytest.approx(1.0)
    assert math.isnan(seed_spread([4.0])[1])


def test_holm_multiplies_the_smallest_p_by_the_family_size_and_keeps_the_order_monotone():
    # Sorted 0.01, 0.02, 0.03, 0.04 -> 4*0.01, 3*0.02, 2*0.03, 1*0.04, each at least the one before.
    adjusted = holm_adjust([0.04, 0.01, 0.03, 0.02])
    assert adjusted == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_holm_leaves_nan_out_of_the_family():
    adjusted = holm_adjust([math.nan, 0.01, 0.04])
    assert math.isnan(adjusted[0])
    assert adjusted[1:] == pytest.approx([0.02, 0.04])


def test_the_signed_rank_p_value_equals_scipys_exact_one_without_ties():
    from scipy.stats import wilcoxon

    from sepzoo.evaluation.stats import signed_rank_p_value

    rng = np.random.default_rng(3)
    for n in (3, 8, 12, 25):
        differences = rng.normal(0.4, 1.0, n)
        assert signed_rank_p_value(differences) == pytest.approx(wilcoxon(differences, method="exact").pvalue)


def test_with_ties_the_signed_rank_p_value_counts_every_sign_pattern():
    import itertools

    from scipy.stats import rankdata

    from sepzoo.evaluation.stats import signed_rank_p_value

    differences = np.array([1.0, -1.0, 2.0, 2.0, 2.0, 0.5, 3.0, 3.0, -0.5, 1.0])  # many ties
    ranks = rankdata(np.abs(differences))
    observed = ranks[differences > 0].sum()
    sums = [sum(r for r, up in zip(ranks, signs) if up) for signs in itertools.product([0, 1], repeat=10)]
    low = np.mean([t <= observed + 1e-9 for t in sums])
    high = np.mean([t >= observed - 1e-9 for t in sums])
    assert signed_rank_p_value(differences) == pytest.approx(min(1.0, 2 * min(low, high)))
    assert signed_rank_p_value(np.zeros(6)) == 1.0
    assert signed_rank_p_value(np.ones(12)) == pytest.approx(2 / 2**12)
