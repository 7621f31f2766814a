"""Detectors (detectors/): a conformance suite over every detector, then each one's specifics.

Streams are seeded (numpy ``default_rng``); where a statistic has a textbook definition it
is checked against scipy or an independent, exact re-implementation written here.
"""

from __future__ import annotations

import functools
import itertools
import math
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import base as river_base
from river.drift import ADWIN
from river.drift.binary import DDM, FHDDM, HDDMA
from scipy import stats

from detectors import (
    BurnRate,
    ChiSquareDrift,
    Detector,
    DriftShare,
    Fire,
    KSDrift,
    NumericDrift,
    RateIncrease,
    RiverAdapter,
)
from detectors.base import Window
from detectors.categorical import chi_square_homogeneity
from detectors.critical import chi_square_critical_value, ks_critical_value, normal_critical_value
from detectors.numeric import ks_statistic

# -- the detectors under the conformance suite, with small, fast parameters --------------------


def _ks():
    return KSDrift(reference_size=100, window_size=50, check_every=10, alpha=1e-3)


def _numeric():
    return NumericDrift(reference_size=100, window_size=50, check_every=10, alpha=1e-3)


def _numeric_long():
    # As the daemon runs it: a long window beside the short one.
    return NumericDrift(reference_size=100, window_size=50, check_every=10, alpha=1e-3, long_window=200,
                        long_check_every=40)


def _chi():
    return ChiSquareDrift(reference_size=100, window_size=50, check_every=10, alpha=1e-3, max_categories=6)


def _chi_long():
    return ChiSquareDrift(reference_size=100, window_size=50, check_every=10, alpha=1e-3, max_categories=6,
                          long_window=200, long_check_every=40)


def _rate():
    return RateIncrease(warmup=100, odds_ratio=3.0, threshold=5.0)


def _burn():
    # objective 0.75 and factor 2: the budget (0.25) and the limit (0.5) are exact in binary.
    return BurnRate(objective=0.75, long_window=60, short_window=12, factor=2.0)


def _burn_slow():
    # With the slow tier, as the daemon runs it.
    return BurnRate(objective=0.75, long_window=60, short_window=12, factor=2.0,
                    slow_long_window=200, slow_short_window=40, slow_factor=1.5)


def _ddm():
    return RiverAdapter(DDM())


# The daemon's other choices of decay detector (monitor/model_state.py), each as it builds it.
def _adwin_rising():
    return RiverAdapter(ADWIN(), rising_only=True)


def _fhddm():
    return RiverAdapter(FHDDM(), invert=True)


def _hddma():
    return RiverAdapter(HDDMA())


def _ks_stream(rng):
    return np.concatenate([rng.normal(0, 1, 400), rng.normal(2, 1, 400), rng.normal(2, 4, 400)])


def _chi_stream(rng):
    return np.concatenate([
        rng.choice(4, 400, p=[0.5, 0.3, 0.1, 0.1]),
        rng.choice(9, 400, p=[0.1, 0.1, 0.1, 0.1, 0, 0, 0.2, 0.2, 0.2]),  # codes >= 5 share a bucket
        rng.choice(4, 400, p=[0.1, 0.2, 0.3, 0.4]),
    ]).astype(np.float64)


def _rate_stream(rng):
    return np.concatenate([rng.random(400) < 0.05, rng.random(400) < 0.3, rng.random(400) < 0.7]).astype(float)


def _burn_stream(rng):
    parts = [(300, 0.1), (200, 0.8), (300, 0.1), (200, 0.8), (200, 0.1)]
    return np.concatenate([rng.random(n) < p for n, p in parts]).astype(float)


def _ddm_stream(rng):
    return np.concatenate([rng.random(600) < 0.1, rng.random(600) < 0.5]).astype(float)


CASES = {
    "ks": (_ks, _ks_stream, 3.7),
    "numeric": (_numeric, _ks_stream, 3.7),
    "numeric_long": (_numeric_long, _ks_stream, 3.7),
    "chi_square": (_chi, _chi_stream, 2.0),
    "chi_square_long": (_chi_long, _chi_stream, 2.0),
    "rate": (_rate, _rate_stream, 0.0),
    "burn_rate": (_burn, _burn_stream, 0.0),
    "burn_rate_slow": (_burn_slow, _burn_stream, 0.0),
    "river_ddm": (_ddm, _ddm_stream, 0.0),
    "river_adwin_rising": (_adwin_rising, _ddm_stream, 0.0),
    "river_fhddm": (_fhddm, _ddm_stream, 0.0),
    "river_hddma": (_hddma, _ddm_stream, 0.0),
}
RIVER = ("river_ddm", "river_adwin_rising", "river_fhddm", "river_hddma")
NAMES = list(CASES)
SEEDS = range(4)


def make(name):
    return CASES[name][0]()


@functools.cache
def stream(name, seed):
    values = CASES[name][1](np.random.default_rng(seed))
    values.flags.writeable = False
    return values


def fires_in_one_batch(detector, values):
    return [(f.index, f.score, f.threshold) for f in detector.update_many(values)]


def fires_in_batches(detector, values, cuts):
    out, start = [], 0
    for end in [*sorted(cuts), len(values)]:
        out.extend((start + f.index, f.score, f.threshold) for f in detector.update_many(values[start:end]))
        start = end
    return out


def fires_value_by_value(detector, values):
    out = []
    for i, x in enumerate(values):
        detector.update(float(x))
        if detector.drift_detected:
            out.append((i, detector.score, detector.threshold))
    return out


@functools.cache
def reference_fires(name, seed):
    return fires_in_one_batch(make(name), stream(name, seed))


# -- conformance ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_is_a_river_drift_detector(name):
    detector = make(name)
    assert isinstance(detector, river_base.DriftDetector)
    assert isinstance(detector, Detector)
    assert detector.drift_detected is False
    assert isinstance(detector.name, str)
    assert detector.name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_the_streams_make_every_detector_fire(name, seed):
    # Otherwise the invariance tests below would compare empty lists.
    assert len(reference_fires(name, seed)) >= 1


@pytest.mark.parametrize("name", NAMES)
def test_update_then_drift_detected_agrees_with_update_many_of_one(name):
    one, many = make(name), make(name)
    fired = 0
    for x in stream(name, 0):
        one.update(float(x))
        fires = many.update_many([x])
        assert one.drift_detected is bool(fires)
        assert many.drift_detected is bool(fires)
        assert [f.index for f in fires] in ([], [0])
        fired += bool(fires)
    assert fired >= 1


