"""The pipeline core on synthetic streams: the same batch in, the same effects out, whatever the runner."""

from __future__ import annotations

import re

import numpy as np
import orjson
import pytest
from helpers import messages
from prometheus_client import generate_latest

from collectors.contract import ALERT_KINDS
from monitor.config import load_settings
from monitor.metrics import OTHER, Metrics
from monitor.pipeline import Pipeline
from monitor.simulator import EXPECTED_ALERT, Fault, TrafficSimulator

START = 1_790_000_000.0
PII = re.compile(r"[\w.]+@example\.com|13\d{9}|4111 1111 1111 1111")


def simulate(seconds: int, rate: float, faults=(), seed: int = 1, bad: float = 0.001) -> list:
    sim = TrafficSimulator(seed=seed, start_ts=START, faults=list(faults), bad_input_rate=bad)
    return [e for _ in range(seconds) for e in sim.advance(1.0, rate)]


def run(events, batch_size: int = 2000, **sections) -> tuple[Pipeline, list, list, list]:
    # The simulator's feedback arrives within 8 s of its prediction: 10 s of burn-in cover it.
    sections["detect"] = {"feedback_burn_in_s": 10.0, **sections.get("detect", {})}
    settings = load_settings(environ={}, overrides=sections)
    pipeline = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    msgs = messages(events)
    alerts, samples, dead = [], [], []
    for i in range(0, len(msgs), batch_size):
        result = pipeline.process(msgs[i:i + batch_size])
        alerts += result.alerts
        samples += result.samples
        dead += result.dead_letters
    return pipeline, alerts, samples, dead


@pytest.fixture(scope="module")
def faulty_stream():
    faults = [Fault("feature_drift", "recsys", 30.0, feature="price"), Fault("latency_regression", "fraud", 45.0),
              Fault("feedback_spike", "search", 60.0), Fault("quality_decay", "fraud", 75.0)]
    return faults, simulate(110, 500, faults)


def test_each_injected_fault_raises_its_alert_on_its_model_soon_after(faulty_stream):
    faults, events = faulty_stream
    _, alerts, _, _ = run(events)
    for fault in faults:
        kind = EXPECTED_ALERT[fault.kind]
        hits = [a for a in alerts if a.kind == kind and a.model == fault.model and a.ts >= START + fault.start_s]
        assert hits, f"{fault.kind} on {fault.model} raised no {kind}"
        assert hits[0].ts - (START + fault.start_s) < 25, f"{fault.kind} detected late: {hits[0]}"
    assert {a.kind for a in alerts} <= set(ALERT_KINDS)
    early = [a for a in alerts if a.ts < START + faults[0].start_s]
    assert early == [], "alerts before any fault are false alarms"


@pytest.mark.parametrize(("seconds", "rate"), [(180, 400), (40, 2000)])
def test_no_alerts_on_normal_traffic(seconds, rate):
    # At high rates warm-ups fill in a second or two: the feedback rate must still not
    # learn its normal from before the feedback arrived (a count-based burn-in did).
    _, alerts, samples, _ = run(simulate(seconds, rate, seed=5))
    assert alerts == []
    assert samples, "bad cases (thumbs down, wrong labels) are flagged even when nothing drifts"


