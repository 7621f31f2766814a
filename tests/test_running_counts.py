"""The binned drift tests keep running bin counts; before, every check recounted its window
(tests/binned_recount.py keeps that implementation, frozen). Only the bookkeeping changed,
so on any stream, cut into batches any way, both give the same fires, scores and
thresholds, bit for bit, and show the same gauge after every batch."""

from __future__ import annotations

import binned_recount as old
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import ChiSquareDrift, NumericDrift
from monitor.config import load_settings
from monitor.model_state import DetectorFactory


def _numeric_stream(rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.normal(0, 1, 5000), rng.normal(0.15, 1, 6000), rng.normal(0.15, 1.5, 3000),
                           rng.standard_t(3, 4000), np.round(rng.exponential(3, 4000))])


def _code_stream(rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.choice(5, 6000, p=[0.4, 0.3, 0.2, 0.05, 0.05]),
                           rng.choice(5, 6000, p=[0.35, 0.3, 0.2, 0.1, 0.05]),
                           rng.choice(9, 4000)]).astype(np.float64)


def _pairs(settings_rate: float | None = None) -> list[tuple[str, object, object]]:
    """(name, new, old) detector pairs: the daemon's defaults, and smaller ones."""
    factory = DetectorFactory(load_settings(environ={}))
    d = factory.d
    out: list[tuple[str, object, object]] = []
    kwargs = {"long_window": d.long_window, "long_check_every": d.long_check_every}
    out.append(("numeric_default", NumericDrift(d.reference_size, d.window_size, d.check_every, **kwargs),
                old.NumericDrift(d.reference_size, d.window_size, d.check_every, **kwargs)))
    out.append(("numeric_short_only", NumericDrift(500, 200, 30, alpha=1e-4),
                old.NumericDrift(500, 200, 30, alpha=1e-4)))
    # A long cadence that is not a multiple of the short one, and a window that is not of its cadence.
    small = {"long_window": 700, "long_check_every": 70}
    out.append(("numeric_odd", NumericDrift(400, 130, 45, alpha=1e-3, tests=("ks", "rank_sum"), **small),
                old.NumericDrift(400, 130, 45, alpha=1e-3, tests=("ks", "rank_sum"), **small)))
    out.append(("chi_square_default", ChiSquareDrift(d.reference_size, d.window_size, d.check_every,
                                                      max_categories=8, **kwargs),
                old.ChiSquareDrift(d.reference_size, d.window_size, d.check_every, max_categories=8, **kwargs)))
    out.append(("chi_square_odd", ChiSquareDrift(300, 120, 35, alpha=1e-3, max_categories=6, **small),
                old.ChiSquareDrift(300, 120, 35, alpha=1e-3, max_categories=6, **small)))
    if settings_rate is not None:
        for _, new, was in out:
            new.set_false_alarm_rate(settings_rate)  # type: ignore[attr-defined]
            was.set_false_alarm_rate(settings_rate)  # type: ignore[attr-defined]
    return out


def _run(detector: object, values: np.ndarray, cuts: list[int]) -> list[tuple[object, ...]]:
    """Fires (stream position, score, threshold, test) and the gauge after every batch."""
    out: list[tuple[object, ...]] = []
    start = 0
    for end in [*cuts, len(values)]:
        for f in detector.update_many(values[start:end]):  # type: ignore[attr-defined]
            out.append(("fire", start + f.index, f.score, f.threshold, f.test))
        out.append(("gauge", end, detector.score, detector.threshold))  # type: ignore[attr-defined]
        start = end
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("batch", [1_000, 2_000, 4_999, 20_000])
def test_running_counts_fire_exactly_as_recounting(seed: int, batch: int) -> None:
    rng = np.random.default_rng(seed)
    for name, new, was in _pairs(1e-5):
        values = _code_stream(rng) if "chi" in name else _numeric_stream(rng)
        cuts = list(range(batch, len(values), batch))
        got, expected = _run(new, values, cuts), _run(was, values, cuts)
        assert any(row[0] == "fire" for row in expected), name  # the streams do put the detectors to work
        assert got == expected, name


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), data=st.data())
def test_running_counts_fire_exactly_as_recounting_whatever_the_cuts(seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    for name, new, was in _pairs(1e-4):
        values = (_code_stream(rng) if "chi" in name else _numeric_stream(rng))[:9000]
        cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=40, unique=True), label=name))
        assert _run(new, values, cuts) == _run(was, values, cuts), name
