"""The flagged-sample store on SQLite and on the local PostgreSQL, and the jobs that push from it."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import orjson
import pytest
from apscheduler.triggers.cron import CronTrigger
from helpers import read_topic
from sqlalchemy import text

from collectors.contract import Alert, FlaggedSample
from common.errors import ConfigError, PublishFailed, StoreSchemaError, StoreUnavailable
from monitor.handoff import HandoffStore
from retrain.jobs import RetrainJobs
from retrain.publisher import KafkaPublisher, WebhookPublisher
from retrain.store import SampleStore, meta_table, samples_table


def sample(i: int, model: str = "m", reason: str = "thumbs_down") -> FlaggedSample:
    return FlaggedSample(f"e-{i}", model, "v1", reason, "irrelevant", 1_790_000_000.0 + i, {"i": i, "text": "é"})


def alert(i: int) -> Alert:
    return Alert("data_drift", "m", "v1", "price", "ks", 0.3, 0.15, i, 1_790_000_000.0 + i, f"e-{i}")


@pytest.fixture
def store(store_url):
    s = SampleStore(store_url)
    yield s
    assert s.engine.pool.checkedout() == 0, "a pooled connection was left checked out"
    s.close()


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[dict] = []
        self.fail = fail

    def publish(self, records):
        if self.fail:
            raise PublishFailed("queue down")
        self.records.extend(records)

    def close(self):
        pass


class Listener:
    def __init__(self):
        self.pushed_counts: list[tuple[str, dict, int]] = []
        self.triggers: list[tuple[str, str]] = []

    def pushed(self, sink, by_model, pending):
        self.pushed_counts.append((sink, by_model, pending))

    def triggered(self, model, reason):
        self.triggers.append((model, reason))


def test_put_is_idempotent_by_event_id_and_alert_key(store):
    store.put([sample(1), sample(2)], [alert(1)])
    store.put([sample(1), sample(2), sample(3)], [alert(1), alert(2)])
    counts = store.counts()
    assert (counts["samples"], counts["alerts"]) == (3, 2)
    rows = store.samples()
    assert [r["event_id"] for r in rows] == ["e-1", "e-2", "e-3"]
    assert rows[0]["payload"] == {"i": 1, "text": "é"}


def test_claim_marks_pushed_only_when_asked(store):
    store.put([sample(i) for i in range(5)])
    with store.claim_unpushed(3) as (rows, mark):
        assert [r.sample.event_id for r in rows] == ["e-0", "e-1", "e-2"]
        mark()
    assert store.pending_count() == 2

    def fail_after_marking() -> None:
        with store.claim_unpushed(10) as (rows, mark):
            assert len(rows) == 2
            mark()
            raise RuntimeError("the queue failed after the mark: the transaction rolls back")

    with pytest.raises(RuntimeError):
        fail_after_marking()
    assert store.pending_count() == 2


def test_push_job_marks_only_acknowledged_samples(store):
    store.put([sample(i, model="a" if i % 2 else "b") for i in range(7)])
    listener = Listener()
    failing = RetrainJobs(store, {"queue": Recorder(fail=True)}, listener, batch_size=3)
    with pytest.raises(PublishFailed):
        failing.push()
    assert store.pending_count() == 7
    recorder = Recorder()
    jobs = RetrainJobs(store, {"queue": recorder}, listener, batch_size=3)
    assert jobs.push() == 7
    assert [r["event_id"] for r in recorder.records] == [f"e-{i}" for i in range(7)]
    assert all(r["type"] == "sample" and r["payload"]["i"] == int(r["event_id"][2:]) for r in recorder.records)
    assert store.pending_count() == 0
    assert sum(sum(c.values()) for _, c, _ in listener.pushed_counts) == 7
    assert listener.pushed_counts[-1][2] == 0
    assert jobs.push() == 0


def test_a_store_that_cannot_mark_what_was_sent_does_not_make_each_push_send_it_again(store):
    """The queue acknowledged, the store could not record it: the next pushes claim the same
    samples and send none of them again; once the store can, they are marked."""
    store.put([sample(i) for i in range(5)])
    marks_fail = [2]
    claim = store.claim_unpushed

    @contextlib.contextmanager
    def claim_with_failing_mark(limit, sink="queue"):
        with claim(limit, sink) as (rows, mark):
            def mark_or_fail():
                if marks_fail[0]:
                    marks_fail[0] -= 1
                    raise StoreUnavailable("store is read-only")
                mark()
            yield rows, mark_or_fail

    store.claim_unpushed = claim_with_failing_mark
    recorder = Recorder()
    jobs = RetrainJobs(store, {"queue": recorder}, Listener(), batch_size=10)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            jobs.push()
    assert store.pending_count() == 5
    assert jobs.push() == 5
    assert store.pending_count() == 0
    assert [r["event_id"] for r in recorder.records] == [f"e-{i}" for i in range(5)], "each sent once"


def test_a_failing_sink_does_not_make_the_other_push_twice(store):
    store.put([sample(i) for i in range(4)])
    queue, hook = Recorder(), Recorder(fail=True)
    jobs = RetrainJobs(store, {"queue": queue, "webhook": hook}, Listener())
    for _ in range(3):
        with pytest.raises(PublishFailed):
            jobs.push()
    assert [r["event_id"] for r in queue.records] == [f"e-{i}" for i in range(4)], "each sample once"
    assert (store.pending_count("queue"), store.pending_count("webhook")) == (0, 4)
    hook.fail = False
    jobs.push()
    assert (len(queue.records), len(hook.records), store.pending_count("webhook")) == (4, 4, 0)


def test_severe_trigger_is_one_per_model_and_window_and_survives_a_failed_send(store):
    store.put([sample(1)])
    recorder, listener = Recorder(fail=True), Listener()
    jobs = RetrainJobs(store, {"queue": recorder}, listener, cooldown_s=60)
    with pytest.raises(PublishFailed):
        jobs.severe(alert(0))  # ts 1_790_000_000: stored, the send failed
    recorder.fail = False
    jobs.push()  # the next push sends it
    assert [r["type"] for r in recorder.records] == ["sample", "retrain_trigger"]
    assert jobs.severe(alert(30)) is False, "same model, same 60 s window"
    assert jobs.severe(alert(61)) is True
    assert listener.triggers == [("m", "severe_drift"), ("m", "severe_drift")]
    second = RetrainJobs(store, {"queue": Recorder()}, Listener(), cooldown_s=60)  # another daemon
    assert second.severe(alert(62)) is False
    assert store.counts()["triggers"] == 2


def test_weekly_trigger_is_sent_once_per_period_even_when_late(store):
    weekly = CronTrigger.from_crontab("0 3 * * mon", timezone="UTC")
    now = [1_795_000_000.0]  # 2026-11-18, a Wednesday: this period began Monday 03:00
    store.put([sample(1, "a"), sample(2, "b")])
    with store.engine.begin() as conn:  # flagged on 2026-11-10, in the period before this one
        conn.execute(samples_table.update().values(flagged_at=1_794_300_000.0))
    recorder = Recorder()
    jobs = RetrainJobs(store, {"queue": recorder}, Listener(), weekly=weekly, clock=lambda: now[0])
    assert jobs.weekly() == ["a", "b"]
    assert jobs.weekly() == [], "once per period, however often it runs"
    assert RetrainJobs(store, {"queue": Recorder()}, Listener(), weekly=weekly, clock=lambda: now[0]).weekly() == []
    triggers = [r for r in recorder.records if r["type"] == "retrain_trigger"]
    assert [(t["model"], t["reason"], t["event_id"]) for t in triggers] == [
        ("a", "weekly", "a|weekly|2026-11-16T03:00"), ("b", "weekly", "b|weekly|2026-11-16T03:00")]
    now[0] += 7 * 86400  # 2026-11-25: the period began 2026-11-23; the last one on 2026-11-16
    store.put([sample(3, "b")])
    with store.engine.begin() as conn:  # flagged on 2026-11-19, in the last period
        conn.execute(samples_table.update().where(samples_table.c.event_id == "e-3")
                     .values(flagged_at=1_795_000_000.0 + 86400))
    assert jobs.weekly() == ["b"], "a model with no new samples is not retrained again"


def test_weekly_trigger_is_not_sent_for_samples_of_the_current_period(store):
    """After a restart on a Wednesday, samples flagged since Monday's fire time belong to
    next Monday's trigger: nothing is due now."""
    weekly = CronTrigger.from_crontab("0 3 * * mon", timezone="UTC")
    wednesday = 1_795_000_000.0  # 2026-11-18; the period began 2026-11-16 03:00
    store.put([sample(1, "a")])
    with store.engine.begin() as conn:  # flagged on Tuesday 2026-11-17
        conn.execute(samples_table.update().values(flagged_at=wednesday - 86400))
    recorder = Recorder()
    jobs = RetrainJobs(store, {"queue": recorder}, Listener(), weekly=weekly, clock=lambda: wednesday)
    assert jobs.weekly() == []
    assert store.counts()["triggers"] == 0
    next_tuesday = wednesday + 6 * 86400  # 2026-11-24: Monday 2026-11-23 fired; Tuesday's sample was before it
    assert RetrainJobs(store, {"queue": recorder}, Listener(), weekly=weekly,
                       clock=lambda: next_tuesday).weekly() == ["a"]