@pytest.mark.parametrize("name", NAMES)
def test_drift_detected_is_reset_by_the_next_update(name):
    detector = make(name)
    values = stream(name, 0)
    first = reference_fires(name, 0)[0][0]
    detector.update_many(values[: first + 1])
    assert detector.drift_detected
    detector.update_many(values[first + 1: first + 2])
    assert detector.drift_detected is (first + 1 in [f[0] for f in reference_fires(name, 0)])
    detector.update_many(values[:0])
    assert detector.drift_detected is False


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_value_by_value_equals_one_batch(name, seed):
    assert fires_value_by_value(make(name), stream(name, seed)) == reference_fires(name, seed)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_batch_size_invariance(name, seed, data):
    values = stream(name, seed)
    cuts = data.draw(st.lists(st.integers(0, len(values)), max_size=30, unique=True))
    assert fires_in_batches(make(name), values, cuts) == reference_fires(name, seed)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_pickle_round_trip_mid_stream_gives_identical_later_fires(name, seed):
    values = stream(name, seed)
    middle = len(values) // 2
    detector = make(name)
    detector.update_many(values[:middle])
    restored = pickle.loads(pickle.dumps(detector))
    assert restored is not detector
    expected = [(i - middle, s, t) for i, s, t in reference_fires(name, seed) if i >= middle]
    assert expected  # the second half fires, so the restored state is put to work
    assert fires_in_one_batch(restored, values[middle:]) == expected
    assert fires_in_one_batch(detector, values[middle:]) == expected
    assert (restored.score, restored.threshold) == (detector.score, detector.threshold)


@pytest.mark.parametrize("name", NAMES)
def test_clone_is_fresh_with_the_same_parameters(name):
    values = stream(name, 0)
    used = make(name)
    used.update_many(values[:700])
    clone = used.clone()
    assert clone is not used
    assert type(clone) is type(used)
    assert clone._get_params() == used._get_params()
    assert clone.score == 0.0
    assert clone.drift_detected is False
    assert fires_in_one_batch(clone, values) == reference_fires(name, 0)


def test_clone_of_the_adapter_clones_the_river_detector():
    used = RiverAdapter(DDM(warm_start=50, drift_threshold=2.5))
    used.update_many(stream("river_ddm", 0))
    clone = used.clone()
    assert clone.detector is not used.detector
    assert isinstance(clone.detector, DDM)
    assert (clone.detector.warm_start, clone.detector.drift_threshold) == (50, 2.5)


@pytest.mark.parametrize("cls", [KSDrift, NumericDrift])
def test_clone_keeps_a_given_reference(cls):
    reference = np.random.default_rng(0).normal(0, 1, 200)
    clone = cls(reference_size=100, window_size=50, check_every=10, reference=reference).clone()
    assert clone.ready is False  # a reference, but no window yet
    np.testing.assert_array_equal(clone.reference, reference)
    assert len(clone.update_many(np.full(50, 5.0))) == 1


@pytest.mark.parametrize("name", NAMES)
def test_no_fire_on_a_long_constant_stream(name):
    detector = make(name)
    constant = CASES[name][2]
    fires = []
    for _ in range(4):
        fires += detector.update_many(np.full(5_000, constant))
    assert fires == []
    assert detector.drift_detected is False


@pytest.mark.parametrize("name", NAMES)
def test_score_and_threshold_are_floats_and_fires_pass_the_threshold(name):
    detector = make(name)
    assert isinstance(detector.score, float)
    assert isinstance(detector.threshold, float)
    fires = []
    for seed in SEEDS:
        detector = make(name)
        fires += detector.update_many(stream(name, seed))
        assert isinstance(detector.score, float)
        assert isinstance(detector.threshold, float)
    assert fires
    for fire in fires:
        assert isinstance(fire, Fire)
        assert type(fire.index) is int
        assert isinstance(fire.score, float)
        assert isinstance(fire.threshold, float)
        if name in RIVER:  # the adapter reports 1.0 of 1.0; every other detector fires past its threshold
            assert fire.score >= fire.threshold
        else:
            assert fire.score > fire.threshold


INVALID = [
    (KSDrift, {"reference_size": 5}, "5"),
    (KSDrift, {"window_size": 9}, "9"),
    (KSDrift, {"window_size": 20, "check_every": 21}, "21"),
    (KSDrift, {"check_every": 0}, "0"),
    (KSDrift, {"alpha": 0.0}, "0.0"),
    (KSDrift, {"alpha": 1.5}, "1.5"),
    (NumericDrift, {"reference_size": 5}, "5"),
    (NumericDrift, {"window_size": 20, "check_every": 21}, "21"),
    (NumericDrift, {"alpha": 1.0}, "1.0"),
    (NumericDrift, {"tests": ("ks", "t_test")}, "t_test"),
    (NumericDrift, {"tests": ()}, "()"),
    (NumericDrift, {"long_window": 400}, "400"),
    (NumericDrift, {"long_check_every": 0, "long_window": 1000}, "0"),
    (NumericDrift, {"long_check_every": 1001, "long_window": 1000}, "1001"),
    (ChiSquareDrift, {"long_window": 300}, "300"),
    (ChiSquareDrift, {"max_categories": 1}, "1"),
    (ChiSquareDrift, {"reference_size": 3}, "3"),
    (ChiSquareDrift, {"alpha": -0.1}, "-0.1"),
    (RateIncrease, {"warmup": 0}, "0"),
    (RateIncrease, {"odds_ratio": 1.0}, "1.0"),
    (RateIncrease, {"odds_ratio": 0.5}, "0.5"),
    (RateIncrease, {"threshold": -2.0}, "-2.0"),
    (RateIncrease, {"p0": 1.0}, "1.0"),
    (RateIncrease, {"p0": 0.0}, "0.0"),
    (RateIncrease, {"p0_confidence": 0.3}, "0.3"),
    (RateIncrease, {"p0_confidence": 1.0}, "1.0"),
    (RateIncrease, {"min_p0": 0.7}, "0.7"),
    (RateIncrease, {"burn_in": -1}, "-1"),
    (RateIncrease, {"settle": -3}, "-3"),
    (BurnRate, {"objective": 1.0}, "1.0"),
    (BurnRate, {"objective": 0.0}, "0.0"),
    (BurnRate, {"short_window": 0}, "0"),
    (BurnRate, {"long_window": 100, "short_window": 101}, "101"),
    (BurnRate, {"factor": 0.0}, "0.0"),
    (DriftShare, {"share": 0.0}, "0.0"),
    (DriftShare, {"share": 1.5}, "1.5"),
    (DriftShare, {"window": 0}, "0"),
    (DriftShare, {"min_features": 0}, "0"),
]


