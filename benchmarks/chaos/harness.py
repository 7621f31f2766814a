"""The chaos harness: a known stream through the real daemon, a fault, and a comparison
with a clean run of the same stream.

Every run gets its own topics, consumer group and store (a SQLite file, or a fresh
schema on the local PostgreSQL), on one embedded broker. A run's *outcome* is what it
left behind: the flagged samples in the store (and whether each was joined), the
feedback still waiting in the saved join state, the alerts and retrain triggers in the
store, and the samples and triggers on the retraining-queue topic. ``compare`` sets a
faulted run's outcome beside a clean run's.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from sqlalchemy import select

from collectors.contract import FLAGGED_KINDS
from monitor.broker import free_port
from monitor.config import Settings, load_settings, render_toml
from monitor.handoff import join_states_table
from monitor.pipeline import Pipeline
from monitor.simulator import Fault, TrafficSimulator, default_faults
from retrain.store import SampleStore

START = 1_790_000_000.0
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Partitions of each input topic: one, so that a clean run is reproducible (with two, which event
#: fires a drift alert, or whether one fires at all, depends on how the partitions interleave in
#: the batches: the control run in the benchmark shows it).
PARTITIONS = 1
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}


class ChaosError(RuntimeError):
    """The harness could not drive a run (a timeout, a daemon that exited)."""


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.1) -> Any:
    """Poll ``condition`` until it is truthy; raise ``ChaosError`` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


# -- the stream --------------------------------------------------------------------------
@dataclass
class Stream:
    """A seeded stream of the simulator's traffic, faults included, cut into the two topics."""

    tracking: list[dict[str, Any] | bytes]
    feedback: list[dict[str, Any]]
    seconds: float  # of event time

    @property
    def size(self) -> int:
        return len(self.tracking) + len(self.feedback)


#: The faults of a chaos stream (the demo's others need more traffic than a chaos run has).
CHAOS_FAULT_KINDS = ("feature_drift", "latency_regression", "feedback_spike", "quality_decay")


def make_stream(events: int, seed: int, rate: float = 200.0) -> Stream:
    """About ``events`` events (predictions at ``rate`` a second of event time, with their
    impressions, clicks, feedback and labels, a little bad input), with a feature drift, a
    latency regression, a thumbs-down spike and a quality decay spread over it (at a
    fifth, 35%, half and 65% of it: the drift after the reference is complete)."""
    seconds = max(10.0, events / (rate * 1.9))  # about 1.9 events a prediction
    faults = [Fault(f.kind, f.model, round(share * seconds, 1), f.note, f.feature)
              for f, share in zip((f for f in default_faults(seconds) if f.kind in CHAOS_FAULT_KINDS),
                                  (0.2, 0.35, 0.5, 0.65), strict=True)]
    sim = TrafficSimulator(seed=seed, start_ts=START, faults=faults)
    tracking: list[dict[str, Any] | bytes] = []
    feedback: list[dict[str, Any]] = []
    while len(tracking) + len(feedback) < events:
        for e in sim.advance(1.0, rate):
            if isinstance(e, dict) and e["type"] == "feedback":
                feedback.append(e)
            else:
                tracking.append(e)
    return Stream(tracking, feedback, sim.elapsed)


