"""Helpers for tests that talk to real things: waiting, settings, a daemon in a thread, Kafka I/O."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import select

from collectors.contract import RawMessage
from monitor.config import Settings, load_settings
from monitor.handoff import join_states_table
from monitor.pipeline import Pipeline
from monitor.service import Service
from monitor.sinks import EffectSink
from retrain.store import SampleStore


def messages(events: list[dict[str, Any] | bytes]) -> list[RawMessage]:
    """Events (dicts are JSON-encoded) as the messages of one partition, in order."""
    return [RawMessage("t", 0, i, None, e if isinstance(e, bytes) else orjson.dumps(e)) for i, e in enumerate(events)]


def wait_for(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def make_settings(bootstrap: str, tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for one test: its own topics and group, fast timeouts, a free HTTP port."""
    tag = uuid.uuid4().hex[:8]
    overrides: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"g-{tag}", "session_timeout_ms": 6000,
                  "rebalance_timeout_ms": 5000, "heartbeat_interval_ms": 1000, "connect_timeout_s": 10.0,
                  "topic_partitions": 2, "fetch_timeout_ms": 100},
        "topics": {"tracking": f"t-{tag}", "feedback": f"f-{tag}", "deadletter": f"dl-{tag}",
                   "retrain": f"rt-{tag}", "alerts": f"al-{tag}"},
        "store": {"url": f"sqlite:///{tmp_path / f'store-{tag}.db'}"},
        "http": {"host": "127.0.0.1", "port": 0},
        "retrain": {"push_interval_s": 0.5, "trigger_cron": ""},
        "datasets": {"dir": str(tmp_path / f"datasets-{tag}")},
        "service": {"shutdown_timeout_s": 10.0},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_settings(environ={}, overrides=overrides)


class DaemonThread:
    """The real Service, run on its own event loop in a thread."""

    def __init__(self, settings: Settings, sinks: Sequence[EffectSink] = ()) -> None:
        self.settings = settings
        self.service = Service(settings, sinks=sinks)
        self.exit_code: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="daemon", daemon=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self.exit_code = self._loop.run_until_complete(self.service.run())
        finally:
            self._loop.close()

    def start(self, timeout_s: float = 30.0) -> DaemonThread:
        self._thread.start()
        wait_for(lambda: self.service.health.ready()[0] or self.exit_code is not None, timeout_s,
                 "the daemon to become ready")
        if self.exit_code is not None:
            pytest.fail(f"the daemon exited with {self.exit_code} during start-up")
        return self

    @property
    def url(self) -> str:
        assert self.service.http is not None
        return self.service.http.url

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.service.request_exit)
            self._thread.join(timeout_s)
            assert not self._thread.is_alive(), "the daemon did not stop in time"
        return self.exit_code


def produce(bootstrap: str, topic: str, messages: list[bytes | dict[str, Any]], key_field: str = "request_id") -> None:
    """Send messages (dicts are JSON-encoded and keyed by ``key_field``) and wait for acks."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for m in messages:
            if isinstance(m, dict):
                key = str(m.get(key_field) or m.get("event_id")).encode()
                producer.send(topic, key=key, value=orjson.dumps(m))
            else:
                producer.send(topic, value=m)
        producer.flush(30)
    finally:
        producer.close()


def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0) -> list[Any]:
    """Read at least ``expect`` records of every partition of ``topic`` from the start."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=500)
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), 10, f"topic {topic}")
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The consumer group's committed offset of every partition of ``topics`` (0 where none)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        out = {}
        for topic in topics:
            for p in consumer.partitions_for_topic(topic) or ():
                out[(topic, p)] = consumer.committed(TopicPartition(topic, p)) or 0
        return out
    finally:
        consumer.close()


def waiting_in_saved_join(store: SampleStore) -> set[str]:
    """Event ids of the feedback saved with the join's state (mm_join_states), still
    waiting for its prediction: the next member to read the partition takes it over."""
    t = join_states_table
    with store.engine.connect() as db:
        rows = db.execute(select(t.c.topic, t.c.partition_id, t.c.state)).all()
    return {fb["event_id"] for topic, partition, state in rows
            for _, fb in Pipeline.load_join((topic, partition), state).pending}