@pytest.mark.parametrize(("cls", "kwargs", "fragment"), INVALID,
                         ids=[f"{c.__name__}-{next(iter(k))}={k[next(iter(k))]}" for c, k, _ in INVALID])
def test_invalid_hyperparameters_raise_value_error_naming_the_value(cls, kwargs, fragment):
    with pytest.raises(ValueError, match=next(iter(kwargs))) as info:
        cls(**kwargs)
    assert fragment in str(info.value)


HYPERPARAMETERS = [
    (KSDrift, {"reference_size": 300, "window_size": 120, "check_every": 40, "alpha": 0.001, "reference": None}),
    (NumericDrift, {"reference_size": 300, "window_size": 120, "check_every": 40, "alpha": 0.001, "reference": None,
                    "tests": ("ks", "binned_chi2"), "long_window": 480, "long_check_every": 120}),
    (ChiSquareDrift, {"reference_size": 300, "window_size": 120, "check_every": 40, "alpha": 0.001,
                      "max_categories": 7, "long_window": 480, "long_check_every": 120, "reference": None}),
    (RateIncrease, {"warmup": 321, "odds_ratio": 2.5, "threshold": 7.5, "p0": None, "p0_confidence": 0.9,
                    "min_p0": 0.002, "burn_in": 17, "settle": 9, "warmup_events": 12, "max_warmup": 999,
                    "arl0": None, "low_rate": 0.01}),
    (BurnRate, {"objective": 0.995, "long_window": 600, "short_window": 60, "factor": 6.0,
                "slow_long_window": 6000, "slow_short_window": 600, "slow_factor": 2.0, "false_alarm_rate": 1e-5}),
]


@pytest.mark.parametrize(("cls", "kwargs"), HYPERPARAMETERS, ids=[c.__name__ for c, _ in HYPERPARAMETERS])
def test_hyperparameters_are_public_attributes_named_like_the_arguments(cls, kwargs):
    detector = cls(**kwargs)
    assert {k: getattr(detector, k) for k in kwargs} == kwargs
    assert detector.clone()._get_params() == kwargs


# -- bugs found by the conformance suite ------------------------------------------------------


@pytest.mark.parametrize("detector", [BurnRate(factor=10), RateIncrease(threshold=8)], ids=["burn", "rate"])
def test_threshold_is_a_float_when_given_as_an_int(detector):
    assert isinstance(detector.threshold, float)


def test_adapter_score_does_not_depend_on_batching():
    values = stream("river_ddm", 0)
    first = reference_fires("river_ddm", 0)[0][0]
    values = values[: first + 5]
    assert [i for i, *_ in reference_fires("river_ddm", 0) if first < i < first + 5] == []  # the last 4 do not fire
    whole = _ddm()
    whole.update_many(values)
    single = _ddm()
    for x in values:
        single.update(float(x))
    assert whole.score == single.score


# -- DriftShare -----------------------------------------------------------------------------------
# It counts the alerts of the feature detectors rather than values, so it is not a river
# detector and the suite above does not apply; what does (checkpointing, validation) is here.


def _feature_alerts():
    """(position, feature) of feature alerts: bursts of 3 of 4 features, and stray ones."""
    rng = np.random.default_rng(8)
    alerts = [(int(p), f"f{rng.integers(4)}") for p in np.sort(rng.choice(100_000, 60, replace=False))]
    for start in (20_000, 21_000, 60_000):
        alerts += [(start + 10 * i, f"f{i}") for i in range(3)]
    return sorted(alerts)


def _observe(share, alerts):
    return [f for p, feature in alerts if (f := share.observe(p, feature, n_features=4)) is not None]


def test_drift_share_fires_once_a_window_when_enough_features_drift():
    alerts = [(100, "a"), (200, "a"), (300, "b"), (400, "c"), (900, "d"), (1_200, "a"), (1_301, "b")]
    fires = _observe(DriftShare(share=0.5, window=1_000), alerts)
    # Quiet until 1,300; at 1,301 the window holds c (400), d (900), a (1,200) and b: all four.
    assert fires == [Fire(300, 0.5, 0.5), Fire(1_301, 1.0, 0.5)]


def test_drift_share_needs_min_features():
    share = DriftShare(share=0.1, window=1_000, min_features=3)
    assert _observe(share, [(1, "a"), (2, "b")]) == []
    assert _observe(share, [(3, "c")]) == [Fire(3, 0.75, 0.1)]


def test_drift_share_pickle_round_trip_mid_stream_gives_identical_later_fires():
    alerts = _feature_alerts()
    expected = _observe(DriftShare(share=0.5, window=5_000), alerts)
    assert len(expected) >= 2
    share = DriftShare(share=0.5, window=5_000)
    middle = next(i for i, (p, _) in enumerate(alerts) if p > 20_500)  # inside a quiet period
    first = _observe(share, alerts[:middle])
    restored = pickle.loads(pickle.dumps(share))
    assert first + _observe(restored, alerts[middle:]) == expected
    assert first + _observe(share, alerts[middle:]) == expected


def test_drift_share_hyperparameters_are_public_attributes_named_like_the_arguments():
    kwargs = {"share": 0.3, "window": 777, "min_features": 4}
    share = DriftShare(**kwargs)
    assert {k: getattr(share, k) for k in kwargs} == kwargs


# -- Window ---------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 12), chunks=st.lists(st.integers(0, 30), max_size=10))
def test_window_holds_the_last_capacity_values(capacity, chunks):
    window = Window(capacity)
    everything: list[float] = []
    for n in chunks:
        chunk = np.arange(len(everything), len(everything) + n, dtype=np.float64)
        window.extend(chunk)
        everything.extend(chunk.tolist())
        assert window.size == min(capacity, len(everything))
        assert window.full is (len(everything) >= capacity)
        assert sorted(window.values().tolist()) == sorted(everything[len(everything) - window.size:])


