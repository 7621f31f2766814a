"""``monitor produce``: send a file of events to a Kafka topic, one line per message.

Messages are keyed by ``request_id`` (as the contract asks producers to do, so a
prediction and its feedback land in the same partition number), falling back to
``event_id``; a line that is not JSON is sent unkeyed, as it is. Every line is sent as
it is, bad and blank ones included (a blank line is an empty message), so a daemon
reading one partition sees the messages at the positions ``monitor replay`` gives them.

With ``encoding="arrow"`` the events go as Arrow IPC batches (``ArrowProducer``, the
helper a model server can use too): each message holds up to ``batch_rows`` events of
one partition, chosen by the key as Kafka's default partitioner would choose it, so a
prediction and its feedback still meet. Lines that are not JSON objects cannot be rows
and are skipped (and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from collectors.arrow import NON_FINITE, EventBatcher, arrow_headers, rows_of
from collectors.kafka import KafkaSink, ensure_topics
from common.errors import InputError

ENCODINGS = ("json", "arrow")


def message_key(line: bytes, field: str) -> bytes | None:
    """The key of one line: its ``field``, else its ``event_id``, else none.

    >>> message_key(b'{"request_id": "r-1", "event_id": "e-1"}', "request_id")
    b'r-1'
    >>> message_key(b'not json', "request_id") is None
    True
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    value = obj.get(field) or obj.get("event_id")
    return str(value).encode() if value is not None else None


class ArrowProducer:
    """Send events to a topic as Arrow IPC batches: the producer helper for a model server.

    ``await send(event)`` buffers an event (a dict of the contract); a message goes when a
    partition's buffer holds ``max_rows`` events, when its oldest event has waited
    ``max_age_s`` (a background task looks every quarter of that), or on ``flush``/``stop``.
    Messages carry the header ``content-type: application/vnd.apache.arrow.stream`` and go to
    the partition Kafka's default partitioner gives the event's ``key_field`` (else its
    ``event_id``), so a prediction and its feedback land in the same partition number::

        producer = ArrowProducer("kafka:9092", "monitor.tracking")
        await producer.start()
        await producer.send({"event_id": "e-1", "type": "prediction", "ts": time.time(), ...})
        await producer.stop()  # sends what is buffered
    """

    def __init__(self, bootstrap: str, topic: str, *, key_field: str = "request_id", max_rows: int = 1000,
                 max_age_s: float = 1.0, max_bytes: int = 200 * 1024, sink: KafkaSink | None = None,
                 **kafka_config: Any) -> None:
        self.topic = topic
        self.key_field = key_field
        self.max_rows, self.max_age_s, self.max_bytes = max_rows, max_age_s, max_bytes
        self.sink = sink or KafkaSink(bootstrap, **kafka_config)
        self._own_sink = sink is None
        self._partitions: list[int] = []
        self._batchers: dict[int, EventBatcher] = {}
        self._partitioner = DefaultPartitioner()
        self._ticker: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: Events and messages acknowledged so far.
        self.events = 0
        self.messages = 0

    async def start(self, timeout_s: float = 30.0) -> None:
        if self._own_sink:
            await self.sink.start(timeout_s)
        self._partitions = await self.sink.partitions_for(self.topic)
        self._batchers = {p: EventBatcher(self.max_rows, self.max_age_s, self.max_bytes) for p in self._partitions}
        if math.isfinite(self.max_age_s):
            self._ticker = asyncio.create_task(self._tick())

    def partition(self, event: Mapping[str, Any]) -> int:
        value = event.get(self.key_field) or event.get("event_id")
        key = str(value).encode() if value is not None else None
        return int(self._partitioner(key, self._partitions, self._partitions))

    async def send(self, event: Mapping[str, Any]) -> None:
        """Buffer one event; send the messages that became due."""
        partition = self.partition(event)
        due = self._batchers[partition].add(event)
        if due:
            await self._send(partition, due)

    async def flush(self) -> None:
        """Send everything buffered."""
        for partition, batcher in self._batchers.items():
            rows = len(batcher)
            if rows:
                await self._send(partition, batcher.flush(), rows)

    async def _send(self, partition: int, values: list[bytes], rows: int | None = None) -> None:
        async with self._lock:
            await self.sink.send_partitioned(self.topic, [(partition, None, v, arrow_headers()) for v in values])
        self.messages += len(values)
        self.events += self.max_rows if rows is None else rows

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.max_age_s / 4)
            for partition, batcher in self._batchers.items():
                rows = len(batcher)
                due = batcher.poll()
                if due:
                    await self._send(partition, due, rows)

    async def stop(self) -> None:
        """Send what is buffered and close."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        try:
            await self.flush()
        finally:
            if self._own_sink:
                await self.sink.stop()


def file_events(stream: IO[bytes], skipped: Counter[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a file of lines; the other lines counted in ``skipped`` by why."""
    for line in stream:
        value = line.rstrip(b"\r\n")
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            skipped["blank" if not value.strip() else "not JSON"] += 1
            continue
        if type(obj) is dict:
            yield obj
        else:
            skipped["not a JSON object"] += 1