def test_prune_keeps_what_is_recent_or_undelivered(store):
    store.put([sample(i) for i in range(3)], [alert(1)])
    with store.claim_unpushed(2) as (_, mark):
        mark()
    now = time.time()
    assert store.prune(now - 3600) == {"samples": 0, "alerts": 0, "triggers": 0}
    deleted = store.prune(now + 1)
    assert deleted == {"samples": 2, "alerts": 1, "triggers": 0}
    assert [r["event_id"] for r in store.samples()] == ["e-2"], "undelivered samples stay"


def test_a_store_of_another_schema_version_is_refused(store, store_url):
    with store.engine.begin() as conn:
        conn.execute(meta_table.update().values(value="999"))
    with pytest.raises(StoreSchemaError, match="schema version 999"):
        SampleStore(store_url).close()


def test_a_store_of_schema_2_is_upgraded_and_keeps_its_alerts(store, store_url):
    store.put([], [alert(1)])
    with store.engine.begin() as conn:  # as schema 2 made it: no slice columns on mm_alerts
        conn.execute(text("ALTER TABLE mm_alerts DROP COLUMN segment"))
        conn.execute(text("ALTER TABLE mm_alerts DROP COLUMN baseline_version"))
        conn.execute(meta_table.update().values(value="2"))
    store.close()
    upgraded = SampleStore(store_url)
    try:
        sliced = dataclasses.replace(alert(2), kind="canary_regression", segment={"region": "east"},
                                     baseline_version="v1")
        upgraded.put([], [sliced])
        rows = upgraded.alerts()
        assert [(r["at_event"], r["segment"], r["baseline_version"]) for r in rows] == [
            (1, None, None), (2, {"region": "east"}, "v1")]
    finally:
        upgraded.close()