# -- KS --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_ks_statistic_equals_scipy_on_tied_integer_data(seed):
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 6, size=rng.integers(20, 300)).astype(np.float64)
    sample = rng.integers(1, 8, size=rng.integers(10, 200)).astype(np.float64)
    expected = stats.ks_2samp(reference, sample, method="asymp").statistic
    assert ks_statistic(np.sort(reference), sample) == pytest.approx(expected, abs=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value of tiny samples; the statistic is exact
@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=40), st.lists(st.integers(-3, 3), min_size=1, max_size=40))
def test_ks_statistic_equals_scipy_property(reference, sample):
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    expected = stats.ks_2samp(reference, sample, method="asymp").statistic
    assert ks_statistic(ref, np.asarray(sample, dtype=np.float64)) == pytest.approx(expected, abs=1e-12)


def test_ks_statistic_of_identical_samples_is_zero():
    values = np.random.default_rng(0).integers(0, 4, 100).astype(np.float64)
    assert ks_statistic(np.sort(values), values[::-1]) == 0.0


def test_ks_critical_value_matches_the_textbook_constant():
    # c(0.05) = 1.358, c(0.01) = 1.628 (Smirnov's table), times sqrt((n + m) / (n m)).
    assert ks_critical_value(1000, 500, 0.05) == pytest.approx(1.358 * math.sqrt(1500 / 500_000), rel=1e-3)
    assert ks_critical_value(200, 200, 0.01) == pytest.approx(1.628 * math.sqrt(400 / 40_000), rel=1e-3)


@pytest.mark.parametrize("level", [0.05, 1e-3, 1e-6, 2.5e-8])
@pytest.mark.parametrize("dof", [1, 2, 9, 49])
def test_chi_square_critical_value_equals_scipy(dof, level):
    assert chi_square_critical_value(dof, level) == pytest.approx(stats.chi2.isf(level, dof), rel=1e-9)


def test_chi_square_critical_value_without_freedom_never_fires():
    assert chi_square_critical_value(0, 1e-6) == chi_square_critical_value(-1, 1e-6) == math.inf


def test_chi_square_critical_values_are_cached_in_a_bounded_cache():
    # Levels change with every re-budget: an unbounded cache would grow for ever.
    assert chi_square_critical_value.cache_info().maxsize is not None


@pytest.mark.parametrize("level", [0.05, 1e-3, 1e-6, 2.5e-8])
def test_normal_critical_value_equals_scipy(level):
    assert normal_critical_value(level) == pytest.approx(stats.norm.isf(level / 2), rel=1e-9)


def test_ks_critical_value_decreases_with_sample_size():
    sizes = [10, 50, 100, 500, 1000, 10_000]
    by_n = [ks_critical_value(n, 500, 1e-6) for n in sizes]
    by_m = [ks_critical_value(1000, m, 1e-6) for m in sizes]
    assert all(a > b for a, b in itertools.pairwise(by_n))
    assert all(a > b for a, b in itertools.pairwise(by_m))
    assert ks_critical_value(1000, 500, 1e-6) > ks_critical_value(1000, 500, 1e-2)  # stricter alpha


@pytest.mark.parametrize(("after", "kind"), [
    (lambda rng, n: rng.normal(0.5, 1.0, n), "mean"),
    (lambda rng, n: rng.normal(0.0, 2.0, n), "variance"),
])
@pytest.mark.parametrize("seed", range(3))
def test_ks_fires_once_after_a_shift(after, kind, seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0.0, 1.0, 20_000), after(rng, 20_000)])
    fires = KSDrift().update_many(values)
    assert len(fires) == 1, kind  # learns the new normal: one alert per change
    assert 20_000 <= fires[0].index < 21_500
    assert fires[0].score > fires[0].threshold


@pytest.mark.parametrize("seed", range(3))
def test_ks_does_not_fire_on_the_same_distribution(seed):
    rng = np.random.default_rng(seed)
    detector = KSDrift()
    assert detector.update_many(rng.normal(3.0, 2.0, 60_000)) == []
    assert 0.0 < detector.score < detector.threshold


