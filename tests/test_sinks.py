"""The effect chain (monitor.sinks): its order, and a new alert sink as one class in the
daemon's chain and in replay's."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import orjson
import pytest
from helpers import DaemonThread, make_settings, produce, wait_for

from common.errors import BrokerUnavailable
from monitor.config import load_settings
from monitor.metrics import ERRORS
from monitor.pipeline import BatchResult
from monitor.replay import replay
from monitor.simulator import Fault, TrafficSimulator
from monitor.sinks import Observer, run_chain
from retrain.store import SampleStore

DETECT = {"reference_size": 300, "window_size": 200, "check_every": 50, "rate_warmup": 300}


class AlertList:
    """A new alert sink, all of it: keeps the alerts it is given. ``fail_first``: raise a
    transient error that many times first (a durable sink is retried)."""

    stage = "alert_list"

    def __init__(self, durable: bool = False, fail_first: int = 0) -> None:
        self.durable = durable
        self.fail_first = fail_first
        self.alerts: list = []

    def wants(self, result: BatchResult) -> bool:
        return bool(result.alerts)

    async def apply(self, result: BatchResult) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise BrokerUnavailable("not yet")
        self.alerts.extend(result.alerts)


class Recorder:
    """Writes its name to ``log`` when applied."""

    def __init__(self, stage: str, durable: bool, log: list[str], wants: bool = True, fails: bool = False) -> None:
        self.stage, self.durable, self.log, self._wants, self.fails = stage, durable, log, wants, fails

    def wants(self, result: BatchResult) -> bool:
        return self._wants

    async def apply(self, result: BatchResult) -> None:
        if self.fails:
            raise BrokerUnavailable(f"{self.stage} is down")
        self.log.append(self.stage)


def events_file(tmp_path: Path) -> list[bytes]:
    faults = [Fault("feature_drift", "recsys", 15.0, feature="price"), Fault("latency_regression", "fraud", 20.0)]
    sim = TrafficSimulator(seed=4, start_ts=1_790_000_000.0, faults=faults, bad_input_rate=0.002)
    lines = [e if isinstance(e, bytes) else orjson.dumps(e) for _ in range(35) for e in sim.advance(1.0, 200)]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return lines


def test_durable_sinks_run_in_order_through_retry_then_the_commit_then_the_others():
    log: list[str] = []
    chain = [Recorder("a", True, log), Recorder("b", False, log), Recorder("c", True, log),
             Recorder("d", False, log), Recorder("e", True, log, wants=False), Recorder("f", False, log, wants=False)]

    async def retry(stage, step):
        log.append(f"retry {stage}")
        await step()

    async def commit():
        log.append("commit")

    asyncio.run(run_chain(chain, BatchResult(), retry=retry, commit=commit))
    assert log == ["retry a", "a", "retry c", "c", "commit", "b", "d"]


def test_a_durable_sink_that_fails_stops_the_chain_before_the_commit():
    log: list[str] = []
    chain = [Recorder("a", True, log), Recorder("b", True, log, fails=True), Recorder("c", True, log),
             Recorder("d", False, log)]

    async def commit():
        log.append("commit")

    with pytest.raises(BrokerUnavailable, match="b is down"):
        asyncio.run(run_chain(chain, BatchResult(), commit=commit))
    assert log == ["a"], "nothing after the failed sink, no commit: the batch is read again"


def test_a_new_alert_sink_gets_exactly_the_alerts_replay_writes(tmp_path):
    events_file(tmp_path)
    settings = load_settings(environ={}, overrides={"detect": DETECT})
    sink, out = AlertList(), io.BytesIO()
    summary = replay(str(tmp_path / "events.jsonl"), settings, out, batch_size=500, progress=None, sinks=(sink,))
    written = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert {a["kind"] for a in written} >= {"data_drift", "slo_burn"}
    assert [a.to_dict() for a in sink.alerts] == written
    assert len(sink.alerts) == sum(summary.alerts.values())


@pytest.mark.kafka
def test_a_new_alert_sink_gets_exactly_the_daemons_alerts_before_or_after_the_commit(broker, tmp_path):
    lines = events_file(tmp_path)
    settings = make_settings(broker, tmp_path, kafka={"topic_partitions": 1}, detect=DETECT)
    after, before = AlertList(), AlertList(durable=True, fail_first=1)
    results: list[BatchResult] = []
    d = DaemonThread(settings, sinks=(after, before, Observer(results.append))).start()
    try:
        assert [type(s).__name__ for s in d.service.chain] == [
            "DeadLetterTopic", "Store", "AlertTopic", "SevereTrigger", "AlertLog", "AlertList", "AlertList",
            "Observer"]
        produce(broker, settings.topics.tracking, list(lines))
        # The observers run after the commit: wait for them, not for the committed count.
        wait_for(lambda: sum(r.messages for r in results) >= len(lines), 60, "every batch observed")
        raised = [a for r in results for a in r.alerts]
        assert {a.kind for a in raised} >= {"data_drift", "slo_burn"}
        assert after.alerts == raised
        assert before.alerts == raised
        # The durable one went through the daemon's retry, under its own stage.
        assert d.service.metrics.value(ERRORS, ("alert_list", "true")) == 1
        store = SampleStore(settings.store.url)
        try:
            assert [a["event_id"] for a in store.alerts()] == [a.event_id for a in raised]
        finally:
            store.close()
    finally:
        assert d.stop() == 0


class SampleList:
    """A durable sink of flagged samples."""

    stage, durable = "sample_list", True

    def __init__(self) -> None:
        self.samples: list = []

    def wants(self, result: BatchResult) -> bool:
        return bool(result.samples)

    async def apply(self, result: BatchResult) -> None:
        self.samples.extend(result.samples)


@pytest.mark.kafka
def test_the_shutdown_drain_goes_through_the_durable_sinks_only(broker, tmp_path):
    settings = make_settings(broker, tmp_path, service={"checkpoint_interval_s": 0},
                             join={"feedback_wait_s": 600})
    durable, results = SampleList(), []
    d = DaemonThread(settings, sinks=(durable, Observer(results.append))).start()
    waiting = {"event_id": "f-1", "type": "feedback", "ts": 1_790_000_000.0, "model": "m", "request_id": "r-1",
               "kind": "thumbs_down"}
    try:
        produce(broker, settings.topics.feedback, [waiting])
        wait_for(lambda: results, 30, "the feedback's batch observed")
        assert durable.samples == [], "still waiting for its prediction"
    finally:
        assert d.stop() == 0
    assert [(s.event_id, s.reason, s.payload["joined"]) for s in durable.samples] == [("f-1", "thumbs_down", False)]
    assert len(results) == 1, "no observer call for the drain: nothing is committed with it"