def test_the_same_messages_give_the_same_effects_in_batches_of_any_size(faulty_stream):
    _, events = faulty_stream
    events = events[: len(events) // 2]
    results = [run(events, batch_size=n) for n in (97, 1000, 20_000)]
    keys = [[(a.at_event, a.kind, a.feature, a.detector, a.score) for a in alerts] for _, alerts, _, _ in results]
    assert keys[0]
    assert keys[0] == keys[1] == keys[2]
    ids = [sorted(s.event_id for s in samples) for _, _, samples, _ in results]
    assert ids[0] == ids[1] == ids[2]


def test_features_that_come_and_go_reach_the_detectors_alike_in_batches_of_any_size():
    # Small batches mostly hold rows with exactly the tracked names (the one-pass columns);
    # a large one holds missing, late, extra and mistyped features (the name-by-name way).
    rng = np.random.default_rng(5)
    events = []
    for i in range(6000):
        features = {"a": float(rng.normal()) + (1.5 if i >= 4000 else 0.0), "b": f"c{rng.integers(0, 3)}"}
        if i % 7 == 0:
            del features["a"]
        if i >= 1000 and i % 13:
            features["late"] = float(i % 5)
        if i >= 2000 and i % 11 == 0:
            features["extra"] = 1.0  # past max_features once "late" took the last place
        if i % 501 == 500:
            features["a"] = "text"
        events.append({"event_id": f"e-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
                       "features": features, "prediction": {"score": float(rng.random())}, "latency_ms": 5.0})
    detect = {"max_features": 3, "reference_size": 500, "window_size": 200, "check_every": 50,
              "long_window": 0}
    results = [run(events, batch_size=n, detect=detect) for n in (3, 600, 6000)]
    keys = [[(a.at_event, a.kind, a.feature, a.detector, a.score) for a in alerts] for _, alerts, _, _ in results]
    assert any(k[1:3] == ("data_drift", "a") for k in keys[0])
    assert keys[0] == keys[1] == keys[2]
    texts = [sorted(line for line in generate_latest(p.metrics.registry()).decode().splitlines()
              if line.startswith(("model_monitor_detector_score", "model_monitor_bound_overflow",
                                  "model_monitor_feature_type"))) for p, _, _, _ in results]
    assert any('feature="late"' in line for line in texts[0])
    assert 'model_monitor_bound_overflow_total{bound="features"} 0.0' not in texts[0]
    assert texts[0] == texts[1] == texts[2]


def test_alerts_follow_the_contract_and_point_at_the_triggering_event(faulty_stream):
    _, events = faulty_stream
    _, alerts, _, _ = run(events)
    for alert in alerts:
        record = alert.to_dict()
        assert list(record)[:9] == ["kind", "model", "model_version", "feature", "detector", "score", "threshold",
                                    "at_event", "ts"]
        event = events[alert.at_event]
        assert event["event_id"] == alert.event_id
        assert event["ts"] == alert.ts
        assert alert.score > alert.threshold or (alert.kind == "slo_burn" and alert.score >= alert.threshold)


def test_flagged_samples_are_redacted_and_joined(faulty_stream):
    _, events = faulty_stream
    assert any(isinstance(e, dict) and PII.search(e.get("comment", "")) for e in events), "the stream has PII"
    _, _, samples, _ = run(events)
    for s in samples:
        assert not PII.search(orjson.dumps(s.payload).decode()), s.payload
    bad_cases = [s for s in samples if s.reason in ("thumbs_down", "complaint")]
    assert bad_cases
    assert all(s.payload["joined"] for s in bad_cases[100:])
    joined = bad_cases[-1].payload
    assert joined["prediction"]["request_id"] == joined["feedback"]["request_id"]
    assert {s.reason for s in samples} >= {"thumbs_down", "complaint", "wrong_label", "data_drift"}


def test_click_through_falling_is_metric_decay():
    events = simulate(150, 500, [Fault("ctr_drop", "recsys", 80.0)], seed=6)
    _, alerts, _, _ = run(events)
    hits = [a for a in alerts if a.detector == "ctr"]
    assert hits
    assert (hits[0].kind, hits[0].model) == ("metric_decay", "recsys")
    assert 0 < hits[0].ts - (START + 80) < 40, "no CTR alert before the drop, and one soon after"


def test_feedback_that_never_finds_its_prediction_is_kept_unjoined():
    feedback = [{"event_id": f"f-{i}", "type": "feedback", "ts": START + i, "model": "m", "request_id": f"r-{i}",
                 "kind": "thumbs_down", "comment": "mail me: a.b@example.com"} for i in range(3)]
    later = [{"event_id": f"p-{i}", "type": "prediction", "ts": START + 50 * i, "model": "m", "request_id": "other"}
             for i in range(1, 4)]
    pipeline, _, samples, _ = run([*feedback, *later], join={"feedback_wait_s": 60})
    assert [s.event_id for s in samples] == ["f-0", "f-1", "f-2"]
    assert all(not s.payload["joined"] and s.payload["prediction"] is None for s in samples)
    assert "[EMAIL]" in samples[0].payload["feedback"]["comment"]
    assert pipeline.metrics.value("model_monitor_join_total", ("orphaned",)) == 3


def test_one_event_from_a_bad_clock_moves_event_time_only_a_step():
    waiting = [{"event_id": f"p-{i}", "type": "prediction", "ts": START + i, "model": "m", "request_id": f"r-{i}"}
               for i in range(100)]
    future = {"event_id": "late", "type": "prediction", "ts": START + 20 * 3600, "model": "other", "request_id": "x"}
    feedback = [{"event_id": f"f-{i}", "type": "feedback", "ts": START + 101, "model": "m", "request_id": f"r-{i}",
                 "kind": "thumbs_down"} for i in range(100)]
    pipeline, _, samples, _ = run([*waiting, future, *feedback], join={"watermark_max_step_s": 60})
    assert pipeline.watermark == START + 99 + 60
    assert len([s for s in samples if s.payload["joined"]]) == 100, "the predictions did not expire"


def test_pending_feedback_is_flagged_when_the_pipeline_drains():
    fb = {"event_id": "f", "type": "feedback", "ts": START, "model": "m", "request_id": "r", "kind": "complaint"}
    pipeline, _, samples, _ = run([fb])
    assert samples == []
    assert [s.event_id for s in pipeline.drain().samples] == ["f"]


def test_models_past_the_bound_share_the_other_label_and_are_counted():
    events = [{"event_id": f"e-{i}", "type": "prediction", "ts": START + i, "model": f"m{i % 3}",
               "request_id": f"r-{i}", "features": {"x": i}} for i in range(30)]
    pipeline, _, _, _ = run(events, detect={"max_models": 2})
    m = pipeline.metrics
    assert set(pipeline.models) == {"m0", "m1"}
    assert m.value("model_monitor_events_total", (OTHER, "prediction")) == 10
    assert m.value("model_monitor_bound_overflow_total", ("models",)) == 10
    assert m.value("model_monitor_bound_entries", ("models",)) == 2
    assert m.value("model_monitor_bound_capacity", ("models",)) == 2


def test_a_new_version_past_the_bound_evicts_the_oldest_and_its_series():
    events = [{"event_id": f"e-{i}", "type": "prediction", "ts": START + i, "model": "m",
               "model_version": "v1" if i < 10 else "v2", "features": {"x": 1.0}} for i in range(20)]
    pipeline, _, _, _ = run(events, batch_size=10, detect={"max_versions": 1})
    assert list(pipeline.models["m"].versions) == ["v2"]
    text = generate_latest(pipeline.metrics.registry()).decode()
    assert 'model_version="v2"' in text
    assert 'model_version="v1"' not in text


def test_feature_type_changes_count_as_mismatches_and_missing():
    events = [{"event_id": f"e-{i}", "type": "prediction", "ts": START + i, "model": "m",
               "features": {"x": 1.5 if i < 5 else "oops"}} for i in range(8)]
    pipeline, _, _, _ = run(events)
    assert pipeline.metrics.value("model_monitor_feature_type_mismatches_total", ("m",)) == 3


def test_latency_histogram_has_an_exact_100ms_edge():
    events = [{"event_id": f"e-{i}", "type": "prediction", "ts": START, "model": "m", "latency_ms": ms}
              for i, ms in enumerate([99.9, 100.0, 100.001, 250.0])]
    pipeline, _, _, _ = run(events)
    registry = pipeline.metrics.registry()
    labels = {"model": "m", "model_version": ""}
    bucket = registry.get_sample_value("model_monitor_prediction_latency_seconds_bucket", {**labels, "le": "0.1"})
    count = registry.get_sample_value("model_monitor_prediction_latency_seconds_count", labels)
    assert (bucket, count) == (2.0, 4.0)


def test_bad_input_is_returned_as_dead_letters_with_reasons():
    events = [b"nope", b"[]", {"event_id": "e", "type": "prediction", "ts": START, "model": "m"}]
    pipeline, _, _, dead = run(events)
    assert [(d.reason, d.message.offset) for d in dead] == [("not_json", 0), ("not_object", 1)]
    assert pipeline.metrics.value("model_monitor_invalid_events_total", ("not_json",)) == 1
    assert pipeline.position == 3


def test_many_features_drifting_at_once_also_raise_one_dataset_alert():
    before = [{"event_id": f"a-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
               "features": {f"x{k}": float((i * 7919 + k * 104729) % 1000) for k in range(6)}} for i in range(6000)]
    after = [{"event_id": f"b-{i}", "type": "prediction", "ts": START + 60 + i / 100, "model": "m",
              "features": {f"x{k}": float((i * 7919 + k * 104729) % 1000) + (500.0 if k < 4 else 0.0)
                           for k in range(6)}} for i in range(3000)]
    _, alerts, _, _ = run(before + after)
    features = {a.feature for a in alerts if a.kind == "data_drift" and a.detector != "drift_share"}
    assert {"x0", "x1", "x2", "x3"} <= features
    dataset = [a for a in alerts if a.detector == "drift_share"]
    assert len(dataset) == 1, "once for the whole change"
    assert (dataset[0].feature, dataset[0].score, dataset[0].threshold) == ("*", 0.5, 0.5)


def test_river_adwin_on_numeric_features_is_opt_in():
    rng = np.random.default_rng(1)
    rows = [{"event_id": f"e-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
             "features": {"x": float(rng.random()) + (0.5 if i >= 4000 else 0.0)}} for i in range(6000)]
    _, plain, _, _ = run(rows)
    _, with_adwin, _, _ = run(rows, detect={"adwin_delta": 0.002})
    assert "adwin" not in {a.detector for a in plain}
    adwin = [a for a in with_adwin if a.detector == "adwin"]
    assert adwin
    assert adwin[0].at_event >= 4000


def test_sampled_drift_tests_find_the_drift_and_leave_every_other_alert_as_it_was(faulty_stream):
    faults, events = faulty_stream
    full_pipeline, full, _, _ = run(events)
    sampled_pipeline, sampled, _, _ = run(events, detect={"sample_rate": 0.25})
    drift = faults[0]
    hits = [a for a in sampled if a.kind == "data_drift" and a.model == drift.model and a.feature == drift.feature]
    assert hits, "the drifted feature is found in a quarter of the predictions"
    assert hits[0].ts >= START + drift.start_s, "no alert before the change"
    assert hits[0].ts - (START + drift.start_s) < 25
    assert all(a.ts >= START + faults[0].start_s for a in sampled), "no false alarm before the first fault"
    # The SLO, feedback and label streams see every event, with the same thresholds.
    every_event = ("slo_burn", "feedback_spike", "metric_decay")

    def keys(alerts):
        return [(a.at_event, a.kind, a.feature, a.detector, a.score) for a in alerts if a.kind in every_event]

    assert keys(full)
    assert keys(sampled) == keys(full)
    # The metric shows the sample: about a quarter of each model's predictions.
    def by_model(pipeline, name):
        totals = {}
        for family in pipeline.metrics.registry().collect():
            for sample in family.samples:
                if sample.name == name:
                    totals[sample.labels["model"]] = totals.get(sample.labels["model"], 0) + sample.value
        return totals

    predictions = by_model(sampled_pipeline, "model_monitor_predictions_total")
    tested = by_model(sampled_pipeline, "model_monitor_drift_tested_predictions_total")
    assert by_model(full_pipeline, "model_monitor_drift_tested_predictions_total") == predictions
    assert predictions.keys() == tested.keys() == {"recsys", "fraud", "search"}
    for model, n in predictions.items():
        assert 0.22 < tested[model] / n < 0.28, (model, tested[model], n)


def test_the_sample_is_the_same_in_batches_of_any_size(faulty_stream):
    _, events = faulty_stream
    events = events[: len(events) // 2]
    results = [run(events, batch_size=n, detect={"sample_rate": 0.3}) for n in (97, 20_000)]
    keys = [[(a.at_event, a.kind, a.feature, a.detector, a.score) for a in alerts] for _, alerts, _, _ in results]
    assert any(k[1] == "data_drift" for k in keys[0])
    assert keys[0] == keys[1]


def test_a_large_false_alarm_budget_on_a_small_sample_is_capped_not_an_error():
    rows = [{"event_id": f"e-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
             "features": {"x": float(i % 7)}} for i in range(3000)]
    pipeline, _, _, _ = run(rows, detect={"sample_rate": 0.01, "false_alarms_per_million": 1e5})
    assert pipeline.metrics.registry().get_sample_value("model_monitor_drift_tested_predictions_total",
                                                        {"model": "m"}) > 0
