"""Slices: per-segment detectors and counts, bounded, with the slice named in the alert."""

from __future__ import annotations

import random

import pytest
from helpers import messages
from prometheus_client import generate_latest

from monitor.config import load_settings
from monitor.metrics import Metrics
from monitor.pipeline import Pipeline

START = 1_790_000_000.0
REGIONS = ("north", "south", "east", "west", "central")
WEIGHTS = (0.3, 0.1, 0.25, 0.2, 0.15)


def labelled_stream(n: int, change_at: int | None, seed: int = 3, rate: float = 50.0) -> list[dict]:
    """Predictions with a segment and a late label each; from ``change_at`` the south's
    error rate goes from 5% to 20%, elsewhere it stays 5%."""
    rng = random.Random(seed)
    events: list[dict] = []
    pending: list[tuple[float, dict]] = []
    for i in range(n):
        ts = START + i / rate
        region = rng.choices(REGIONS, WEIGHTS)[0]
        new_user = rng.random() < 0.15
        rid = f"r-{i}"
        events.append({"event_id": f"p-{i}", "type": "prediction", "ts": ts, "model": "m", "model_version": "v1",
                       "request_id": rid, "features": {"x": rng.gauss(0, 1)}, "prediction": {"label": "a"},
                       "latency_ms": 20.0, "segment": {"region": region, "new_user": new_user}})
        bad = 0.2 if (change_at is not None and i >= change_at and region == "south") else 0.05
        truth = "b" if rng.random() < bad else "a"
        pending.append((ts + 2.0, {"event_id": f"l-{i}", "type": "feedback", "ts": ts + 2.0, "model": "m",
                                   "request_id": rid, "kind": "label", "value": truth}))
        while pending and pending[0][0] <= ts:
            events.append(pending.pop(0)[1])
    events += [e for _, e in pending]
    return events


def run(events: list[dict], batch_size: int = 2000, **sections) -> tuple[Pipeline, list]:
    settings = load_settings(environ={}, overrides=sections)
    pipeline = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    alerts = []
    msgs = messages(events)
    for i in range(0, len(msgs), batch_size):
        alerts += pipeline.process(msgs[i:i + batch_size]).alerts
    return pipeline, alerts


@pytest.fixture(scope="module")
def south_decay() -> tuple[list[dict], int]:
    change = 30_000
    events = labelled_stream(60_000, change)
    position = next(i for i, e in enumerate(events) if e["event_id"] == f"p-{change}")
    return events, position


def test_decay_in_one_segment_is_found_with_its_segment_named(south_decay):
    events, change = south_decay
    _, alerts = run(events)
    sliced = [a for a in alerts if a.kind == "metric_decay" and a.segment]
    assert sliced, f"no slice alert; got {alerts}"
    assert all(a.segment == {"region": "south"} for a in sliced), sliced
    assert min(a.at_event for a in sliced) > change
    assert all(a.at_event > change for a in alerts), "nothing before the change"
    assert sliced[0].to_dict()["segment"] == {"region": "south"}
    # Without slices, the whole-stream error rate (5% -> 6.5%) is not enough to be seen.
    _, whole = run(events, segments={"max_keys": 0})
    assert not [a for a in whole if a.kind == "metric_decay"]


def test_slice_alerts_are_the_same_in_batches_of_any_size_and_across_a_checkpoint(south_decay):
    events, _ = south_decay
    events = events[:80_000]
    keys = []
    for size in (333, 5000):
        _, alerts = run(events, batch_size=size)
        keys.append([(a.at_event, a.kind, a.detector, a.segment) for a in alerts])
    assert keys[0] and keys[0] == keys[1]

    settings = load_settings(environ={})
    first = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    msgs = messages(events)
    half = 40_000
    for i in range(0, half, 2000):
        first.process(msgs[i:i + 2000])
    second = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    second.restore(first.snapshot())
    rest = [a for i in range(half, len(msgs), 2000) for a in second.process(msgs[i:i + 2000]).alerts]
    assert [(a.at_event, a.kind, a.detector, a.segment) for a in rest] == [k for k in keys[1] if k[0] >= half]