class Producer:
    """Sends a stream to its topics from a thread, at most ``rate`` events a second (0: at once)."""

    def __init__(self, bootstrap: str, settings: Settings, stream: Stream, rate: float = 0.0) -> None:
        self.bootstrap, self.stream, self.rate = bootstrap, stream, rate
        self.topics = (settings.topics.tracking, settings.topics.feedback)
        self.sent = 0
        self.ends: dict[tuple[str, int], int] = {}  # from the acks: what the group must commit
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)

    def start(self) -> Producer:
        self._thread.start()
        return self

    def _records(self) -> Iterator[tuple[str, dict[str, Any] | bytes]]:
        # Interleaved in event order, as production would send them.
        t, f = self.stream.tracking, self.stream.feedback
        i = j = 0
        while i < len(t) or j < len(f):
            take_t = j >= len(f) or (i < len(t) and (not isinstance(t[i], dict) or t[i]["ts"] <= f[j]["ts"]))
            if take_t:
                yield self.topics[0], t[i]
                i += 1
            else:
                yield self.topics[1], f[j]
                j += 1

    def _acked(self, meta: Any) -> None:
        with self._lock:
            tp = (meta.topic, meta.partition)
            self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)

    #: Messages between two pacing checks.
    pace_every = 500

    def _client(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)

    def _due(self, sent: int) -> float:
        """Seconds after the start by which ``sent`` messages are due (0: no pacing)."""
        return sent / self.rate if self.rate else 0.0

    def _before_send(self) -> None:
        """Called before each message is handed to the client (a subclass notes moments)."""

    def _run(self) -> None:
        producer = self._client()
        try:
            started = time.monotonic()
            for topic, event in self._records():
                self._before_send()
                if isinstance(event, dict):
                    future = producer.send(topic, key=str(event["request_id"]).encode(), value=orjson.dumps(event))
                else:
                    future = producer.send(topic, value=event)
                future.add_callback(self._acked)
                self.sent += 1
                if self.sent % self.pace_every == 0:
                    ahead = self._due(self.sent) - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)  # pacing, not synchronisation
            producer.flush(60)
            self._finished()
        except BaseException as exc:
            self.error = exc
        finally:
            producer.close()

    def _finished(self) -> None:
        """Called once every message is flushed."""

    def join(self, timeout_s: float = 600.0) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise ChaosError("the producer did not finish in time")
        if self.error is not None:
            raise ChaosError(f"the producer failed: {self.error!r}")

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


# -- stores ----------------------------------------------------------------------------
@contextlib.contextmanager
def store_url(kind: str, folder: Path) -> Iterator[str]:
    """A fresh store: a SQLite file in ``folder``, or on the local PostgreSQL a schema of its
    own with a login role of its own (the same name) that the daemon connects as."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / f'store-{uuid.uuid4().hex[:8]}.db'}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown store {kind!r}: sqlite or postgresql")
    name = f"mm_chaos_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN")
        conn.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    try:
        yield f"postgresql+psycopg://{name}@127.0.0.1:5432/test?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {name} NOLOGIN")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            conn.execute(f"DROP SCHEMA {name} CASCADE")
            conn.execute(f"DROP ROLE {name}")


def pg_role(url: str) -> str:
    """The role a store URL made by ``store_url`` connects as."""
    return url.split("://", 1)[1].split("@", 1)[0]


class StoreOutage:
    """Make the store fail every write for the daemon, then work again.

    SQLite: the harness runs as root, for whom file modes do not count, and the daemon
    keeps its database open, so a chmod would change nothing; instead the daemon's
    file-size limit (``RLIMIT_FSIZE``) is lowered to one byte, so that every write to the
    database and its WAL fails (EFBIG, as on a full disk; CPython ignores SIGXFSZ). A
    read transaction of the harness's is held open meanwhile: without it the daemon may
    start the WAL over from its beginning, rewriting it in place without growing it, and
    a write would then succeed (the test that used this fault failed at times).
    PostgreSQL: the daemon's role may no longer log in and its connections are ended.
    """

    def __init__(self, kind: str, url: str, pid: int) -> None:
        self.kind, self.url, self.pid = kind, url, pid
        self._limits: tuple[int, int] | None = None
        self._reader: sqlite3.Connection | None = None

    def start(self) -> None:
        if self.kind == "sqlite":
            # The snapshot pins the WAL: every write the daemon makes must append to it.
            self._reader = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self._reader.execute("BEGIN")
            self._reader.execute("SELECT count(*) FROM mm_meta").fetchone()
            self._limits = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (1, self._limits[1]))
            return
        role = pg_role(self.url)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {role} NOLOGIN")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))

    def end(self) -> None:
        if self.kind == "sqlite":
            if self._limits is not None:
                resource.prlimit(self.pid, resource.RLIMIT_FSIZE, self._limits)
            if self._reader is not None:
                self._reader.execute("ROLLBACK")
                self._reader.close()
                self._reader = None
            return
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {pg_role(self.url)} LOGIN")


def run_settings(bootstrap: str, folder: Path, url: str, port: int, checkpoint_s: float = 1.0,
                 partitions: int = PARTITIONS) -> Settings:
    """Settings of one run: its own topics and group, short checkpoint and push intervals."""
    tag = uuid.uuid4().hex[:8]
    return load_settings(environ={}, overrides={
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"chaos-{tag}", "session_timeout_ms": 6000,
                  "rebalance_timeout_ms": 5000, "heartbeat_interval_ms": 1000, "connect_timeout_s": 20.0,
                  "topic_partitions": partitions, "topic_replication": 1, "fetch_timeout_ms": 100},
        "topics": {"tracking": f"ct-{tag}", "feedback": f"cf-{tag}", "deadletter": f"cdl-{tag}",
                   "retrain": f"crt-{tag}", "alerts": f"cal-{tag}"},
        "store": {"url": url},
        "http": {"host": "127.0.0.1", "port": port},
        "retrain": {"push_interval_s": 0.5, "trigger_cron": ""},
        "datasets": {"dir": str(folder / f"datasets-{tag}")},
        "service": {"shutdown_timeout_s": 20.0, "checkpoint_interval_s": checkpoint_s},
    })


# -- the daemon as a subprocess ------------------------------------------------------------
class Daemon:
    """``python -m monitor run -c FILE`` in its own process group, its output in a log file."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with self.log.open("ab") as out:
            out.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "-c", str(self.config)],
                                         stdout=out, stderr=subprocess.STDOUT, env=CLEAN_ENV,
                                         start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def status(self) -> dict[str, Any]:
        r = self.get("/status")
        return r.json() if r is not None and r.status_code == 200 else {}

    def alive(self) -> Any:
        """Truthy while the process runs; raises once it has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ChaosError(f"the daemon exited with {self.proc.returncode}; see {self.log}")
        return True

    def kill9(self) -> None:
        """SIGKILL the daemon's whole process group and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for the graceful stop; SIGKILL if it does not come."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode


