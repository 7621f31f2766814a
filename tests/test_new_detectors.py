"""The canary comparison, group fairness and label-free error estimation (detectors/):
their stated guarantees measured on seeded simulated streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from detectors import CalibratedError, GapFire, GroupParity, SequentialComparison, rate_ratio_interval
from monitor import state_format


def _cuts(rng, size, pieces):
    """Random cut points splitting ``range(size)`` into about ``pieces`` batches (some empty)."""
    return np.sort(rng.integers(0, size + 1, pieces))


def _feed_in_cuts(detector, rng, pieces, *columns):
    """Feed the columns in random batches; the fires with indices into the whole stream."""
    fires = []
    start = 0
    for end in [*_cuts(rng, len(columns[0]), pieces), len(columns[0])]:
        for fire in detector.update_many(*(c[start:end] for c in columns)):
            fires.append(fire._replace(index=fire.index + start))
        start = end
    return fires


# -- SequentialComparison ---------------------------------------------------------------------------


def _null_fire_rate(rng, rate, streams, size, alpha, share=0.5, direction="higher_is_worse"):
    fired = 0
    for _ in range(streams):
        arms = rng.random(size) < share
        values = (rng.random(size) < rate).astype(np.float64)
        fired += bool(SequentialComparison(alpha=alpha, direction=direction).update_many(values, arms))
    return fired / streams


def _slack(alpha, streams):
    """Three binomial standard errors above ``alpha``: the sampling slack of an empirical rate."""
    return alpha + 3.0 * math.sqrt(alpha * (1 - alpha) / streams)


@pytest.mark.parametrize(("rate", "share", "alpha"),
                         [(0.05, 0.5, 0.05), (0.002, 0.5, 0.05), (0.05, 0.1, 0.05), (0.05, 0.5, 0.01)])
def test_equal_canary_ever_fires_at_most_alpha(rate, share, alpha):
    # 1,000 equal pairs of 5,000 values (canary share of traffic ``share``), checked after every
    # value: P(ever firing) <= alpha. Measured: 0.013, 0, 0.004 and 0.004 (alpha 0.01). It fires
    # one way only on a two-sided mixture, and the smoothed variance is a little large for rare
    # rates, so it is conservative.
    measured = _null_fire_rate(np.random.default_rng(1), rate, 1000, 5000, alpha, share)
    assert measured <= _slack(alpha, 1000)


def test_equal_canary_two_sided_on_real_values_ever_fires_at_most_alpha():
    rng = np.random.default_rng(2)
    alpha, streams, fired = 0.05, 1000, 0
    for _ in range(streams):
        arms = rng.random(5000) < 0.5
        detector = SequentialComparison(alpha=alpha, direction="two_sided")
        fired += bool(detector.update_many(rng.beta(2.0, 5.0, 5000), arms))
    assert fired / streams <= _slack(alpha, streams)  # measured 0.026


def test_doubled_error_rate_is_caught():
    rng = np.random.default_rng(3)
    needed = []
    for _ in range(200):
        arms = rng.random(20000) < 0.5
        errors = rng.random(20000) < np.where(arms, 0.10, 0.05)
        detector = SequentialComparison(alpha=0.01)
        fires = detector.update_many(errors, arms)
        assert len(fires) == 1 and detector.verdict == "fail"
        fire = fires[0]
        assert fire.score >= fire.threshold == pytest.approx(math.log(100))
        needed.append(int(arms[: fire.index + 1].sum()))
    # Measured: a median of 576 canary values (10th-90th percentile 253-1,097), with as many
    # baseline values beside them.
    assert 300 <= np.median(needed) <= 1000


def test_a_better_canary_does_not_fail_a_higher_is_worse_test():
    rng = np.random.default_rng(4)
    arms = rng.random(20000) < 0.5
    errors = rng.random(20000) < np.where(arms, 0.02, 0.10)
    detector = SequentialComparison(alpha=0.01)
    assert detector.update_many(errors, arms) == []
    assert detector.verdict == "pass"
    two_sided = SequentialComparison(alpha=0.01, direction="two_sided")
    assert len(two_sided.update_many(errors, arms)) == 1


def test_equal_canary_passes_given_enough_data():
    rng = np.random.default_rng(5)
    detector = SequentialComparison(alpha=0.01)
    assert detector.verdict == "inconclusive"  # no data is never a failure
    arms = rng.random(300000) < 0.5
    errors = rng.random(300000) < 0.05
    assert detector.update_many(errors[:2000], arms[:2000]) == []
    assert detector.verdict == "inconclusive"  # too little data to say "at most 10% worse"
    detector.update_many(errors[2000:], arms[2000:])
    low, high = detector.interval
    assert detector.verdict == "pass" and low < 0.0 < high < 0.1 * 0.05
    assert detector.counts == (int((~arms).sum()), int(arms.sum()))


def test_fires_are_the_same_however_the_stream_is_cut():
    rng = np.random.default_rng(6)
    size = 30000
    arms = rng.random(size) < 0.3
    for values in (rng.random(size) < np.where(arms, 0.08, 0.05), rng.normal(np.where(arms, 0.05, 0.0), 1.0)):
        whole = SequentialComparison(alpha=0.01, direction="two_sided")
        expected = whole.update_many(values, arms)
        assert len(expected) == 1
        for pieces in (3, 50, 2000):
            cut = SequentialComparison(alpha=0.01, direction="two_sided")
            assert _feed_in_cuts(cut, rng, pieces, values, arms) == expected  # exact: index and score
            assert cut.interval == whole.interval and cut.score == whole.score


def test_no_fire_before_min_samples_and_never_twice():
    detector = SequentialComparison(alpha=0.01, min_samples=50)
    arms = np.tile([True, False], 49)
    values = np.where(arms, 1.0, 0.0)  # as bad as can be, but 49 values per arm
    assert detector.update_many(values, arms) == []
    assert detector.verdict == "inconclusive" and detector.interval == (-math.inf, math.inf)
    fires = detector.update_many(np.array([1.0, 0.0]), np.array([True, False]))
    assert [f.index for f in fires] == [1]  # the first value at which both arms hold 50
    assert detector.update_many(np.ones(1000), np.ones(1000, dtype=bool)) == []  # sticky
    assert detector.verdict == "fail"


def test_needs_arms_and_validates():
    detector = SequentialComparison()
    with pytest.raises(ValueError, match="arm"):
        detector.update_many(np.ones(3))
    with pytest.raises(ValueError, match="alpha"):
        SequentialComparison(alpha=1.5)
    detector.set_false_alarm_rate(0.001)
    assert detector.threshold == pytest.approx(math.log(1000))


def test_checkpoint_round_trip_goes_on_the_same():
    rng = np.random.default_rng(8)
    arms = rng.random(8000) < 0.5
    errors = rng.random(8000) < np.where(arms, 0.09, 0.05)
    detector = SequentialComparison(alpha=0.01)
    detector.update_many(errors[:100], arms[:100])
    copy = state_format.loads(state_format.dumps(detector))
    assert copy.update_many(errors[100:], arms[100:]) == detector.update_many(errors[100:], arms[100:])


# -- GroupParity and rate_ratio_interval -------------------------------------------------------------


def test_rate_ratio_interval_is_scipys_katz_interval():
    for x1, n1, x0, n0 in [(30, 100, 60, 100), (7, 40, 300, 1000), (90, 90, 45, 100)]:
        ratio, low, high = rate_ratio_interval(x1, n1, x0, n0, 0.99)
        katz = stats.contingency.relative_risk(x1, n1, x0, n0)
        interval = katz.confidence_interval(0.99)
        assert (ratio, low, high) == pytest.approx((katz.relative_risk, interval.low, interval.high))


def test_rate_ratio_interval_with_no_positives_is_finite_and_wide():
    ratio, low, high = rate_ratio_interval(0, 200, 60, 1000, 0.99)
    assert 0.0 < low < ratio < high < math.inf
    assert ratio == pytest.approx((0.5 / 201) / (60.5 / 1001))
    assert rate_ratio_interval(5, 100, 0, 100, 0.99)[2] > 10.0  # a reference with no positives


def _decisions(rng, size, rates, shares=(0.6, 0.3, 0.1)):
    groups = rng.choice(len(shares), size=size, p=shares)
    outcomes = (rng.random(size) < np.asarray(rates)[groups]).astype(np.float64)
    return groups, outcomes


def test_a_fair_stream_raises_nothing():
    # 200,000 decisions, 3 groups of 60/30/10 % at one positive rate: 1,000 checks, no alert.
    groups, outcomes = _decisions(np.random.default_rng(10), 200_000, [0.3, 0.3, 0.3])
    parity = GroupParity(check_every=200)
    assert parity.update_many(groups, outcomes) == []
    ratios = parity.ratios()
    assert sorted(ratios) == [1, 2]  # the reference (group 0, the largest) is not its own ratio
    for ratio, low, high in ratios.values():
        assert low < 1.0 < high and 0.8 < ratio < 1.25  # gauges near 1


@pytest.mark.parametrize("group", [1, 2])
def test_a_group_at_six_tenths_of_the_rate_is_found_once(group):
    rng = np.random.default_rng(11 + group)
    rates = [0.3, 0.3, 0.3]
    rates[group] = 0.18
    before = _decisions(rng, 20_000, [0.3, 0.3, 0.3])
    after = _decisions(rng, 50_000, rates)
    parity = GroupParity()
    assert parity.update_many(*before) == []
    fires = parity.update_many(*after)
    assert [f.group for f in fires] == [group]  # one alert for a persistent gap, with its code
    fire = fires[0]
    assert isinstance(fire, GapFire) and fire.high < 0.8 and fire.low < fire.ratio < fire.high
    assert (fire.index + 20_000 + 1) % 200 == 0  # at a check
    assert fire.index < 6000  # within about a window of the change
    assert parity.ratios()[group][0] < 0.8  # the gauge still shows the gap (its bound may wander over 0.8)


def test_a_gap_that_closes_rearms():
    rng = np.random.default_rng(14)
    parity = GroupParity(window=5000)
    unfair, fair = _decisions(rng, 20_000, [0.3, 0.3, 0.15]), _decisions(rng, 20_000, [0.3, 0.3, 0.3])
    streams = [unfair, fair, unfair]
    found = [[f.group for f in parity.update_many(*s)] for s in streams]
    assert found == [[2], [], [2]]


def test_a_rate_above_the_band_fires_too_and_a_given_reference_is_kept():
    rng = np.random.default_rng(15)
    groups, outcomes = _decisions(rng, 30_000, [0.2, 0.2, 0.4])
    parity = GroupParity(reference=1)  # the 30 % group, not the largest
    fires = parity.update_many(groups, outcomes)
    assert [f.group for f in fires] == [2] and fires[0].low > 1.25
    assert sorted(parity.ratios()) == [0, 2]


def test_group_parity_is_the_same_however_the_stream_is_cut():
    rng = np.random.default_rng(16)
    groups, outcomes = _decisions(rng, 60_000, [0.3, 0.25, 0.2], shares=(0.5, 0.3, 0.2))
    groups[30_000:] = np.where(rng.random(30_000) < 0.05, 7, groups[30_000:])  # a new, later code
    outcomes[30_000:] = np.where(groups[30_000:] == 7, rng.random(30_000) < 0.05, outcomes[30_000:])
    whole = GroupParity(window=3000, check_every=150)
    expected = whole.update_many(groups, outcomes)
    assert {f.group for f in expected} >= {7}
    for pieces in (5, 400, 20_000):
        cut = GroupParity(window=3000, check_every=150)
        assert _feed_in_cuts(cut, rng, pieces, groups, outcomes) == expected
        assert cut.ratios() == whole.ratios()


def test_group_parity_validates_codes_and_round_trips_a_checkpoint():
    parity = GroupParity(max_groups=8)
    with pytest.raises(ValueError, match="group codes"):
        parity.update_many(np.array([8]), np.array([1.0]))
    with pytest.raises(ValueError, match="group codes"):
        parity.update_many(np.array([0.5]), np.array([1.0]))
    groups, outcomes = _decisions(np.random.default_rng(17), 20_000, [0.3, 0.3, 0.15])
    parity.update_many(groups[:7000], outcomes[:7000])
    copy = state_format.loads(state_format.dumps(parity))
    assert copy.update_many(groups[7000:], outcomes[7000:]) == parity.update_many(groups[7000:], outcomes[7000:])


# -- CalibratedError ------------------------------------------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    return np.log(p / (1.0 - p))


def _true_error(scores, truths, threshold=0.5):
    return float(np.mean((scores >= threshold) != truths))


def test_expected_error_follows_a_covariate_shift_towards_half():
    # A calibrated classifier (y ~ Bernoulli(score)), confident on the reference; then its
    # inputs drift and its scores crowd towards 0.5: the error rate rises from ~0.21 to ~0.37.
    # The estimate's accuracy is that of the reference's labels: with 5,000 of them it is within
    # 2 points (measured over 30 seeds: mean |error| 0.5 points, worst 1.3); with 1,000, 1.5 on
    # average and up to 4.
    gaps = []
    for seed in range(8):
        rng = np.random.default_rng(20 + seed)
        reference = rng.beta(0.7, 0.7, 5000)
        estimator = CalibratedError(reference_size=5000)
        estimator.add_labels(reference[:1234], rng.random(1234) < reference[:1234])  # in two batches
        assert not estimator.fitted and estimator.held == 1234
        estimator.add_labels(reference[1234:], rng.random(3766) < reference[1234:])
        assert estimator.fitted
        before = rng.beta(0.7, 0.7, 20000)
        after = rng.beta(5.0, 5.0, 20000)
        truth_before, truth_after = rng.random(20000) < before, rng.random(20000) < after
        estimated_before = estimator.expected_error(before).mean()
        estimated_after = estimator.expected_error(after).mean()
        assert estimated_after > estimated_before + 0.1
        assert abs(estimated_before - _true_error(before, truth_before)) < 0.02
        gaps.append(estimated_after - _true_error(after, truth_after))
    assert max(map(abs, gaps)) < 0.02
    assert abs(np.mean(gaps)) < 0.01  # no bias beyond the noise


def test_an_overconfident_model_is_corrected_by_the_calibration():
    # Scores too confident: the true probability is p, the model says sigmoid(3 logit p).
    rng = np.random.default_rng(30)
    p = rng.beta(2.0, 2.0, 5000)
    estimator = CalibratedError(reference_size=5000)
    estimator.add_labels(_sigmoid(3 * _logit(p)), rng.random(5000) < p)
    shifted = rng.beta(4.0, 4.0, 20000)
    scores, truths = _sigmoid(3 * _logit(shifted)), rng.random(20000) < shifted
    true_error = _true_error(scores, truths)
    naive = np.where(scores >= 0.5, 1 - scores, scores).mean()  # taking the scores at their word
    assert true_error - naive > 0.1  # measured: the raw scores claim ~15 points fewer errors
    assert abs(estimator.expected_error(scores).mean() - true_error) < 0.02
    # The calibration is monotone and pulls the extreme scores back towards p.
    grid = np.linspace(0.01, 0.99, 99)
    calibrated = estimator.calibrated(grid)
    assert np.all(np.diff(calibrated) >= 0)
    assert calibrated[0] > 0.05 and calibrated[-1] < 0.95


def test_calibrated_error_tied_scores_extra_labels_and_checkpoint():
    estimator = CalibratedError(reference_size=100, bins=10)
    with pytest.raises(ValueError, match="not fitted"):
        estimator.expected_error(np.array([0.5]))
    scores = np.repeat([0.2, 0.8], [70, 80])  # many ties: bins of one score are merged
    truths = np.concatenate([np.zeros(70), np.ones(80)])
    truths[:10] = 1
    estimator.add_labels(scores, truths)  # 150 offered, the first 100 kept
    assert estimator.held == 100 and estimator.fitted
    copy = state_format.loads(state_format.dumps(estimator))
    errors = copy.expected_error(np.array([0.2, 0.8]))
    assert errors.tolist() == estimator.expected_error(np.array([0.2, 0.8])).tolist()
    assert 0.1 < errors[0] < 0.2 and errors[1] < 0.1
    estimator.add_labels(np.zeros(10), np.ones(10))  # fitted: ignored
    assert estimator.expected_error(np.array([0.2])).tolist() == errors[:1].tolist()