def test_ks_alerts_once_per_change():
    rng = np.random.default_rng(42)
    values = np.concatenate([rng.normal(0, 1, 20_000), rng.normal(1, 1, 20_000), rng.normal(1, 3, 20_000)])
    fires = KSDrift().update_many(values)
    assert [f.index // 20_000 for f in fires] == [1, 2]


def test_ks_with_a_given_reference_needs_no_warm_up():
    rng = np.random.default_rng(0)
    detector = KSDrift(reference_size=1000, window_size=200, check_every=50, reference=rng.normal(0, 1, 1000))
    assert detector.update_many(rng.normal(0, 1, 199)) == []
    fires = detector.update_many(rng.normal(3, 1, 51))
    assert [f.index for f in fires] == [50]  # the first check with a full window
    assert detector.threshold == pytest.approx(ks_critical_value(1000, 200, 1e-6))


def test_ks_is_not_ready_before_reference_and_window():
    detector = KSDrift(reference_size=100, window_size=50, check_every=10)
    detector.update_many(np.zeros(149))
    assert detector.ready is False
    detector.update_many(np.zeros(1))
    assert detector.ready is True
    assert detector.threshold == pytest.approx(ks_critical_value(100, 50, 1e-6))


# -- chi-square -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_chi_square_homogeneity_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    ref = rng.integers(0, 200, k)
    win = rng.integers(0, 80, k)
    ref[0] = win[0] = 0  # a category neither saw: left out, as scipy cannot take it
    keep = (ref + win) > 0
    expected = stats.chi2_contingency(np.vstack((ref[keep], win[keep])), correction=False)
    stat, dof = chi_square_homogeneity(ref, win)
    assert stat == pytest.approx(expected.statistic, rel=1e-10)
    assert dof == expected.dof


def test_chi_square_of_one_category_is_zero_with_no_freedom():
    assert chi_square_homogeneity(np.array([10, 0, 0]), np.array([5, 0, 0])) == (0.0, 0)


def test_chi_square_fires_on_a_new_category():
    rng = np.random.default_rng(1)
    before = rng.choice(3, 5_000, p=[0.5, 0.3, 0.2])
    after = rng.choice(4, 5_000, p=[0.45, 0.3, 0.2, 0.05])  # category 3 never seen before
    fires = ChiSquareDrift().update_many(np.concatenate([before, after]))
    assert len(fires) == 1
    assert 5_000 <= fires[0].index < 5_600


def test_chi_square_fires_on_a_changed_mix():
    rng = np.random.default_rng(2)
    before = rng.choice(3, 5_000, p=[0.5, 0.3, 0.2])
    after = rng.choice(3, 5_000, p=[0.35, 0.35, 0.3])
    fires = ChiSquareDrift().update_many(np.concatenate([before, after]))
    assert len(fires) == 1
    assert 5_000 <= fires[0].index < 6_000
    assert fires[0].threshold == pytest.approx(stats.chi2.isf(1e-6, 2))


@pytest.mark.parametrize("seed", range(3))
def test_chi_square_does_not_fire_on_the_same_mix(seed):
    rng = np.random.default_rng(seed)
    assert ChiSquareDrift().update_many(rng.choice(5, 50_000, p=[0.4, 0.3, 0.15, 0.1, 0.05])) == []


def test_codes_past_max_categories_share_the_last_bucket():
    rng = np.random.default_rng(3)
    before = np.where(rng.random(6_000) < 0.3, 4, rng.choice(4, 6_000))  # 30% code 4
    after = np.where(rng.random(6_000) < 0.3, rng.choice([5, 9, 40], 6_000), rng.choice(4, 6_000))
    values = np.concatenate([before, after])
    assert ChiSquareDrift(max_categories=5).update_many(values) == []  # 4, 5, 9 and 40: all "other"
    assert len(ChiSquareDrift(max_categories=50).update_many(values)) == 1  # told apart: drift


# -- RateIncrease -----------------------------------------------------------------------------------


def test_rate_fires_when_the_rate_of_ones_rises():
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.random(5_000) < 0.02, rng.random(5_000) < 0.08])
    fires = RateIncrease(warmup=2_000).update_many(values)
    assert len(fires) >= 1
    assert 5_000 <= fires[0].index < 6_000


@pytest.mark.parametrize("seed", range(5))
def test_rate_never_fires_when_the_rate_falls(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.random(3_000) < 0.10, rng.random(50_000) < 0.01])
    assert RateIncrease(warmup=2_000).update_many(values) == []
    assert RateIncrease(p0=0.10).update_many(values[3_000:]) == []


def test_rate_convention_is_that_one_is_the_bad_event():
    # Swapping 0 and 1 turns a fall into a rise: only a rise of the 1s fires.
    rng = np.random.default_rng(7)
    good_becomes_common = np.concatenate([rng.random(3_000) < 0.5, rng.random(5_000) < 0.2])
    assert RateIncrease(warmup=2_000).update_many(good_becomes_common) == []
    assert len(RateIncrease(warmup=2_000).update_many(1 - good_becomes_common)) >= 1


def test_rate_with_p0_needs_no_warm_up():
    detector = RateIncrease(p0=0.1, odds_ratio=3.0, threshold=5.0)
    assert detector.ready
    assert detector.rate_ == 0.1
    # LLR of a 1 is ln(p1/p0) with p1 = 0.25: 0.916; six in a row pass 5.
    fires = detector.update_many(np.ones(10))
    assert [f.index for f in fires] == [5]
    assert fires[0].score == pytest.approx(6 * math.log(2.5), abs=1e-5)


def test_rate_evidence_exactly_at_the_threshold_does_not_fire():
    # The evidence is kept in fixed point (2**20 units): a threshold of exactly six 1s'
    # worth of evidence is reached, not passed, by six 1s; the seventh fires.
    scale = 1 << 20
    up = round(math.log(2.5) * scale)  # p0 = 0.1, odds ratio 3: p1 = 0.25
    detector = RateIncrease(p0=0.1, odds_ratio=3.0, threshold=6 * up / scale)
    fires = detector.update_many(np.ones(8))
    assert [f.index for f in fires] == [6]
    assert fires[0].score > fires[0].threshold


def test_rate_cusum_matches_a_float_reference_on_a_mixed_stream():
    p0, odds, h = 0.05, 2.0, 6.0
    p1 = odds * p0 / (1 - p0) / (1 + odds * p0 / (1 - p0))
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    values = (np.random.default_rng(5).random(20_000) < 0.09).astype(float)
    expected, s = [], 0.0
    for i, x in enumerate(values):
        s = max(0.0, s + (up if x else down))
        if s > h:
            expected.append(i)
            s = 0.0
    got = [f.index for f in RateIncrease(p0=p0, odds_ratio=odds, threshold=h).update_many(values)]
    assert len(expected) >= 3
    assert got == expected


def test_rate_warm_up_then_ready():
    detector = RateIncrease(warmup=100, warmup_events=0)
    detector.update_many(np.zeros(99))
    assert not detector.ready
    assert math.isnan(detector.rate_)
    detector.update_many(np.zeros(1))
    assert detector.ready


def test_rate_learns_the_jeffreys_upper_bound():
    values = np.zeros(1_000)
    values[[100, 700]] = 1  # 2 events in the warm-up
    detector = RateIncrease(warmup=1_000, p0_confidence=0.99, warmup_events=0)
    detector.update_many(values)
    assert detector.rate_ == pytest.approx(stats.beta.ppf(0.99, 2.5, 998.5))
    assert detector.rate_ > 2 / 1_000


def test_rate_clips_the_learned_rate_at_min_p0():
    detector = RateIncrease(warmup=50_000, min_p0=1e-3, warmup_events=0)
    detector.update_many(np.zeros(50_000))  # the upper bound of 0 in 50,000 is below 1e-4
    assert detector.rate_ == 1e-3


def test_rate_burn_in_skips_values_before_the_warm_up():
    rng = np.random.default_rng(3)
    values = (rng.random(3_000) < 0.05).astype(float)
    values[:500] = 0  # a stream that starts low: feedback arrives after its prediction
    skipped = RateIncrease(warmup=1_000, burn_in=500, warmup_events=0)
    skipped.update_many(values[:1_499])
    assert not skipped.ready
    skipped.update_many(values[1_499:1_500])
    assert skipped.ready
    plain = RateIncrease(warmup=1_000, warmup_events=0)
    plain.update_many(values[500:1_500])
    assert skipped.rate_ == plain.rate_
    with_zeros = RateIncrease(warmup=1_000, warmup_events=0)
    with_zeros.update_many(values[:1_000])
    assert with_zeros.rate_ < skipped.rate_