def daemon_for(settings: Settings, folder: Path, name: str) -> Daemon:
    config = folder / f"{name}.toml"
    config.write_text(render_toml(settings))
    return Daemon(config, settings.http.port, folder / f"{name}.log")


# -- Kafka reading -------------------------------------------------------------------------
def create_topics(bootstrap: str, settings: Settings) -> None:
    """The run's input topics with the run's partition count, before anything is produced."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        n = settings.kafka.topic_partitions
        admin.create_topics([NewTopic(t, n, 1) for t in (settings.topics.tracking, settings.topics.feedback)])
    finally:
        admin.close()


class Offsets:
    """The consumer group's committed offsets, read with one long-lived client."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        self.topics = topics
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)

    def committed(self) -> dict[tuple[str, int], int]:
        out = {}
        for topic in self.topics:
            for p in self.consumer.partitions_for_topic(topic) or ():
                out[(topic, p)] = self.consumer.committed(TopicPartition(topic, p)) or 0
        return out

    def total(self) -> int:
        return sum(self.committed().values())

    def close(self) -> None:
        self.consumer.close()


def read_topic(bootstrap: str, topic: str, done: Callable[[list[Any]], bool], timeout_s: float = 60.0,
               settle_s: float = 1.0) -> list[Any]:
    """Records of ``topic`` from its start: until ``done(records)``, then until nothing more
    comes for ``settle_s`` (late duplicates). This broker's ListOffsets answers are not
    reliable, so the end is found by reading, not asked for."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", group_id=None)
    try:
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while not done(records) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
                quiet_since = time.monotonic()
        return records
    finally:
        consumer.close()


# -- outcomes ------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one run left behind."""

    samples: dict[str, bool]  # event_id -> joined, from the store
    sample_rows: int
    #: Negative feedback saved with the join's state, still waiting for its prediction: it
    #: is stored (unjoined) when its wait ends, so it counts as kept.
    waiting: set[str]
    waiting_other: int  # other feedback (labels, thumbs-up) waiting: never a sample unjoined
    alerts: dict[str, str]  # alert key -> "kind model feature detector event_id"
    triggers: set[str]  # trigger keys in the store
    queue_samples: Counter[str] = field(default_factory=Counter)  # event_id -> records on the queue topic
    queue_triggers: Counter[str] = field(default_factory=Counter)
    pending: int = 0  # samples not yet delivered to the queue