def test_a_stationary_stream_with_many_segments_raises_nothing():
    rng = random.Random(9)
    events = []
    for i in range(40_000):
        ts = START + i / 100
        segment = {"country": f"c{rng.randrange(40)}", "device": rng.choice(["ios", "android", "web"]),
                   "plan": f"p{int(rng.paretovariate(1.2)) % 30}", "new_user": rng.random() < 0.2}
        events.append({"event_id": f"p-{i}", "type": "prediction", "ts": ts, "model": "m", "model_version": "v1",
                       "request_id": f"r-{i}", "features": {"x": rng.gauss(0, 1)}, "latency_ms": 20.0,
                       "prediction": {"score": rng.random()}, "segment": segment})
        events.append({"event_id": f"i-{i}", "type": "impression", "ts": ts, "model": "m", "request_id": f"r-{i}",
                       "segment": segment})
        if rng.random() < 0.1:
            events.append({"event_id": f"c-{i}", "type": "click", "ts": ts, "model": "m", "request_id": f"r-{i}",
                           "segment": segment})
        if rng.random() < 0.02:
            events.append({"event_id": f"f-{i}", "type": "feedback", "ts": ts + 0.5, "model": "m",
                           "request_id": f"r-{i}", "kind": "thumbs_down"})
    pipeline, alerts = run(events, 5000, detect={"feedback_burn_in_s": 5.0})
    assert alerts == []
    state = pipeline.models["m"]
    assert len(state.segments.keys) == 4
    assert len(state.segments.keys["country"].watched) == 20, "segments.max_values"
    assert state.segments.folded_values > 0


def test_bounds_hold_for_a_million_values_and_the_folds_are_counted():
    events = [{"event_id": f"p-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
               "model_version": "v1", "request_id": f"r-{i}", "latency_ms": 20.0,
               "segment": {f"k{i % 12}": f"v{i}", "tier": "gold" if i % 2 else "free"}} for i in range(20_000)]
    metrics = Metrics("test")
    settings = load_settings(environ={}, overrides={"segments": {"max_keys": 3, "max_values": 5}})
    pipeline = Pipeline(settings, metrics, clock=lambda: START + 10**6)
    pipeline.process(messages(events))
    state = pipeline.models["m"]
    assert len(state.segments.keys) == 3 and state.segments.watched_values() <= 15
    # Watched: tier, k0, k1 (first come); every other (prediction, key) pair is a fold.
    assert state.segments.folded_keys == sum(1 for i in range(20_000) if i % 12 not in (0, 1))
    assert len(state.slices) <= 3 * 6, "each key's watched values and its __other__"
    registry = metrics.registry()
    series = [s for m in registry.collect() if m.name == "model_monitor_segment_events"
              for s in m.samples if s.name.endswith("_total")]
    assert 0 < len(series) <= 3 * 6 * 3
    assert registry.get_sample_value("model_monitor_bound_overflow_total", {"bound": "segment_values"}) > 0
    assert registry.get_sample_value("model_monitor_bound_overflow_total", {"bound": "segment_keys"}) > 0
    assert registry.get_sample_value("model_monitor_bound_capacity", {"bound": "segment_values"}) == 50 * 3 * 5
    assert registry.get_sample_value("model_monitor_segment_events_total", {
        "model": "m", "segment": "tier", "value": "gold", "event": "prediction"}) == 10_000


def test_a_heavy_value_that_comes_late_takes_the_place_of_a_light_one():
    events = []
    for i in range(30_000):
        value = f"early{i % 3}" if i < 300 else ("late" if i % 2 else "steady")
        events.append({"event_id": f"p-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
                       "model_version": "v1", "request_id": f"r-{i}", "segment": {"k": value}})
    settings = load_settings(environ={}, overrides={"segments": {"max_values": 3}})
    pipeline = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    pipeline.process(messages(events))
    assert {"late", "steady"} <= set(pipeline.models["m"].segments.keys["k"].watched)


def test_segment_values_are_redacted_before_they_become_labels_or_alert_fields():
    events = [{"event_id": f"p-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
               "model_version": "v1", "request_id": f"r-{i}", "segment": {"user": "jane.doe@example.com"}}
              for i in range(100)]
    metrics = Metrics("test")
    pipeline = Pipeline(load_settings(environ={}), metrics, clock=lambda: START + 10**6)
    pipeline.process(messages(events))
    exposition = generate_latest(metrics.registry()).decode()
    assert "jane.doe" not in exposition
    assert 'segment="user"' in exposition


