"""Checkpoints: the pipeline's state saved with the offsets it covers, and a restart
that goes on from it instead of learning every reference again."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import msgspec
import pytest
from helpers import DaemonThread, make_settings, messages, produce, wait_for
from test_pipeline import START, run, simulate

from monitor import pipeline as pipeline_module
from monitor import state_format
from monitor.config import load_settings
from monitor.metrics import Metrics
from monitor.pipeline import Pipeline, settings_fingerprint
from monitor.simulator import Fault

pytestmark = [pytest.mark.kafka]


def test_a_restored_pipeline_raises_what_one_that_never_stopped_raises():
    faults = [Fault("feature_drift", "recsys", 40.0, feature="price"), Fault("feedback_spike", "search", 50.0)]
    events = simulate(80, 500, faults)
    _, expected, expected_samples, _ = run(events)
    assert expected, "the faults should raise alerts after the cut"
    cut = len(events) // 3  # before either fault: the references are learnt before it
    settings = load_settings(environ={}, overrides={"detect": {"feedback_burn_in_s": 10.0}})
    first = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    msgs = messages(events)
    for i in range(0, cut, 2000):
        first.process(msgs[i:min(i + 2000, cut)])
    blob, join = first.snapshot(), first.join_entries([("t", 0)])  # as the daemon saves them

    second = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    second.restore(blob)
    moved = {("t", 0): second.load_join(("t", 0), join[("t", 0)])}
    assert second.add_join(moved) == first.joiner.predictions + first.joiner.pending
    alerts, samples = [], []
    for i in range(cut, len(msgs), 2000):
        result = second.process(msgs[i:i + 2000])
        alerts += result.alerts
        samples += result.samples
    late = [a for a in expected if a.at_event >= cut]
    assert [(a.at_event, a.kind, a.model, a.feature, a.detector) for a in alerts] == \
           [(a.at_event, a.kind, a.model, a.feature, a.detector) for a in late]
    assert {s.event_id for s in samples} <= {s.event_id for s in expected_samples}

    fresh = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    fresh.position = cut
    relearnt = [a for i in range(cut, len(msgs), 2000) for a in fresh.process(msgs[i:i + 2000]).alerts]
    assert relearnt != alerts, "without the state a restart learns again: the test must tell them apart"


def test_a_snapshot_holds_no_secret_and_a_restored_state_gets_its_owners_settings():
    secrets = {"kafka": {"sasl_password": "sasl-secret-1"}, "http": {"token": "token-secret-2"},
               "store": {"url": "postgresql+psycopg://mm:store-secret-3@db/monitor"},
               "retrain": {"webhook_secret": "webhook-secret-4"}}
    settings = load_settings(environ={}, overrides=secrets)
    first = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    first.process(messages(simulate(2, 300, [])))
    blob = first.snapshot()
    assert first.models
    for secret in (b"sasl-secret-1", b"token-secret-2", b"store-secret-3", b"webhook-secret-4"):
        assert secret not in blob
    second = Pipeline(settings, Metrics("test"), clock=lambda: START + 10**6)
    second.restore(blob)
    assert all(model.detect == settings.detect for model in second.models.values())  # all a model keeps


def test_the_fingerprint_follows_the_settings_that_shape_the_state():
    base = load_settings(environ={})
    assert settings_fingerprint(base) == settings_fingerprint(load_settings(environ={}))
    assert settings_fingerprint(base) != settings_fingerprint(load_settings(
        environ={}, overrides={"detect": {"window_size": 400}}))
    assert settings_fingerprint(base) == settings_fingerprint(load_settings(
        environ={}, overrides={"http": {"port": 1234}}))  # where it serves is not its state


def test_a_checkpoint_of_another_state_layout_is_not_restored(monkeypatch):
    settings = load_settings(environ={})
    before = settings_fingerprint(settings)
    monkeypatch.setattr(pipeline_module, "STATE_FORMAT", pipeline_module.STATE_FORMAT - 1)
    assert settings_fingerprint(settings) != before


def _prediction(i: int, ts: float) -> dict:
    return {"event_id": f"p-{i}", "type": "prediction", "ts": ts, "model": "m", "model_version": "v1",
            "request_id": f"r-{i}", "features": {"x": float(i % 13)}, "prediction": {"score": 0.4},
            "latency_ms": 10.0}


def test_a_restarted_daemon_goes_on_from_its_saved_state(broker: str, tmp_path: Path):
    settings = make_settings(broker, tmp_path)
    s = settings
    first_batch = [_prediction(i, START + i * 0.01) for i in range(3000)]
    produce(broker, s.topics.tracking, first_batch)
    first = DaemonThread(settings).start()
    wait_for(lambda: first.service.metrics.total("model_monitor_events_total") == 3000, 60, "the first events")
    reference = first.service.pipeline.models["m"].versions["v1"].features["x"].value
    assert reference is not None and reference.detector.ready
    assert first.stop() == 0
    assert first.service.metrics.total("model_monitor_checkpoints_total", outcome="saved") >= 1

    second = DaemonThread(settings).start()
    try:
        wait_for(lambda: second.service.metrics.total("model_monitor_checkpoints_total", outcome="restored") == 1,
                 30, "the saved state restored")
        restored = second.service.pipeline.models["m"].versions["v1"].features["x"].value
        assert restored is not None and restored.detector.ready, "the reference came back with the state"
        assert second.service.pipeline.position == 3000
        # Feedback on a prediction the first daemon saw joins it in the second.
        produce(broker, s.topics.feedback, [{"event_id": "f-1", "type": "feedback", "ts": START + 40.0,
                                             "model": "m", "request_id": "r-2999", "kind": "thumbs_down"}])
        wait_for(lambda: second.service.metrics.total("model_monitor_join_total", outcome="matched") == 1, 30,
                 "the feedback to join its prediction from before the restart")
        assert second.service.metrics.total("model_monitor_events_total") == 1, "nothing was read twice"
    finally:
        assert second.stop() == 0

    changed = dataclasses.replace(s, detect=dataclasses.replace(s.detect, window_size=400))
    third = DaemonThread(changed).start()
    try:
        wait_for(lambda: third.service.metrics.total("model_monitor_checkpoints_total", outcome="discarded") == 1,
                 30, "a state built with other settings discarded")
        assert third.service.pipeline.position == 0
    finally:
        assert third.stop() == 0


def test_members_of_a_grown_group_start_from_the_saved_detectors(broker: str, tmp_path: Path):
    settings = make_settings(broker, tmp_path)
    s = settings
    produce(broker, s.topics.tracking, [_prediction(i, START + i * 0.01) for i in range(3000)])
    alone = DaemonThread(settings).start()
    wait_for(lambda: alone.service.metrics.total("model_monitor_events_total") == 3000, 60, "the first events")
    assert alone.stop() == 0  # saved for every partition

    first = DaemonThread(settings).start()
    second = DaemonThread(settings)
    try:
        second.start()  # the group rebalances: each member now holds two of the four
        wait_for(lambda: first.service.source.assigned and second.service.source.assigned, 60,
                 "the partitions spread over both")
        outcomes = {d: ("restored" if d.service.metrics.total("model_monitor_checkpoints_total", outcome="restored")
                        else "seeded" if d.service.metrics.total("model_monitor_checkpoints_total", outcome="seeded")
                        else "none") for d in (first, second)}
        # The first member got every partition when it started alone (exact: restored);
        # the second found no state for its share (seeded with the detectors).
        assert outcomes[first] == "restored" and outcomes[second] == "seeded", outcomes
        seeded = second.service.pipeline
        track = seeded.models["m"].versions["v1"].features["x"].value
        assert track is not None and track.detector.ready, "the new member did not learn its reference again"
        assert seeded.position == 0, "only the detectors are taken, not another member's place in its stream"
        assert not seeded.models["m"].recent, "nor the events another member read (drift samples come from them)"
        # The join went with the partitions: each member holds the predictions of its own.
        wait_for(lambda: first.service.pipeline.joiner.predictions + seeded.joiner.predictions == 3000, 30,
                 "the join split between the members")
        assert seeded.joiner.predictions > 0 and first.service.pipeline.joiner.predictions > 0
        assert second.service.metrics.total("model_monitor_join_moves_total", outcome="taken") == \
            len(second.service.source.assigned), "a saved join for every partition it was given"
    finally:
        assert second.stop() == 0
        assert first.stop() == 0


def test_saved_state_is_plain_data_that_runs_no_code_and_holds_no_secret(tmp_path):
    """A checkpoint and a partition's join are plain data: no secret of the settings in
    them, and a blob that names anything but the state's own classes is refused."""
    settings = load_settings(environ={}, overrides={
        "kafka": {"sasl_password": "sasl-Secret-4711", "sasl_username": "svc-monitor"},
        "store": {"url": "postgresql+psycopg://monitor:Store-Secret-0815@db.internal:5432/mm"},
        "retrain": {"webhook_url": "https://hooks.example.com/retrain?token=Hook-Secret-42"},
    })
    pipeline = Pipeline(settings, Metrics("test"))
    events = [{"event_id": f"p-{i}", "type": "prediction", "ts": 1_790_000_000.0 + i, "model": "m",
               "model_version": "v1", "request_id": f"r-{i}", "features": {"x": float(i % 7), "c": "ab"[i % 2]},
               "latency_ms": 20.0} for i in range(3000)]
    pipeline.process(messages(events))
    blobs = [pipeline.snapshot(), *pipeline.join_entries([("t", 0)]).values()]
    assert blobs[0].startswith(state_format.HEADER)
    for blob in blobs:
        for secret in (b"sasl-Secret-4711", b"Store-Secret-0815", b"Hook-Secret-42", b"db.internal"):
            assert secret not in blob
    restored = Pipeline(settings, Metrics("test"))
    restored.restore(blobs[0])
    assert restored.position == pipeline.position and set(restored.models) == {"m"}

    # Whoever can write the table cannot make the daemon run code: only the state's classes are built.
    evil = state_format.HEADER + msgspec.msgpack.encode({"$def": [0, {"$newobj": ["os:system", {"$tuple": ["true"]},
                                                                                   None]}]})
    with pytest.raises(state_format.StateFormatError, match="not a class of model-monitor's state"):
        state_format.loads(evil)
    with pytest.raises(state_format.StateFormatError, match="not a saved state"):
        restored.restore(pickle.dumps({"models": {}}))