def test_bad_urls_and_unreachable_databases_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        SampleStore("not a url")
    with pytest.raises(ConfigError, match="no SQLAlchemy dialect"):
        SampleStore("nosuchdb://x")
    with pytest.raises(StoreUnavailable):
        SampleStore("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")
    with pytest.raises(StoreUnavailable):
        SampleStore(f"sqlite:///{tmp_path}/missing/dir/x.db")


@pytest.mark.postgres
def test_concurrent_pushers_on_postgresql_never_push_a_sample_twice(pg_url):
    store = SampleStore(pg_url)
    store.put([sample(i) for i in range(400)])
    recorders = [Recorder() for _ in range(4)]
    jobs = [RetrainJobs(SampleStore(pg_url), {"queue": r}, Listener(), batch_size=7) for r in recorders]
    threads = [threading.Thread(target=j.push) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    pushed = [r["event_id"] for rec in recorders for r in rec.records]
    assert sorted(pushed) == sorted(f"e-{i}" for i in range(400))
    assert sum(1 for rec in recorders if rec.records) > 1, "the work should have been shared"
    for j in jobs:
        j.store.close()
    store.close()


class _Hook(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []
    status = 200

    def do_POST(self):
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.bodies = []
    _Hook.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook
    server.shutdown()
    server.server_close()


def test_webhook_publisher_posts_json_lines_and_fails_on_errors(webhook):
    url, hook = webhook
    publisher = WebhookPublisher(url, timeout_s=5, retries=0)  # retries: tests/test_webhook.py
    publisher.publish([{"event_id": "a"}, {"event_id": "b"}])
    assert [orjson.loads(line) for line in hook.bodies[0].splitlines()] == [{"event_id": "a"}, {"event_id": "b"}]
    hook.status = 503
    with pytest.raises(PublishFailed, match="503"):
        publisher.publish([{"event_id": "c"}])
    publisher.close()
    with pytest.raises(PublishFailed):
        WebhookPublisher("http://127.0.0.1:1/none", timeout_s=2, retries=0).publish([{"event_id": "d"}])


@pytest.mark.kafka
def test_kafka_and_webhook_publishers_deliver_keyed_records(broker, webhook, store):
    url, hook = webhook
    topic = f"rt-{uuid.uuid4().hex[:8]}"
    publishers = {"queue": KafkaPublisher(topic, bootstrap_servers=broker), "webhook": WebhookPublisher(url)}
    store.put([sample(i) for i in range(5)])
    assert RetrainJobs(store, publishers, Listener()).push() == 10  # five to each sink
    for publisher in publishers.values():
        publisher.close()
    records = read_topic(broker, topic, 5)
    assert sorted(r.key for r in records) == [f"e-{i}".encode() for i in range(5)]
    assert sum(len(b.splitlines()) for b in hook.bodies) == 5


def test_join_states_are_kept_per_group_and_partition_and_replaced(store):
    store = HandoffStore(store.engine, store.url)
    store.put_join_states("g", [("t", 0, 10, b"a"), ("t", 1, 20, b"b"), ("f", 0, 5, b"\x00" * 70_000)])
    store.put_join_states("other", [("t", 0, 99, b"x")])
    store.put_join_states("g", [("t", 0, 11, b"a2")])  # a later save of one partition replaces it
    assert store.join_states("g", [("t", 0), ("f", 0), ("t", 7)]) == {
        ("t", 0): (11, b"a2"), ("f", 0): (5, b"\x00" * 70_000)}
    assert store.join_states("g", []) == {}
    assert store.join_states("nobody", [("t", 0)]) == {}