def outcome(bootstrap: str, settings: Settings) -> Outcome:
    """Read a finished run's store and retraining-queue topic."""
    store = SampleStore(settings.store.url)
    try:
        rows = store.samples(limit=10_000_000)
        with store.engine.connect() as db:
            states = db.execute(select(join_states_table.c.topic, join_states_table.c.partition_id,
                                       join_states_table.c.state)).all()
        pending = [fb for topic, partition, state in states
                   for _, fb in Pipeline.load_join((topic, partition), state).pending]
        waiting = {fb["event_id"] for fb in pending if fb.get("kind") in FLAGGED_KINDS}
        result = Outcome(samples={r["event_id"]: bool(r["payload"].get("joined")) for r in rows},
                         sample_rows=len(rows), waiting=waiting,
                         waiting_other=sum(1 for fb in pending if fb.get("kind") not in FLAGGED_KINDS),
                         alerts={a["alert_key"]: " ".join(str(a[k] or "-") for k in ("kind", "model", "feature",
                                                                                       "detector", "event_id"))
                                 for a in store.alerts(limit=10_000_000)},
                         triggers={t["trigger_key"] for t in store.triggers(limit=10_000_000)},
                         pending=store.pending_count())
    finally:
        store.close()
    stored = set(result.samples)

    def every_sample(records: list[Any]) -> bool:
        return stored <= {r.key.decode() for r in records}

    for record in read_topic(bootstrap, settings.topics.retrain, every_sample):
        message = orjson.loads(record.value)
        kind = result.queue_samples if message["type"] == "sample" else result.queue_triggers
        kind[record.key.decode()] += 1
    return result


