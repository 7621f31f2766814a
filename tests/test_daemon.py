"""The daemon against the real broker: events in, metrics, store, retraining queue, dead letters out."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import orjson
import pytest
from helpers import make_settings, produce, read_topic, wait_for

from monitor.replay import replay
from monitor.simulator import Fault, TrafficSimulator
from retrain.store import SampleStore

pytestmark = pytest.mark.kafka

# What must never reach the store or the queue: the simulator writes these into comments.
PII = re.compile(rb"[\w.]+@example\.com|13\d{9}|4111 1111 1111 1111")


def traffic(seconds: float, rate: float, faults: list[Fault] | None = None, seed: int = 1) -> list[dict | bytes]:
    sim = TrafficSimulator(seed=seed, start_ts=1_790_000_000.0, faults=faults or [], bad_input_rate=0.002)
    events: list[dict | bytes] = []
    for _ in range(int(seconds)):
        events.extend(sim.advance(1.0, rate))
    return events


def split(events: list[dict | bytes]) -> tuple[list[dict | bytes], list[dict | bytes]]:
    tracking = [e for e in events if isinstance(e, bytes) or e["type"] != "feedback"]
    feedback = [e for e in events if isinstance(e, dict) and e["type"] == "feedback"]
    return tracking, feedback


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, from an exposition."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_events_flow_to_metrics_store_queue_and_dead_letters(broker, daemon, tmp_path):
    events = traffic(40, 150, [Fault("feature_drift", "recsys", 20.0, feature="price")])
    tracking, feedback = split(events)
    bad = [e for e in events if isinstance(e, bytes)] + [b"{not json", b'{"type": "prediction"}']
    tracking += bad[-2:]
    d = daemon(detect={"reference_size": 300, "window_size": 200, "check_every": 50})
    s = d.settings
    produce(broker, s.topics.tracking, tracking)
    produce(broker, s.topics.feedback, feedback)
    total = len(tracking) + len(feedback)
    wait_for(lambda: d.service.committed >= total, 60, f"{total} messages committed")

    text = httpx.get(d.url + "/metrics", timeout=5).text
    predictions = sum(1 for e in events if isinstance(e, dict) and e["type"] == "prediction")
    assert metric(text, "model_monitor_events_total", type="prediction") == predictions
    assert metric(text, "model_monitor_invalid_events_total") == len(bad)
    assert metric(text, "model_monitor_prediction_latency_seconds_bucket", le="0.1") > 0
    assert metric(text, "model_monitor_alerts_total", kind="data_drift", model="recsys") >= 1
    assert metric(text, "model_monitor_join_total", outcome="matched") > 0
    for stage in ("fetch", "decode", "route", "detect", "metrics", "store", "commit"):
        assert metric(text, "model_monitor_stage_seconds_total", stage=stage) > 0, stage
    assert httpx.get(d.url + "/healthz", timeout=5).status_code == 200
    assert httpx.get(d.url + "/readyz", timeout=5).status_code == 200

    store = SampleStore(s.store.url)
    try:
        wait_for(lambda: store.pending_count() == 0, 30, "every flagged sample pushed")
        samples = store.samples(limit=100_000)
        reasons = {r["reason"] for r in samples}
        assert {"thumbs_down", "wrong_label", "data_drift"} <= reasons
        joined = [r for r in samples if r["reason"] == "thumbs_down" and r["payload"]["joined"]]
        assert joined and "features" in joined[0]["payload"]["prediction"]
        assert metric(text, "model_monitor_flagged_samples_total") >= len(samples) > 0
        for row in samples:
            assert not PII.search(orjson.dumps(row["payload"])), row["payload"]
        alerts = store.alerts()
        # A severe drift alert may also queue a retrain trigger, between sample pushes.
        wait_for(lambda: all(t["pushed_at"] for t in store.triggers()), 30, "every trigger pushed")
        triggers = store.triggers()
    finally:
        store.close()

    queued = read_topic(broker, s.topics.retrain, len(samples) + len(triggers))
    keys = {r.key.decode() for r in queued if orjson.loads(r.value)["type"] == "sample"}
    assert keys == {r["event_id"] for r in samples}
    assert {r.key.decode() for r in queued} - keys == {t["trigger_key"] for t in triggers}
    for record in queued:
        assert not PII.search(record.value)
        assert orjson.loads(record.value)["event_id"] == record.key.decode()

    letters = read_topic(broker, s.topics.deadletter, len(bad))
    assert sorted(r.value for r in letters) == sorted(bad)
    reasons = {dict(r.headers)["monitor.reason"].decode() for r in letters}
    assert {"not_json", "missing_field"} <= reasons

    published = read_topic(broker, s.topics.alerts, len(alerts))
    assert {orjson.loads(r.value)["event_id"] for r in published} == {a["event_id"] for a in alerts}
    assert d.exit_code is None


def test_bad_input_of_every_kind_is_dead_lettered_and_the_daemon_goes_on(broker, daemon):
    d = daemon(collect={"max_message_bytes": 2000, "max_depth": 4})
    s = d.settings
    ok = {"event_id": "ok-1", "type": "prediction", "ts": 1_790_000_000, "model": "m", "request_id": "r"}
    garbage = [
        b"\xff\xfe not utf-8", b"{", b'{"a": NaN}', b"[1, 2]", b'{"type": "prediction"}',
        orjson.dumps({**ok, "event_id": 7}), orjson.dumps({**ok, "type": "teleport"}),
        orjson.dumps({**ok, "type": "feedback", "kind": "meh"}),
        orjson.dumps({**ok, "features": {"x": "y" * 3000}}),
        orjson.dumps({**ok, "type": "feedback", "kind": "label", "value": [[[[[[1]]]]]]}),
        orjson.dumps({**ok, "latency_ms": -1}), orjson.dumps({**ok, "ts": 1_790_000_000_000}),
        b"[" * 2000 + b"]" * 2000,
    ]
    produce(broker, s.topics.tracking, [*garbage, ok])
    wait_for(lambda: d.service.committed >= len(garbage) + 1, 30, "all messages committed")
    letters = read_topic(broker, s.topics.deadletter, len(garbage))
    assert len(letters) == len(garbage)
    reasons = sorted(dict(r.headers)["monitor.reason"].decode() for r in letters)
    assert reasons == sorted(["not_utf8", "not_json", "non_finite_number", "not_object", "missing_field",
                              "wrong_type", "unknown_type", "unknown_kind", "oversized", "too_deep",
                              "bad_value", "bad_timestamp", "oversized"])
    assert d.service.metrics.total("model_monitor_events_total", model="m") == 1
    assert d.exit_code is None


def test_daemon_raises_the_alerts_replay_raises_on_the_same_events(broker, daemon, tmp_path: Path):
    """One partition, every message in file order: the daemon's alerts are replay's alerts,
    those about a slice and a canary too."""
    faults = [Fault("feature_drift", "recsys", 15.0, feature="price"),
              Fault("latency_regression", "fraud", 20.0), Fault("quality_decay", "fraud", 30.0),
              Fault("canary_regression", "recsys", 10.0), Fault("segment_spike", "recsys", 20.0)]
    events = traffic(60, 200, faults, seed=4)
    lines = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    settings = make_settings(broker, tmp_path, kafka={"topic_partitions": 1},
                             detect={"reference_size": 300, "window_size": 200, "check_every": 50,
                                     "rate_warmup": 300, "feedback_burn_in_s": 5.0})
    out = io.BytesIO()
    replay(str(path), settings, out, batch_size=777, progress=None)
    expected = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert {a["kind"] for a in expected} >= {"data_drift", "slo_burn", "metric_decay", "canary_regression"}
    assert [a for a in expected if a["segment"]], "a slice alert"

    d = daemon(settings)
    produce(broker, settings.topics.tracking, list(lines))
    wait_for(lambda: d.service.committed >= len(lines), 60, "all messages committed")
    store = SampleStore(settings.store.url)
    try:
        got = store.alerts()
    finally:
        store.close()
    fields = ("kind", "model", "model_version", "feature", "detector", "score", "threshold", "at_event", "ts",
              "event_id", "segment", "baseline_version")
    assert [tuple(a[f] for f in fields) for a in got] == [tuple(a[f] for f in fields) for a in expected]