@pytest.mark.parametrize(("settle", "skipped"), [(None, 200), (0, 0), (50, 50)])
def test_rate_settle_skips_values_after_a_fire_then_relearns(settle, skipped):
    warmup = 200
    detector = RateIncrease(warmup=warmup, odds_ratio=3.0, threshold=4.0, settle=settle, warmup_events=0)
    rng = np.random.default_rng(9)
    values = np.concatenate([rng.random(1_000) < 0.05, np.ones(10), rng.random(5_000) < 0.3]).astype(float)
    fires = detector.update_many(values[:1_010])
    assert len(fires) == 1
    fired_at = fires[0].index
    assert 1_000 <= fired_at < 1_010
    assert not detector.ready  # learning the new normal
    need = fired_at + 1 + skipped + warmup  # values fed in all when it is ready again
    detector.update_many(values[1_010: need - 1])
    assert not detector.ready
    detector.update_many(values[need - 1: need])
    assert detector.ready
    fresh = RateIncrease(warmup=warmup, warmup_events=0)
    fresh.update_many(values[need - warmup: need])  # the new p0 comes from after the skipped values
    assert detector.rate_ == fresh.rate_


@pytest.mark.parametrize("p0_given", [0.02, 0.3])
def test_rate_with_p0_keeps_it_after_a_fire(p0_given):
    detector = RateIncrease(p0=p0_given, odds_ratio=3.0, threshold=4.0)
    fires = detector.update_many(np.ones(50))
    assert len(fires) >= 2  # no settle, no re-learning: it keeps testing against p0
    assert detector.ready
    assert detector.rate_ == p0_given


def test_rate_jeffreys_bound_keeps_a_short_warm_up_from_false_alarms():
    # Rare events (1%): 500 values of warm-up see about 5 of them, often fewer. With the
    # point estimate (confidence 0.5 is the median) the true rate then looks like a rise.
    def false_alarms(confidence):
        alarms = 0
        for seed in range(200):
            values = np.random.default_rng(seed).random(10_500) < 0.01
            detector = RateIncrease(warmup=500, odds_ratio=2.0, threshold=6.0, p0_confidence=confidence)
            alarms += bool(detector.update_many(values))
        return alarms

    assert false_alarms(0.99) <= 4
    assert false_alarms(0.5) >= 30


def test_rate_warm_up_waits_for_enough_events_but_not_forever():
    rare = np.zeros(20_000)
    rare[::200] = 1  # 0.5%: 10 events in the first 2,000 values
    detector = RateIncrease(warmup=2_000, warmup_events=40, low_rate=0.0)
    detector.update_many(rare[:7_000])
    assert not detector.ready  # 35 events so far
    detector.update_many(rare[7_000:7_801])
    assert detector.ready  # the 40th event (at value 7,800) ends the warm-up
    in_pieces = RateIncrease(warmup=2_000, warmup_events=40, low_rate=0.0)
    for start in range(0, 7_801, 333):
        in_pieces.update_many(rare[start:min(start + 333, 7_801)])
    assert in_pieces.rate_ == detector.rate_, "where the batches end does not move the end of the warm-up"
    never = RateIncrease(warmup=2_000, warmup_events=40, max_warmup=5_000, low_rate=0.0)
    never.update_many(np.zeros(4_999))
    assert not never.ready
    never.update_many(np.zeros(1))
    assert never.ready, "a stream that never has events ends its warm-up at max_warmup"


def test_rate_warm_up_ends_early_when_the_rate_is_plainly_low():
    # Errors at 0.1% of labels: waiting for 100 of them would take 100,000 labels, and a
    # decay in the meantime would be learnt as normal.
    detector = RateIncrease(warmup=2_000, warmup_events=100, low_rate=0.005)
    values = np.zeros(3_000)
    values[::1000] = 1  # 3 events
    detector.update_many(values[:1_999])
    assert not detector.ready
    detector.update_many(values[1_999:2_000])
    assert detector.ready  # (2 + 5) / 2,000 <= 0.5%
    assert detector.rate_ < 0.005


@pytest.mark.parametrize("arl0", [1e4, 1e5])
def test_rate_threshold_from_arl0_gives_about_that_many_values_between_false_alarms(arl0):
    rng = np.random.default_rng(4)
    values = (rng.random(2_000_000) < 0.05).astype(float)
    detector = RateIncrease(p0=0.05, arl0=arl0)
    fires = detector.update_many(values)
    observed = len(values) / max(len(fires), 1)
    assert arl0 / 3 <= observed, f"{len(fires)} false alarms in {len(values)} values: ARL {observed:.0f}"
    assert RateIncrease(p0=0.05, arl0=1e6).threshold > RateIncrease(p0=0.05, arl0=1e4).threshold


def test_rate_never_fires_on_a_constant_stream_of_ones():
    assert RateIncrease(warmup=100).update_many(np.ones(500_000)) == []


# -- BurnRate -----------------------------------------------------------------------------------


def burn_critical(objective, long_window, factor, rate):
    """The critical count by brute force from scipy.stats: the fewest bad requests of the long
    window, above factor x budget, for which a bad request finding c - 1 bad among the window's
    other requests is rarer than rate / (factor x budget)."""
    limit = Fraction(factor) * (1 - Fraction(objective))
    p = float(limit)
    c = int(limit * long_window) + 1
    while c <= long_window and stats.binom.sf(c - 2, long_window - 1, p) > rate / p:
        c += 1
    return min(c, long_window + 1)  # long_window + 1: never


def burn_reference(values, objective, long_window, short_window, factor, rate=1e-6):
    """The documented rule, value by value, in exact arithmetic: [(index, burn)]."""
    budget = 1 - Fraction(objective)
    limit = Fraction(factor) * budget
    critical = burn_critical(objective, long_window, factor, rate)
    fires, armed = [], True
    for t in range(len(values)):
        end = t + 1
        long_len = min(end, long_window)
        long_bad = int(sum(values[end - long_len: end]))
        short_bad = int(sum(values[max(end - short_window, 0): end]))
        long_burning = long_bad >= limit * long_len
        if armed and long_bad >= critical and short_bad >= limit * short_window and end >= long_window:
            fires.append((t, long_bad / (long_len * budget)))
            armed = False
        elif not armed and not long_burning:
            armed = True
    return fires