def versions_stream(n: int, canary_error: float, canary_slow: float = 0.02, seed: int = 5,
                    canary_share: float = 0.1) -> list[dict]:
    """v1 (90%) and v2 (10%) served together from the start (v2 first: the baseline is the
    version that serves more, whichever came first), each prediction labelled 2 s later."""
    rng = random.Random(seed)
    events: list[dict] = []
    pending: list[tuple[float, dict]] = []
    for i in range(n):
        ts = START + i / 50
        canary = rng.random() < canary_share or i == 0
        version = "v2" if canary else "v1"
        slow = rng.random() < (canary_slow if canary else 0.02)
        score = rng.random()
        events.append({"event_id": f"p-{i}", "type": "prediction", "ts": ts, "model": "m", "model_version": version,
                       "request_id": f"r-{i}", "features": {"x": rng.gauss(0, 1)},
                       "prediction": {"score": score}, "latency_ms": 150.0 if slow else 20.0})
        wrong = rng.random() < (canary_error if canary else 0.05)
        truth = (score < 0.5) if wrong else (score >= 0.5)
        pending.append((ts + 2.0, {"event_id": f"l-{i}", "type": "feedback", "ts": ts + 2.0, "model": "m",
                                   "request_id": f"r-{i}", "kind": "label", "value": truth}))
        while pending and pending[0][0] <= ts:
            events.append(pending.pop(0)[1])
    return events + [e for _, e in pending]


def test_a_canary_worse_in_error_rate_is_failed_with_its_baseline_named():
    metrics = Metrics("test")
    pipeline = Pipeline(load_settings(environ={}), metrics, clock=lambda: START + 10**6)
    events = versions_stream(40_000, canary_error=0.15)
    alerts = [a for i in range(0, len(events), 5000) for a in pipeline.process(messages(events[i:i + 5000])).alerts]
    regressions = [a for a in alerts if a.kind == "canary_regression"]
    assert [(a.model_version, a.baseline_version, a.detector) for a in regressions] == [("v2", "v1", "error_rate")]
    assert regressions[0].to_dict()["baseline_version"] == "v1"
    registry = metrics.registry()
    verdict = {v: registry.get_sample_value("model_monitor_canary_verdict", {
        "model": "m", "model_version": "v2", "baseline_version": "v1", "verdict": v})
        for v in ("pass", "fail", "inconclusive")}
    assert verdict == {"pass": 0.0, "fail": 1.0, "inconclusive": 0.0}
    assert registry.get_sample_value("model_monitor_canary_difference", {
        "model": "m", "model_version": "v2", "baseline_version": "v1", "metric": "error_rate",
        "bound": "lower"}) > 0


def test_a_canary_as_good_as_its_baseline_raises_nothing_and_is_not_failed():
    metrics = Metrics("test")
    pipeline = Pipeline(load_settings(environ={}), metrics, clock=lambda: START + 10**6)
    events = versions_stream(40_000, canary_error=0.05, seed=6)
    alerts = [a for i in range(0, len(events), 5000) for a in pipeline.process(messages(events[i:i + 5000])).alerts]
    assert alerts == []
    fail = metrics.registry().get_sample_value("model_monitor_canary_verdict", {
        "model": "m", "model_version": "v2", "baseline_version": "v1", "verdict": "fail"})
    assert fail == 0.0


def test_a_canary_slower_than_its_baseline_is_failed_on_latency():
    events = versions_stream(20_000, canary_error=0.05, canary_slow=0.3, seed=7)
    _, alerts = run(events, 5000)
    assert ("v2", "v1", "latency") in {(a.model_version, a.baseline_version, a.detector) for a in alerts
                                        if a.kind == "canary_regression"}


