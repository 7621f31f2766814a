"""What a checkpoint costs: ``python -m benchmarks.throughput.checkpoint_cost [--events N] [--store URL ...]``.

Runs the workload through the pipeline (by default 500,000 events, enough to fill
the join buffer at its default bound) from four partitions, then times what the daemon
does every ``service.checkpoint_interval_s``: ``Pipeline.snapshot`` (the detectors)
and ``Pipeline.join_entries`` (the join, by partition), and the store's
``put_checkpoint`` and ``put_join_states`` to each store given (a SQLite file in a
temporary folder by default); and what a member given the partitions does:
``Pipeline.restore``, ``Pipeline.load_join`` and ``Pipeline.add_join``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time

from benchmarks.throughput.workload import events
from collectors.contract import RawMessage
from monitor.cli import tune_gc
from monitor.config import load_settings
from monitor.handoff import HandoffStore, checkpoints_table, join_states_table
from monitor.metrics import Metrics
from monitor.pipeline import Pipeline
from retrain.store import SampleStore

PARTITIONS = 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput.checkpoint_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--store", action="append", help="a store URL to write to (repeatable)")
    args = parser.parse_args(argv)
    tune_gc()
    settings = load_settings(environ={})
    pipeline = Pipeline(settings, Metrics(), clock=lambda: 2e9)
    batch: list[RawMessage] = []
    for i, line in enumerate(events(args.events)):
        batch.append(RawMessage("t", i % PARTITIONS, i // PARTITIONS, None, line))
        if len(batch) == 5000:
            pipeline.process(batch)
            batch = []
    if batch:
        pipeline.process(batch)
    gc.collect()
    shards = [("t", p) for p in range(PARTITIONS)]
    started = time.perf_counter()
    blob = pipeline.snapshot()
    snapshot_s = time.perf_counter() - started
    started = time.perf_counter()
    joins = pipeline.join_entries(shards)
    join_s = time.perf_counter() - started
    started = time.perf_counter()
    restored = Pipeline(settings, Metrics(), clock=lambda: 2e9)
    restored.restore(blob)
    restore_s = time.perf_counter() - started
    started = time.perf_counter()
    restored.add_join({shard: restored.load_join(shard, state) for shard, state in joins.items()})
    add_join_s = time.perf_counter() - started
    join_bytes = sum(map(len, joins.values()))
    print(f"after {args.events:,} events ({pipeline.joiner.predictions:,} predictions in the join buffer): "
          f"detectors {len(blob) / 2**20:.1f} MiB, written in {snapshot_s * 1000:.0f} ms, restored in "
          f"{restore_s * 1000:.0f} ms; join {join_bytes / 2**20:.1f} MiB in {PARTITIONS} partitions, written in "
          f"{join_s * 1000:.0f} ms, taken over in {add_join_s * 1000:.0f} ms")
    with tempfile.TemporaryDirectory() as folder:
        for url in args.store or [f"sqlite:///{folder}/store.db"]:
            store = SampleStore(url)
            handoff = HandoffStore(store.engine, store.url)
            try:
                started = time.perf_counter()
                handoff.put_checkpoint("checkpoint-cost", [(t, p, args.events) for t, p in shards], "bench", blob)
                detectors_s = time.perf_counter() - started
                handoff.put_join_states("checkpoint-cost", [(t, p, args.events, joins[(t, p)]) for t, p in shards])
                print(f"written to {store.dialect} in {(time.perf_counter() - started) * 1000:.0f} ms "
                      f"(the detectors' row {detectors_s * 1000:.0f} ms)")
                with store.engine.begin() as conn:
                    for table in (checkpoints_table, join_states_table):
                        conn.execute(table.delete().where(table.c.group_id == "checkpoint-cost"))
            finally:
                store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