def _plain_burn(**kwargs):
    # A false-alarm rate of 0.5 asks for no significance: the long window fires one bad request
    # past factor x budget (21 of 40 here), the smallest count whose burn is above the factor.
    return BurnRate(**{"objective": 0.75, "long_window": 40, "short_window": 8, "factor": 2.0,
                       "false_alarm_rate": 0.5, **kwargs})


def test_burn_rate_fires_where_both_windows_pass_the_limit():
    detector = _plain_burn()
    assert detector.critical_counts == (21,)
    values = np.concatenate([np.zeros(200), np.ones(100)])
    # 21 of the long window's 40 are bad at index 220; the short window is all bad sooner.
    fires = detector.update_many(values)
    assert [(f.index, f.score, f.threshold) for f in fires] == [(220, 2.1, 2.0)]


def test_burn_rate_counts_a_partial_long_window_from_the_start():
    values = np.concatenate([np.zeros(20), np.ones(25), np.zeros(5)])
    # Before 40 values the long window is all there is: 21 bad of 40 at index 40, not sooner.
    assert [f.index for f in _plain_burn().update_many(values)] == [40]


def test_burn_rate_needs_the_short_window_too():
    # A burst of 18 bad, then 1 bad in every 8: the long window reaches 21 bad of 40 only
    # once the short window has calmed (1 bad of its 8, the limit is 4).
    values = np.concatenate([np.zeros(100), np.ones(18), np.tile([1.0, 0, 0, 0, 0, 0, 0, 0], 10)])
    long_bad = np.convolve(values, np.ones(40))[: len(values)]
    assert long_bad.max() >= 21
    assert _plain_burn().update_many(values) == []
    fires = _plain_burn(short_window=40).update_many(values)
    assert [f.index for f in fires] == [int(np.argmax(long_bad >= 21))]


def test_burn_rate_fires_once_per_episode_and_rearms_after_the_long_window_calms():
    episode = np.concatenate([np.zeros(100), np.ones(300)])
    fires = _plain_burn().update_many(np.concatenate([episode, episode]))
    assert [f.index for f in fires] == [120, 520]


@pytest.mark.parametrize("short_window", [1, 5, 30])
def test_burn_rate_never_fires_before_the_long_window_is_full(short_window):
    # Over the first requests the long window is no longer than the short one: its burn
    # is noise (a stream at 1.9x its budget once fired the slow tier this way).
    detector = BurnRate(objective=0.75, long_window=30, short_window=short_window, factor=2.0)
    assert not detector.ready
    fires = detector.update_many(np.ones(29))
    assert fires == []
    fires = detector.update_many(np.ones(1))
    assert [f.index for f in fires] == [0]
    assert detector.ready


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.0, 1.0]), max_size=300),
    objective=st.sampled_from([0.5, 0.75, 0.875, 0.9375, 0.96875]),
    factor=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 4.0]),
    long_window=st.integers(1, 50),
    short_fraction=st.floats(0.0, 1.0),
    cuts=st.lists(st.integers(0, 300), max_size=6, unique=True),
    rate=st.sampled_from([0.5, 0.05, 1e-3, 1e-6]),
)
def test_burn_rate_matches_the_exact_rule(values, objective, factor, long_window, short_fraction, cuts, rate):
    # Dyadic objectives and factors: every float in the rule is exact, so float and
    # Fraction must agree to the last bit.
    short_window = max(1, round(short_fraction * long_window))
    detector = BurnRate(objective=objective, long_window=long_window, short_window=short_window, factor=factor,
                        false_alarm_rate=rate)
    assert detector.critical_counts == (burn_critical(objective, long_window, factor, rate),)
    arr = np.asarray(values)
    got = fires_in_batches(detector, arr, [c for c in cuts if c <= len(arr)])
    expected = burn_reference(values, objective, long_window, short_window, factor, rate)
    assert [(i, s) for i, s, _ in got] == [(i, float(b)) for i, b in expected]
    if values:
        assert detector.score == pytest.approx(
            float(sum(values[-long_window:]) / (min(len(values), long_window) * (1 - Fraction(objective)))))


def test_burn_rate_does_not_fire_at_exactly_factor_times_the_budget():
    values = np.concatenate([np.zeros(70), np.ones(30)])  # 30 bad of 100: 0.3 = 3 x 0.1
    detector = BurnRate(objective=0.9, long_window=100, short_window=100, factor=3.0, false_alarm_rate=0.5)
    assert detector.update_many(values) == []
    fires = detector.update_many(np.ones(1))  # 31 bad of 100: past the limit
    assert [(f.index, f.score, f.threshold) for f in fires] == [(0, 3.1, 3.0)]


def test_burn_rate_fire_score_is_above_its_threshold():
    detector = BurnRate(objective=0.99, long_window=70, short_window=70, factor=10.0, false_alarm_rate=0.5)
    fires = detector.update_many(np.concatenate([np.zeros(62), np.ones(8)]))
    assert fires
    assert all(f.score > f.threshold for f in fires)


# -- RiverAdapter -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_adapter_reports_ddms_fires(seed):
    values = stream("river_ddm", seed)
    ddm, expected = DDM(), []
    for i, x in enumerate(values):
        ddm.update(bool(x))
        if ddm.drift_detected:
            expected.append(i)
    fires = RiverAdapter(DDM()).update_many(values)
    assert [f.index for f in fires] == expected
    assert expected
    assert all((f.score, f.threshold) == (1.0, 1.0) for f in fires)


def test_adapter_feeds_floats_to_a_non_binary_detector():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 2_000), rng.normal(2, 1, 2_000)])
    adwin, expected = ADWIN(), []
    for i, x in enumerate(values):
        adwin.update(float(x))
        if adwin.drift_detected:
            expected.append(i)
    adapter = RiverAdapter(ADWIN())
    assert [f.index for f in adapter.update_many(values)] == expected
    assert expected
    assert adapter.name == "adwin"


def test_adapter_is_named_after_the_river_detector():
    assert RiverAdapter(DDM()).name == "ddm"