def parity_stream(n: int, change_at: int, seed: int = 8) -> list[dict]:
    """Decisions for two groups, equal approval rates (40%) until ``change_at``; then f's drop to 0.6x."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        group = "m" if rng.random() < 0.6 else "f"
        rate = 0.24 if (group == "f" and i >= change_at) else 0.4
        events.append({"event_id": f"p-{i}", "type": "prediction", "ts": START + i / 50, "model": "loans",
                       "model_version": "v1", "request_id": f"r-{i}",
                       "prediction": {"label": "approve" if rng.random() < rate else "deny"},
                       "segment": {"gender": group, "region": rng.choice(REGIONS)}})
    return events


def test_a_parity_gap_raises_fairness_gap_naming_the_attribute_and_group():
    events = parity_stream(40_000, 20_000)
    fairness = {"attributes": ["gender"], "favorable_label": "approve"}
    metrics = Metrics("test")
    pipeline = Pipeline(load_settings(environ={}, overrides={"fairness": fairness}), metrics,
                        clock=lambda: START + 10**6)
    alerts = [a for i in range(0, len(events), 4000) for a in pipeline.process(messages(events[i:i + 4000])).alerts]
    gaps = [a for a in alerts if a.kind == "fairness_gap"]
    assert [(a.feature, a.segment, a.detector) for a in gaps] == [("gender", {"gender": "f"}, "demographic_parity")]
    assert gaps[0].at_event > 20_000 and gaps[0].score < 0.8
    assert metrics.registry().get_sample_value("model_monitor_fairness_ratio", {
        "model": "loans", "attribute": "gender", "group": "f", "metric": "demographic_parity",
        "bound": "upper"}) < 0.8
    # Before the change the groups are treated alike: nothing.
    _, before = run(events[:20_000], 4000, fairness=fairness)
    assert not [a for a in before if a.kind == "fairness_gap"]


def test_the_estimated_error_rate_rises_before_the_labels_say_so():
    """Calibrated scores (truth ~ Bernoulli(score)); labels for every prediction until the
    calibration is done, then none; then the scores move towards 0.5 (more errors)."""
    rng = random.Random(10)
    events = []
    for i in range(60_000):
        shifted = i >= 30_000
        score = min(max(rng.betavariate(2, 2) if shifted else rng.betavariate(0.4, 0.4), 0.0), 1.0)
        events.append({"event_id": f"p-{i}", "type": "prediction", "ts": START + i / 50, "model": "m",
                       "model_version": "v1", "request_id": f"r-{i}", "prediction": {"score": score}})
        if i < 3000:
            events.append({"event_id": f"l-{i}", "type": "feedback", "ts": START + i / 50 + 0.01, "model": "m",
                           "request_id": f"r-{i}", "kind": "label", "value": int(rng.random() < score)})
    metrics = Metrics("test")
    pipeline = Pipeline(load_settings(environ={}), metrics, clock=lambda: START + 10**6)
    alerts = [a for i in range(0, len(events), 5000) for a in pipeline.process(messages(events[i:i + 5000])).alerts]
    estimated = [a for a in alerts if a.kind == "estimated_decay"]
    assert estimated and estimated[0].detector == "estimated_error_rate"
    change = next(i for i, e in enumerate(events) if e["event_id"] == "p-30000")
    assert all(a.at_event > change for a in alerts)
    assert estimated[0].at_event - change < 5000
    rate = metrics.registry().get_sample_value("model_monitor_estimated_error_rate", {"model": "m",
                                                                                       "model_version": "v1"})
    assert 0.25 < rate < 0.45  # a Beta(2, 2) score is wrong 30% of the time when calibrated


def test_dropped_versions_and_folded_categories_are_counted_as_overflow():
    """Every bound that drops or lumps entries says how many on model_monitor_bound_overflow_total."""
    events = [{"event_id": f"p-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
               "model_version": f"v{i // 100}", "request_id": f"r-{i}", "features": {"city": f"c{i % 70}"}}
              for i in range(1000)]
    metrics = Metrics("test")
    settings = load_settings(environ={}, overrides={"detect": {"max_versions": 3, "max_categories": 50}})
    pipeline = Pipeline(settings, metrics, clock=lambda: START + 10**6)
    for i in range(0, 1000, 100):  # a batch per version: each is tested before it is dropped
        pipeline.process(messages(events[i:i + 100]))
    registry = metrics.registry()
    assert registry.get_sample_value("model_monitor_bound_overflow_total", {"bound": "model_versions"}) == 10 - 3
    # Per version the first 49 categories get codes of their own; the values of the other 21 share the last.
    folded = 10 * 21
    assert registry.get_sample_value("model_monitor_bound_overflow_total", {"bound": "categories"}) == folded
