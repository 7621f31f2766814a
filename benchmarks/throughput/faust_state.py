"""Join state in faust-streaming tables.

``python -m benchmarks.throughput.faust_state [--events N] [--bootstrap HOST:PORT] [--timeout S]``

The alternative to checkpointing the join state into the store with the committed
offsets (``checkpoint_cost.py``): a faust Table (in-memory store, changelog topic on the
same broker), which faust keeps per partition and rebuilds from its changelog when a
partition moves or a worker restarts. N workload events (default 200,000) go to one
topic of 4 partitions keyed by ``request_id`` (on an embedded broker unless
``--bootstrap``), then, each in its own process:

1. the bare faust agent (``floors.py``): events/s with no table;
2. the same agent storing every prediction's bytes in a Table keyed by ``request_id``
   (the join buffer's job): events/s, timed from the first message until the last one
   is handled and the changelog flushed;
3. a second worker of the same app (same id, fresh memory store): how long faust takes
   to recover the table from its changelog (partitions assigned to recovery complete,
   and to the agent's first event) and how many keys it recovered.

Prints a summary and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from benchmarks.throughput import workload
from benchmarks.throughput.__main__ import _produce
from monitor.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
BATCH = 5000  # as floors.py
TABLE = "predictions"
RESULT = re.compile(r'\{"(?:client|mode)".*\}')  # faust may write escape codes around it


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the children (one faust worker each) ---------------------------------------------------------------------

def _child(mode: str, bootstrap: str, topic: str, app_id: str, n: int) -> None:
    """Run a faust worker with the join table; ``write``: store the predictions of ``n``
    events; ``recover``: report the recovery when the agent gets its first event. Prints
    one JSON line to the real stdout and leaves with ``os._exit``."""
    import faust  # noqa: PLC0415

    started = time.perf_counter()
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", value_serializer="raw", web_enabled=False,
                    topic_allow_declare=False, consumer_auto_offset_reset="earliest", store="memory://",
                    topic_partitions=PARTITIONS)
    # use_partitioner: the changelog partition comes from the key (as the source topic's
    # did), not from the current event, which stream.take leaves at the batch's last one.
    table = app.Table(TABLE, partitions=PARTITIONS, key_type=bytes, value_type=bytes, use_partitioner=True)
    marks: dict[str, float] = {}
    state = {"seen": 0, "first": 0.0}
    stdout = os.fdopen(os.dup(1), "w")  # faust's worker sends sys.stdout to its log

    def report(result: dict[str, Any]) -> None:
        print(json.dumps({"mode": mode, **result}), file=stdout, flush=True)
        if mode == "recover":
            os._exit(0)
        # Stop as a deployment does: commit, leave the group (a member that just vanishes
        # holds its partitions until its session times out) and close the producer.
        os.kill(os.getpid(), signal.SIGTERM)

    @app.on_partitions_assigned.connect
    async def assigned(_app: Any, assigned: Any, **_: Any) -> None:
        if assigned:
            marks.setdefault("assigned", time.perf_counter())

    @app.on_rebalance_complete.connect
    async def recovered(_app: Any, **_: Any) -> None:
        if "assigned" in marks:
            marks.setdefault("recovered", time.perf_counter())

    @app.agent(app.topic(topic, value_serializer="raw"))
    async def join(stream):  # type: ignore[no-untyped-def]
        async for values in stream.take(BATCH, within=0.2):
            now = time.perf_counter()
            if mode == "recover":
                assigned_at = marks.get("assigned", started)
                report({"recovered_keys": len(table), "first_event_seconds": now - started,
                        "assigned_seconds": assigned_at - started,
                        "recovery_seconds": marks.get("recovered", now) - assigned_at,
                        "assigned_to_first_event_seconds": now - assigned_at})
            if not state["first"]:
                state["first"] = now
            for value in values:
                event = orjson.loads(value)
                if event.get("type") == "prediction":
                    table[event["request_id"].encode()] = value
            state["seen"] += len(values)
            if state["seen"] >= n:  # report and leave: a faust worker does not stop from inside an agent
                handled = time.perf_counter()
                await app.producer.flush()  # the changelog is the state: it must be out
                done = time.perf_counter()
                report({"events": state["seen"], "keys": len(table), "seconds": done - state["first"],
                        "flush_seconds": done - handled})
                state["seen"] = -(1 << 62)  # report once; the worker is stopping

    app.finalize()
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    raise RuntimeError("the faust worker stopped before the agent was done")


def _run(args: list[str], timeout: float) -> dict[str, Any]:
    """Run a child; return the JSON line it printed, or fail with its output's tail."""
    try:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-3000:]
        raise RuntimeError(f"{args[2:]} did not finish in {timeout:.0f}s; its stderr ends: "
                           f"{tail.decode(errors='replace') if isinstance(tail, bytes) else tail}") from None
    found = RESULT.search(done.stdout)
    if done.returncode or not found:
        raise RuntimeError(f"{args[2:]} exited {done.returncode} with no result; stdout ends: "
                           f"{done.stdout[-1000:]!r}; stderr ends:\n{done.stderr[-3000:]}")
    return json.loads(found.group(0))


