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


def test_one_sided_signed_rank_p_values_equal_scipys_exact_ones_without_ties():
    from scipy.stats import wilcoxon

    from sepzoo.evaluation.stats import one_sided_signed_rank_p_value

    rng = np.random.default_rng(3)
    for n in (5, 9, 14):
        differences = rng.normal(0.3, 1.0, size=n)
        for alternative in ("greater", "less"):
            expected = wilcoxon(differences, alternative=alternative, method="exact").pvalue
            assert one_sided_signed_rank_p_value(differences, alternative) == pytest.approx(expected)


def test_one_sided_signed_rank_p_values_drop_zeros_and_count_tied_ranks():
    from sepzoo.evaluation.stats import one_sided_signed_rank_p_value

    # Zeros are dropped: six positive differences left, p = 1 / 2**6 on the upper side.
    assert one_sided_signed_rank_p_value([0, 0, 1, 2, 3, 4, 5, 6], "greater") == pytest.approx(1 / 64)
    # All four magnitudes tie (rank 2.5 each); one negative: P(at most 1 negative of 4) = 5 / 16.
    assert one_sided_signed_rank_p_value([1, 1, 1, -1], "greater") == pytest.approx(5 / 16)
    assert one_sided_signed_rank_p_value([1, 1, 1, -1], "less") == pytest.approx(15 / 16)
    assert one_sided_signed_rank_p_value(np.zeros(5), "less") == 1.0


def test_identical_scores_on_eight_tracks_are_equivalent_even_after_holm_across_four_sources():
    from sepzoo.evaluation.stats import EQUIVALENT, equivalence_tests

    scores = {s: np.linspace(3, 8, 8) for s in ("drums", "bass", "other", "vocals")}
    tests = equivalence_tests(scores, scores, list(scores), margin=0.2)
    for test in tests:
        # Every difference is 0: both shifted samples are all of one sign, p = 1 / 2**8 each side.
        assert test["count"] == 8 and test["median_difference"] == 0.0
        assert test["p_lower"] == pytest.approx(1 / 256) and test["p_upper"] == pytest.approx(1 / 256)
        assert test["p_holm"] == pytest.approx(4 / 256)
        assert test["verdict"] == EQUIVALENT


def test_an_exported_model_about_one_db_lower_is_worse_and_a_small_noisy_loss_is_not_shown():
    from sepzoo.evaluation.stats import NOT_SHOWN, WORSE, equivalence_tests

    rng = np.random.default_rng(0)
    original = rng.normal(5, 2, size=10)
    exported = {
        "drums": original - 1.0 + rng.normal(0, 0.1, size=10),  # every track about 1 dB lower
        "bass": original + rng.normal(0, 0.5, size=10),  # noise wider than the margin
    }
    tests = equivalence_tests(exported, {s: original for s in exported}, list(exported), margin=0.2)
    drums, bass = tests
    assert drums["median_difference"] == pytest.approx(-1.0, abs=0.1)
    assert drums["p_worse"] == pytest.approx(1 / 1024) and drums["p_worse_holm"] == pytest.approx(2 / 1024)
    assert drums["p_lower"] == 1.0 and drums["verdict"] == WORSE
    assert bass["p_holm"] > 0.05 and bass["p_worse_holm"] > 0.05 and bass["verdict"] == NOT_SHOWN


def test_three_tracks_cannot_show_equivalence_and_holm_counts_every_source():
    from sepzoo.evaluation.stats import EQUIVALENT, TOO_FEW, equivalence_tests

    three = equivalence_tests({"vocals": np.zeros(3)}, {"vocals": np.zeros(3)}, ["vocals"], margin=0.2)
    assert three[0]["p_tost"] == pytest.approx(1 / 8) and three[0]["verdict"] == TOO_FEW
    # Five tracks: 1/32 < 0.05 alone, but Holm over four sources gives 4/32 > 0.05: too few.
    sources = ["drums", "bass", "other", "vocals"]
    zeros = {s: np.zeros(5) for s in sources}
    assert equivalence_tests(zeros, zeros, ["drums"], 0.2)[0]["verdict"] == EQUIVALENT
    assert {t["verdict"] for t in equivalence_tests(zeros, zeros, sources, 0.2)} == {TOO_FEW}


def test_holm_across_sources_orders_the_tost_p_values():
    from sepzoo.evaluation.stats import EQUIVALENT, NOT_SHOWN, equivalence_tests, holm_adjust

    rng = np.random.default_rng(1)
    original = rng.normal(5, 2, size=12)
    spread = {"drums": 0.01, "bass": 0.1, "other": 0.3, "vocals": 2.0}
    exported = {s: original + rng.normal(0, width, size=12) for s, width in spread.items()}
    tests = equivalence_tests(exported, {s: original for s in spread}, list(spread), margin=0.2)
    assert [t["p_holm"] for t in tests] == pytest.approx(holm_adjust([t["p_tost"] for t in tests]))
    assert tests[0]["p_holm"] == pytest.approx(4 / 4096)  # 12 tracks well inside the margin
    assert tests[0]["verdict"] == EQUIVALENT and tests[3]["verdict"] == NOT_SHOWN
    for test in tests:
        assert test["p_tost"] == max(test["p_lower"], test["p_upper"])


def test_an_equivalence_margin_must_be_positive_and_nan_pairs_are_dropped():
    from sepzoo.evaluation.stats import equivalence_test

    with pytest.raises(ValueError, match="positive"):
        equivalence_test([1.0, 2.0], [1.0, 2.0], margin=0.0)
    result = equivalence_test([1.0, math.nan, 2.0, 3.0], [1.0, 2.0, math.nan, 3.0], margin=0.5)
    assert result["count"] == 2 and result["p_tost"] == pytest.approx(1 / 4)