@dataclass
class Comparison:
    """A faulted run against the clean run of the same stream."""

    samples_clean: int
    lost: int  # clean samples neither stored nor waiting in the saved join
    extra: int  # stored samples the clean run has not
    store_duplicates: int  # rows beyond one per event_id
    joined_to_unjoined: int  # stored unjoined here, joined in the clean run (the documented crash limit)
    alerts_lost: int
    alerts_extra: int
    queue_missing: int  # stored samples never on the queue topic
    queue_duplicates: int  # queue records beyond one per event_id (at-least-once)
    triggers_lost: int
    triggers_extra: int
    trigger_duplicates: int  # trigger records on the queue beyond one per key
    queue_max_copies: int  # most records of one sample on the queue topic
    detail: dict[str, list[str]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """The store holds exactly the clean run's samples and alerts, each once."""
        return not (self.lost or self.extra or self.store_duplicates or self.alerts_lost or self.alerts_extra
                    or self.queue_missing or self.triggers_lost or self.triggers_extra)


def compare(clean: Outcome, run: Outcome) -> Comparison:
    """Compare by key: samples by event_id (stored or waiting in the saved join), alerts and
    triggers by key; the queue by its records' keys."""
    clean_all = set(clean.samples) | clean.waiting
    run_all = set(run.samples) | run.waiting
    lost, extra = clean_all - run_all, run_all - clean_all
    unjoined = {e for e, joined in run.samples.items() if not joined and clean.samples.get(e)}
    on_queue = set(run.queue_samples)
    alerts_lost, alerts_extra = set(clean.alerts) - set(run.alerts), set(run.alerts) - set(clean.alerts)
    return Comparison(
        samples_clean=len(clean_all), lost=len(lost), extra=len(extra),
        store_duplicates=run.sample_rows - len(run.samples), joined_to_unjoined=len(unjoined),
        alerts_lost=len(alerts_lost), alerts_extra=len(alerts_extra),
        queue_missing=len(set(run.samples) - on_queue),
        queue_duplicates=sum(n - 1 for n in run.queue_samples.values()),
        triggers_lost=len(clean.triggers - run.triggers), triggers_extra=len(run.triggers - clean.triggers),
        trigger_duplicates=sum(n - 1 for n in run.queue_triggers.values()),
        queue_max_copies=max(run.queue_samples.values(), default=0),
        detail={"lost": sorted(lost)[:20], "extra": sorted(extra)[:20],
                "alerts_lost": sorted(clean.alerts[k] for k in alerts_lost),
                "alerts_extra": sorted(run.alerts[k] for k in alerts_extra)},
    )


# -- runs ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    """One scenario on one store."""

    scenario: str
    store: str
    events: int
    runs: int  # daemon processes started
    faults: int
    recover_s: list[float]
    comparison: Comparison
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # what the scenario observed, for assertions


def _finish(daemon: Daemon, bootstrap: str, settings: Settings, offsets: Offsets,
            ends: dict[tuple[str, int], int], timeout_s: float) -> None:
    """Wait until the group committed the whole stream and the queue got every sample; stop."""
    def consumed() -> bool:
        committed = offsets.committed()
        return all(committed.get(tp, 0) >= n for tp, n in ends.items())

    wait_until(lambda: daemon.alive() and consumed(), timeout_s, "the stream to be consumed",
               poll_s=0.3)
    wait_until(lambda: daemon.alive() and _ready(daemon)[0], timeout_s, "/readyz to be ready")
    store = SampleStore(settings.store.url, create=False)
    try:
        wait_until(lambda: daemon.alive() and store.pending_count() == 0, 60, "every sample pushed to the queue")
    finally:
        store.close()
    code = daemon.stop()
    if code != 0:
        raise ChaosError(f"the last daemon stopped with exit code {code}; see {daemon.log}")


def clean_run(bootstrap: str, stream: Stream, kind: str, folder: Path, timeout_s: float, rate: float = 0.0,
              partitions: int = PARTITIONS) -> Outcome:
    """One daemon, no faults: the stream sent (all before the daemon starts, or at ``rate``
    while it runs), consumed, pushed; then stopped gracefully."""
    with store_url(kind, folder) as url:
        settings = run_settings(bootstrap, folder, url, free_port(), partitions=partitions)
        daemon = daemon_for(settings, folder, f"clean-{kind}")
        topics = [settings.topics.tracking, settings.topics.feedback]
        create_topics(bootstrap, settings)
        producer = Producer(bootstrap, settings, stream, rate)
        if not rate:
            producer.start().join()
        offsets = Offsets(bootstrap, settings.kafka.group_id, topics)
        try:
            daemon.start()
            if rate:
                producer.start().join()
            ends = producer.ends
            _finish(daemon, bootstrap, settings, offsets, ends, timeout_s)
            return outcome(bootstrap, settings)
        finally:
            daemon.kill9()
            offsets.close()


def kill9(bootstrap: str, stream: Stream, clean: Outcome, kind: str, folder: Path, kills: int, seed: int,
          rate: float, timeout_s: float) -> RunResult:
    """SIGKILL the daemon ``kills`` times at seeded random points of the stream while it is
    produced at ``rate`` events a second, restarting it each time; then let it finish."""
    rng = random.Random(seed)
    # Kill when the group has committed these shares of the stream, plus a random moment
    # (so a kill lands mid-batch, mid-checkpoint or mid-push, not only just after a commit).
    points = sorted(rng.uniform(0.03, 0.95) for _ in range(kills))
    delays = [rng.uniform(0.0, 1.5) for _ in range(kills)]
    with _faulted_run(bootstrap, stream, kind, folder, rate, "kill9") as (_, settings, producer, daemon, offsets):
        runs, recover = 1, []
        daemon.start()
        producer.start()
        for point, delay in zip(points, delays, strict=True):
            target = int(point * stream.size)
            wait_until(lambda t=target: daemon.alive() and offsets.total() >= t, timeout_s,
                       f"{target} messages committed", poll_s=0.2)
            time.sleep(delay)  # a random moment after that commit: the fault's timing, not a wait
            before = offsets.total()
            daemon.kill9()
            killed = time.monotonic()
            daemon.start()
            runs += 1
            # Recovered: the new process is ready (group joined, nothing failing) and has
            # committed past what was committed at the kill (unless nothing was left).
            wait_until(lambda b=before: daemon.alive() and _ready(daemon)[0] and (
                offsets.total() > b or (producer.done and offsets.total() >= stream.size)), timeout_s,
                "the restarted daemon to be ready and commit", poll_s=0.2)
            recover.append(time.monotonic() - killed)
        producer.join()
        ends = producer.ends
        _finish(daemon, bootstrap, settings, offsets, ends, timeout_s)
        result = outcome(bootstrap, settings)
    return RunResult("kill9", kind, stream.size, runs, kills, recover, compare(clean, result))


def db_down(bootstrap: str, stream: Stream, clean: Outcome, kind: str, folder: Path, down_s: float, rate: float,
            timeout_s: float) -> RunResult:
    """The store fails every write for ``down_s`` seconds mid-stream (``StoreOutage``), then
    works again; the daemon must stay up, commit nothing meanwhile, and recover by itself."""
    notes: list[str] = []
    facts: dict[str, Any] = {}
    with _faulted_run(bootstrap, stream, kind, folder, rate, "db_down") as (url, settings, producer, daemon, offsets):
        daemon.start()
        wait_until(lambda: daemon.alive() and _ready(daemon)[0], timeout_s, "the daemon to be ready")
        producer.start()
        wait_until(lambda: daemon.alive() and offsets.total() >= stream.size // 4, timeout_s,
                   "a quarter of the stream committed", poll_s=0.2)
        assert daemon.proc is not None
        outage = StoreOutage(kind, url, daemon.proc.pid)
        outage.start()
        down_at = time.monotonic()
        try:
            last: list[str] = []

            def store_named() -> str:
                last[:] = [_ready(daemon)[1]]
                return _store_problem(daemon)

            try:
                reason = wait_until(lambda: daemon.alive() and store_named(), down_s + 30,
                                    "/readyz to report the store")
            except ChaosError as exc:
                raise ChaosError(f"{exc}; it last said {last[0][:300]!r}" if last else str(exc)) from None
            notes.append(f"`/readyz` while down: 503 `{_shorten(reason, folder, url)}`")
            frozen = offsets.committed()
            live = []
            while time.monotonic() - down_at < down_s:  # the fault lasts down_s: watch it
                health = daemon.get("/healthz")
                live.append(health is not None and health.status_code == 200)
                time.sleep(0.5)
            advanced = offsets.committed() != frozen
            facts.update(readyz=reason, live_polls=len(live), live_ok=sum(live), offsets_moved=advanced)
            notes.append(f"`/healthz` answered 200 to {sum(live)} of {len(live)} polls while down")
            notes.append("committed offsets moved while the store was down" if advanced
                         else "committed offsets did not move while the store was down")
        finally:
            outage.end()
        restored = time.monotonic()
        wait_until(lambda: daemon.alive() and _ready(daemon)[0], timeout_s, "/readyz to be ready again")
        recover = [time.monotonic() - restored]
        producer.join()
        ends = producer.ends
        _finish(daemon, bootstrap, settings, offsets, ends, timeout_s)
        result = outcome(bootstrap, settings)
    comparison = compare(clean, result)
    if advanced:
        comparison.detail["offsets_moved_while_down"] = ["yes"]
    return RunResult("db_down", kind, stream.size, 1, 1, recover, comparison, notes, facts)


@contextlib.contextmanager
def _faulted_run(bootstrap: str, stream: Stream, kind: str, folder: Path, rate: float,
                 scenario: str) -> Iterator[tuple[str, Settings, Producer, Daemon, Offsets]]:
    """A run of a scenario on a store of its own: (store URL, settings, producer, daemon,
    committed offsets). The daemon is killed and the offsets closed however it ends."""
    with store_url(kind, folder) as url:
        settings = run_settings(bootstrap, folder, url, free_port())
        create_topics(bootstrap, settings)
        producer = Producer(bootstrap, settings, stream, rate)
        daemon = daemon_for(settings, folder, f"{scenario}-{kind}")
        offsets = Offsets(bootstrap, settings.kafka.group_id, [settings.topics.tracking, settings.topics.feedback])
        try:
            yield url, settings, producer, daemon, offsets
        finally:
            daemon.kill9()
            offsets.close()


def _shorten(text: str, folder: Path, url: str) -> str:
    text = text.strip().replace(str(folder), "DIR")
    if "://" in url and not url.startswith("sqlite"):
        text = text.replace(pg_role(url), "ROLE")
    return text[:300]


def _ready(daemon: Daemon) -> tuple[bool, str]:
    r = daemon.get("/readyz")
    if r is None:
        return False, "no answer"
    return r.status_code == 200, r.text


def _store_problem(daemon: Daemon) -> str:
    """``/readyz``'s answer while it says the store is unavailable, for whichever part of
    the daemon met it first (the batch's effects, a checkpoint, a push); else ""."""
    ready, text = _ready(daemon)
    return text if not ready and re.search(r"store \S+ is unavailable", text) else ""
