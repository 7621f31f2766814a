"""The floors: bare consumers of the same topics, to put the daemon's rate beside.

``python -m benchmarks.throughput.floors CLIENT BOOTSTRAP N TOPIC...`` reads N messages
from the topics' beginning in a fresh group and prints one JSON line:
``{"client", "messages", "seconds"}``, timed from the first message to the last.

- ``aiokafka``: ``getmany`` and ``orjson.loads`` per message: the ceiling for a
  Python consumer (the daemon's own client).
- ``kafka-python``: ``poll(max_records=...)`` and ``orjson.loads``.
- ``faust``: a faust-streaming agent taking batches with ``stream.take``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson

BATCH = 5000


def _decode(batches: Iterable[list[Any]], first: float) -> tuple[int, float]:
    """``orjson.loads`` every record of one poll's batches; return how many there were and
    when the first message came (``first`` if it had already)."""
    seen = 0
    for records in batches:
        if not first:
            first = time.perf_counter()
        for record in records:
            orjson.loads(record.value)
        seen += len(records)
    return seen, first


async def _aiokafka(bootstrap: str, n: int, topics: list[str]) -> float:
    from aiokafka import AIOKafkaConsumer  # noqa: PLC0415

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"floor-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=BATCH)
    await consumer.start()
    seen, first = 0, 0.0
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            got, first = _decode(batches.values(), first)
            seen += got
        return time.perf_counter() - first
    finally:
        await consumer.stop()


def _kafka_python(bootstrap: str, n: int, topics: list[str]) -> float:
    from kafka import KafkaConsumer  # noqa: PLC0415

    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"floor-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", enable_auto_commit=False)
    seen, first = 0, 0.0
    try:
        while seen < n:
            got, first = _decode(consumer.poll(timeout_ms=200, max_records=BATCH).values(), first)
            seen += got
        return time.perf_counter() - first
    finally:
        consumer.close()


def _faust(bootstrap: str, n: int, topics: list[str]) -> float:
    import faust  # noqa: PLC0415

    app = faust.App(f"floor-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", value_serializer="raw",
                    web_enabled=False, topic_allow_declare=False, consumer_auto_offset_reset="earliest",
                    store="memory://")
    state = {"seen": 0, "first": 0.0}
    stdout = os.fdopen(os.dup(1), "w")  # faust's worker sends sys.stdout to its log

    @app.agent(app.topic(*topics, value_serializer="raw"))
    async def count(stream):  # type: ignore[no-untyped-def]
        async for values in stream.take(BATCH, within=0.2):
            if not state["first"]:
                state["first"] = time.perf_counter()
            for value in values:
                orjson.loads(value)
            state["seen"] += len(values)
            if state["seen"] >= n:  # report and leave: a faust worker does not stop from inside an agent
                seconds = time.perf_counter() - state["first"]
                print(json.dumps({"client": "faust", "messages": n, "seconds": seconds}), file=stdout, flush=True)
                os._exit(0)

    app.finalize()
    faust.Worker(app, loglevel="ERROR", quiet=True).execute_from_commandline()
    raise RuntimeError("the faust worker stopped before the agent had read every message")


def main(argv: list[str]) -> int:
    client, bootstrap, n_text, *topics = argv
    n = int(n_text)
    if client == "aiokafka":
        seconds = asyncio.run(_aiokafka(bootstrap, n, topics))
    elif client == "kafka-python":
        seconds = _kafka_python(bootstrap, n, topics)
    elif client == "faust":
        _faust(bootstrap, n, topics)  # prints its own result
        return 0
    else:
        print(f"unknown client {client!r}", file=sys.stderr)
        return 2
    print(json.dumps({"client": client, "messages": n, "seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
