"""The registry of watched streams: a watch declared once is budgeted, flushed, checkpointed and exported."""

from __future__ import annotations

import random

import pytest
from helpers import messages

from monitor.config import load_settings
from monitor.metrics import Metrics
from monitor.model_state import WATCHES, DetectorFactory, Watch
from monitor.pipeline import Pipeline

START = 1_790_000_000.0
#: Conversions per impression: 30%, then 10% from the middle of the stream.
CONVERSIONS = Watch("unconverted_example", "metric_decay", None, "conversion_rate_example", DetectorFactory.rate,
                    scope="model", counts={"impression": (1, 1), "conversion": (0, -1)})


def stream(n: int = 40_000, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    events: list[dict] = []
    for i in range(n):
        ts = START + i * 0.01
        rid = f"r-{i}"
        events.append({"event_id": f"p-{i}", "type": "prediction", "ts": ts, "model": "m", "model_version": "v1",
                       "request_id": rid, "features": {"x": rng.gauss(0, 1)}, "latency_ms": 20.0})
        events.append({"event_id": f"i-{i}", "type": "impression", "ts": ts, "model": "m", "request_id": rid})
        if rng.random() < (0.3 if i < n // 2 else 0.1):
            events.append({"event_id": f"c-{i}", "type": "conversion", "ts": ts + 0.005, "model": "m",
                           "request_id": rid})
    return events


def run(pipeline: Pipeline, events: list[dict], start: int = 0) -> list:
    msgs = messages(events)
    alerts = []
    for i in range(start, len(msgs), 5000):
        alerts += pipeline.process(msgs[i:i + 5000]).alerts
    return alerts


def test_a_watch_declared_once_is_budgeted_flushed_checkpointed_and_exported():
    settings = load_settings(environ={}, overrides={"detect": {"feedback_burn_in_s": 1.0}})
    events = stream()
    half = len(events) // 2 // 5000 * 5000
    metrics = Metrics("test")
    pipeline = Pipeline(settings, metrics, watches=(*WATCHES, CONVERSIONS))
    before = run(pipeline, events[:half])
    state = pipeline.models["m"]

    # Budgeted: it takes a share of the model's false-alarm budget like every other rate test.
    plain = Pipeline(settings, Metrics("test"))
    run(plain, events[:half])
    negatives = state.watched["negatives"].detector
    # arl0: the average run between false alarms its share of the budget buys.
    assert state.watched["unconverted_example"].detector.arl0 == negatives.arl0
    assert negatives.arl0 > plain.models["m"].watched["negatives"].detector.arl0, "one more test to share the budget"

    # Checkpointed: a restored pipeline goes on exactly as the one that saved.
    restored = Pipeline(settings, Metrics("test"), watches=(*WATCHES, CONVERSIONS))
    restored.restore(pipeline.snapshot())
    after = run(pipeline, events, start=half)
    assert run(restored, events, start=half) == after

    # Flushed: the drop is found, after the change and not before.
    found = [a for a in before + after if a.detector == "conversion_rate_example"]
    assert found and all(a.kind == "metric_decay" and a.model == "m" for a in found)
    change = next(i for i, e in enumerate(events) if e["event_id"] == "p-20000")
    assert min(a.at_event for a in found) > change
    assert not [a for a in before if a.detector == "conversion_rate_example"]

    # Exported: its score and threshold are on /metrics like every detector's.
    labels = {"model": "m", "model_version": "", "kind": "metric_decay", "feature": "",
              "detector": "conversion_rate_example"}
    registry = metrics.registry()
    assert registry.get_sample_value("model_monitor_detector_threshold", labels) == pytest.approx(
        state.watched["unconverted_example"].detector.threshold)
    assert registry.get_sample_value("model_monitor_detector_score", labels) is not None
