"""``monitor produce``: send a file of events to a Kafka topic, one line per message.

Messages are keyed by ``request_id`` (as the contract asks producers to do, so a
prediction and its feedback land in the same partition number), falling back to
``event_id``; a line that is not JSON is sent unkeyed, as it is. Every line is sent as
it is, bad and blank ones included (a blank line is an empty message), so a daemon
reading one partition sees the messages at the positions ``monitor replay`` gives them.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import orjson

from collectors.kafka import KafkaSink, ensure_topics
from common.errors import InputError


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


async def produce(path: str, topic: str, bootstrap: str, *, key_field: str = "request_id",
                  create_partitions: int | None = None, batch_size: int = 1000,
                  connect_timeout_s: float = 30.0, progress: IO[str] | None = sys.stderr,
                  kafka_config: dict[str, Any] | None = None) -> int:
    """Send every line of ``path`` (``-`` for stdin) to ``topic``; return how many were acknowledged."""
    kafka_config = kafka_config or {}
    try:  # first: a wrong path must not wait for the broker or create a topic
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if create_partitions:
            await ensure_topics(bootstrap, {topic: create_partitions}, connect_timeout_s, **kafka_config)
        sink = KafkaSink(bootstrap, **kafka_config)
        await sink.start(connect_timeout_s)  # closes the producer itself when it gives up
        try:
            return await _send_lines(stream, sink, topic, key_field, batch_size, progress)
        finally:
            await sink.stop()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


async def _send_lines(stream: IO[bytes], sink: KafkaSink, topic: str, key_field: str, batch_size: int,
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