def arrow_file_events(path: str) -> Iterator[dict[str, Any]]:
    from monitor.replay import open_arrow  # noqa: PLC0415 - replay pulls in the pipeline

    for batch in open_arrow(path):
        for row in rows_of(batch):
            row.pop(NON_FINITE, None)
            yield row


async def produce(path: str, topic: str, bootstrap: str, *, key_field: str = "request_id",
                  create_partitions: int | None = None, batch_size: int = 1000,
                  connect_timeout_s: float = 30.0, progress: IO[str] | None = sys.stderr,
                  kafka_config: dict[str, Any] | None = None, encoding: str = "json",
                  batch_rows: int = 1000, skipped: Counter[str] | None = None) -> int:
    """Send every line of ``path`` (``-`` for stdin; a ``.arrow`` file's rows) to ``topic``;
    return how many messages (JSON) or events (Arrow) were acknowledged."""
    kafka_config = kafka_config or {}
    skipped = Counter() if skipped is None else skipped
    is_arrow = path != "-" and Path(path).suffix.lower() == ".arrow"
    try:  # first: a wrong path must not wait for the broker or create a topic
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        events = arrow_file_events(path) if is_arrow else None
        if create_partitions:
            await ensure_topics(bootstrap, {topic: create_partitions}, connect_timeout_s, **kafka_config)
        sink = KafkaSink(bootstrap, **kafka_config)
        await sink.start(connect_timeout_s)  # closes the producer itself when it gives up
        try:
            if encoding == "arrow":
                return await _send_arrow(events if events is not None else file_events(stream, skipped), sink,
                                         topic, key_field, batch_rows, progress)
            if events is not None:  # the rows of an Arrow file, one JSON message each
                lines = (orjson.dumps(e) + b"\n" for e in events)
                return await _send_lines(lines, sink, topic, key_field, batch_size, progress)
            return await _send_lines(stream, sink, topic, key_field, batch_size, progress)
        finally:
            await sink.stop()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


async def _send_arrow(events: Iterator[dict[str, Any]], sink: KafkaSink, topic: str, key_field: str,
                      batch_rows: int, progress: IO[str] | None) -> int:
    producer = ArrowProducer("", topic, key_field=key_field, max_rows=batch_rows, max_age_s=math.inf, sink=sink)
    await producer.start()
    started = last = time.perf_counter()
    for event in events:
        await producer.send(event)
        if progress is not None and time.perf_counter() - last >= 2.0:
            last = time.perf_counter()
            progress.write(f"  {producer.events:,} events sent, {producer.events / (last - started):,.0f}/s\n")
    await producer.stop()
    return producer.events


async def _send_lines(stream: Iterator[bytes] | IO[bytes], sink: KafkaSink, topic: str, key_field: str, batch_size: int,
                      progress: IO[str] | None) -> int:
    sent, started, last = 0, time.perf_counter(), time.perf_counter()
    batch: list[tuple[bytes | None, bytes | None, None]] = []
    for line in stream:
        value = line.rstrip(b"\r\n")
        batch.append((message_key(value, key_field), value, None))
        if len(batch) >= batch_size:
            await sink.send_all(topic, batch)
            sent += len(batch)
            batch = []
            if progress is not None and time.perf_counter() - last >= 2.0:
                last = time.perf_counter()
                progress.write(f"  {sent:,} sent, {sent / (last - started):,.0f}/s\n")
    await sink.send_all(topic, batch)
    sent += len(batch)
    return sent