# -- the parent -------------------------------------------------------------------------------------------------

async def _markers(bootstrap: str, topic: str, changelog: str) -> int:
    """One event per partition for the restarted agent to get once its table is back;
    return the sum of the changelog's end offsets as the broker reports them (what faust
    recovers up to)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: PLC0415

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition in range(PARTITIONS):
            await producer.send_and_wait(topic, b'{"type":"marker"}', partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(changelog, p) for p in range(PARTITIONS)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def measure(bootstrap: str, n: int, timeout: float) -> dict[str, Any]:
    from collectors.kafka import ensure_topics  # noqa: PLC0415

    run = uuid.uuid4().hex[:8]
    topic, app_id = f"faust-state-{run}", f"faust-state-{run}"
    asyncio.run(ensure_topics(bootstrap, {topic: PARTITIONS, f"{app_id}-{TABLE}-changelog": PARTITIONS}, 30.0))
    started = time.perf_counter()
    asyncio.run(_produce(bootstrap, n, topics=(topic, topic)))
    predictions = sum(b'"type":"prediction"' in line for line in workload.events(n))
    log(f"produced {n:,} events ({predictions:,} predictions) to {topic} in {time.perf_counter() - started:.1f}s")
    me = [sys.executable, "-m", "benchmarks.throughput.faust_state", "--bootstrap", bootstrap, "--events", str(n)]
    log("faust agent, no table ...")
    bare = _run([sys.executable, "-m", "benchmarks.throughput.floors", "faust", bootstrap, str(n), topic], timeout)
    log(f"  {n / bare['seconds']:,.0f} events/s")
    log("faust agent writing the join table ...")
    write = _run([*me, "--child", "write", "--topic", topic, "--app-id", app_id], timeout)
    log(f"  {n / write['seconds']:,.0f} events/s ({write['keys']:,} keys, "
        f"changelog flush {write['flush_seconds']:.2f}s)")
    end_offsets = asyncio.run(_markers(bootstrap, topic, f"{app_id}-{TABLE}-changelog"))
    if end_offsets != write["keys"]:
        log(f"  the broker reports the changelog's end offsets summing to {end_offsets:,}, "
            f"not the {write['keys']:,} records written to it")
    log("a second worker of the app recovering the table ...")
    recover = _run([*me, "--child", "recover", "--topic", topic, "--app-id", app_id], timeout)
    return {"events": n, "predictions": predictions,
            "seconds_without_table": bare["seconds"], "seconds_with_table": write["seconds"],
            "events_per_s_without": n / bare["seconds"], "events_per_s_with": n / write["seconds"],
            "changelog_flush_seconds": write["flush_seconds"], "keys_written": write["keys"],
            "changelog_end_offsets": end_offsets,
            "recovery_seconds": recover["recovery_seconds"],
            "assigned_to_first_event_seconds": recover["assigned_to_first_event_seconds"],
            "start_to_first_event_seconds": recover["first_event_seconds"],
            "recovered_keys": recover["recovered_keys"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput.faust_state",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events produced (default 200,000)")
    parser.add_argument("--bootstrap", help="a running broker (default: start the embedded one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each child may take (default 600)")
    parser.add_argument("--child", choices=("write", "recover"), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.bootstrap, args.topic, args.app_id, args.events)
        return 0
    try:
        if args.bootstrap:
            result = measure(args.bootstrap, args.events, args.timeout)
        else:
            with EmbeddedBroker() as broker:
                log(f"embedded broker at {broker.bootstrap}")
                result = measure(broker.bootstrap, args.events, args.timeout)
    except RuntimeError as exc:
        log(f"failed: {exc}")
        return 1
    r = result
    print(f"{r['events']:,} events on {PARTITIONS} partitions, faust agent taking batches of {BATCH:,}:\n"
          f"  without a table  {r['seconds_without_table']:6.2f}s  {r['events_per_s_without']:9,.0f} events/s\n"
          f"  with the table   {r['seconds_with_table']:6.2f}s  {r['events_per_s_with']:9,.0f} events/s "
          f"({r['keys_written']:,} keys; the last changelog flush {r['changelog_flush_seconds']:.2f}s)\n"
          f"  restart: table recovered from its changelog in {r['recovery_seconds']:.2f}s "
          f"({r['recovered_keys']:,} keys of {r['predictions']:,} written); first event "
          f"{r['assigned_to_first_event_seconds']:.2f}s after the assignment, "
          f"{r['start_to_first_event_seconds']:.2f}s after the worker started")
    if r["recovered_keys"] != r["predictions"]:
        print(f"  WARNING: {r['predictions'] - r['recovered_keys']:,} keys lost in recovery (faust reads the "
              f"changelog up to the end offsets the broker reports: {r['changelog_end_offsets']:,})")
    print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