# -- the error-stream convention: 1 is an error, decay is a rise ---------------------------------

@pytest.mark.parametrize("choice", ["cusum", "ddm", "hddm_a", "adwin", "fhddm"])
def test_every_decay_detector_fires_when_errors_rise_and_never_when_they_fall(choice):
    from monitor.config import load_settings  # noqa: PLC0415
    from monitor.model_state import DetectorFactory  # noqa: PLC0415

    def make():
        return DetectorFactory(load_settings(environ={}, overrides={"detect": {"decay_detector": choice}})).error_rate()

    rng = np.random.default_rng(8)
    worse = np.concatenate([rng.random(4000) < 0.1, rng.random(4000) < 0.4]).astype(float)
    better = np.concatenate([rng.random(4000) < 0.4, rng.random(4000) < 0.1]).astype(float)
    assert any(f.index >= 4000 for f in make().update_many(worse)), f"{choice} missed a decay"
    assert [f.index for f in make().update_many(better) if f.index >= 4000] == [], f"{choice} alarmed on an improvement"


def test_fhddm_watches_accuracy_so_the_adapter_inverts_errors():
    from river.drift.binary import FHDDM  # noqa: PLC0415

    rng = np.random.default_rng(8)
    worse = np.concatenate([rng.random(4000) < 0.1, rng.random(4000) < 0.4]).astype(float)
    assert RiverAdapter(FHDDM()).update_many(worse) == [], "raw FHDDM does not see errors rise"
    assert RiverAdapter(FHDDM(), invert=True).update_many(worse)


def test_rising_only_needs_an_estimation():
    from river.drift.binary import DDM  # noqa: PLC0415

    with pytest.raises(ValueError, match="estimation"):
        RiverAdapter(DDM(), rising_only=True)


# -- thresholds pinned to the last digit ----------------------------------------------------------
# Critical values are computed in one place and cached; these pin what they were before
# that move (exact float equality: a threshold that moves by one ulp moves a fire).


def _pinned_numbers():
    rng = np.random.default_rng(12)
    return np.concatenate([rng.normal(0, 1, 3000), rng.normal(0.3, 1.3, 3000), rng.integers(0, 5, 3000),
                           rng.normal(0, 1, 3000), rng.normal(0.2, 1, 6000), rng.normal(0.2, 1.15, 6000)])


def _pinned_codes():
    rng = np.random.default_rng(13)
    return np.concatenate([
        rng.choice(3, 3000, p=[0.5, 0.3, 0.2]), rng.choice(6, 3000), rng.choice(2, 3000),
        rng.choice(3, 3000, p=[0.5, 0.3, 0.2]), rng.choice(3, 6000, p=[0.46, 0.32, 0.22]),
        rng.choice(8, 6000, p=[0.3, 0.4, 0.1, 0.1, 0.025, 0.025, 0.025, 0.025]),
    ]).astype(np.float64)


def _fires_and_gauges(detector, values, chunk=250):
    """Fires (index, threshold), and every threshold the gauge showed between chunks."""
    fires, shown = [], set()
    for start in range(0, len(values), chunk):
        fires += [(start + f.index, f.threshold) for f in detector.update_many(values[start:start + chunk])]
        shown.add(detector.threshold)
    return fires, sorted(shown)


def test_ks_critical_values_are_pinned():
    assert ks_critical_value(1000, 500, 1e-6) == 0.14752283419113915
    assert ks_critical_value(2000, 300, 2.5e-7) == 0.17454318908983876
    assert ks_critical_value(100, 50, 0.05) == 0.23523008270990564


PINNED_NUMERIC = [
    (("ks",), [(3649, 0.17730038099264142), (6149, 0.17730038099264142), (9099, 0.17730038099264142),
               (19849, 0.09835860343441029)],
     [0.09835860343441029, 0.17730038099264142]),
    (("rank_sum",), [(3349, 4.89163847571478), (6099, 4.89163847571478), (9099, 4.89163847571478),
                     (14099, 4.56478773027951)],
     [4.56478773027951, 4.89163847571478]),
    (("folded_ks",), [(3499, 0.17730038099264142), (6199, 0.17730038099264142)], [0.17730038099264142]),
    (("binned_chi2",), [(3299, 44.81093787068782), (6099, 44.81093787068782), (9049, 35.888186879672865),
                        (21049, 41.000927204439165)],
     [33.37684158171984, 35.888186879672865, 41.000927204439165, 44.81093787068782]),
    (("ks", "rank_sum", "folded_ks", "binned_chi2"),
     [(3499, 48.04971424037498), (6149, 48.04971424037498), (9049, 38.88916431753304), (20299, 0.10350910897311168)],
     [0.10350910897311168, 0.18557764650561293, 5.157701312172701, 38.88916431753304, 48.04971424037498]),
]


@pytest.mark.parametrize(("tests", "fires", "shown"), PINNED_NUMERIC, ids=["+".join(t) for t, *_ in PINNED_NUMERIC])
def test_numeric_drift_thresholds_are_pinned(tests, fires, shown):
    detector = NumericDrift(1000, 300, 50, tests=tests, long_window=2000, long_check_every=250)
    assert _fires_and_gauges(detector, _pinned_numbers()) == (fires, [*shown, math.inf])


@pytest.mark.parametrize(("rate", "fires", "shown"), [
    (None, [(3049, 35.888186879672865), (6099, 35.888186879672865), (9049, 27.631021115928547),
            (18049, 38.25833637720969)],
     [23.928126976934827, 27.631021115928547, 35.888186879672865, 38.25833637720969, 40.521831234179864]),
    (1e-7, [(3049, 33.893596716341186), (6099, 33.893596716341186), (9049, 25.79843965218024),
            (18049, 36.2182821061793)],
     [22.166485420361727, 25.79843965218024, 33.893596716341186, 36.2182821061793, 38.43903200898059]),
], ids=["alpha", "rate"])
def test_chi_square_drift_thresholds_are_pinned(rate, fires, shown):
    detector = ChiSquareDrift(1000, 300, 50, max_categories=8, long_window=2000, long_check_every=250)
    if rate is not None:
        detector.set_false_alarm_rate(rate)
    assert _fires_and_gauges(detector, _pinned_codes()) == (fires, [*shown, math.inf])
