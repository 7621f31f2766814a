"""What a checkpoint costs: ``python -m benchmarks.throughput.checkpoint_cost [--events N] [--store URL ...]``.

Runs the workload through the pipeline (by default 500,000 events, enough to fill
the join buffer at its default bound), then times ``Pipeline.snapshot`` and
``Pipeline.restore`` and the store's ``put_checkpoint`` to each store given (a
SQLite file in a temporary folder by default), as the daemon does every
``service.checkpoint_interval_s``.
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
from monitor.metrics import Metrics
from monitor.pipeline import Pipeline
from retrain.store import SampleStore, checkpoints_table


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
        batch.append(RawMessage("t", 0, i, None, line))
        if len(batch) == 5000:
            pipeline.process(batch)
            batch = []
    if batch:
        pipeline.process(batch)
    gc.collect()
    started = time.perf_counter()
    blob = pipeline.snapshot()
    snapshot_s = time.perf_counter() - started
    started = time.perf_counter()
    Pipeline(settings, Metrics(), clock=lambda: 2e9).restore(blob)
    restore_s = time.perf_counter() - started
    print(f"after {args.events:,} events ({pipeline.joiner.predictions:,} predictions in the join buffer): "
          f"snapshot {len(blob) / 2**20:.1f} MiB in {snapshot_s * 1000:.0f} ms, restored in {restore_s * 1000:.0f} ms")
    with tempfile.TemporaryDirectory() as folder:
        for url in args.store or [f"sqlite:///{folder}/store.db"]:
            store = SampleStore(url)
            try:
                started = time.perf_counter()
                store.put_checkpoint("checkpoint-cost", [("t", 0, args.events)], "bench", blob)
                print(f"written to {store.dialect} in {(time.perf_counter() - started) * 1000:.0f} ms")
                with store.engine.begin() as conn:
                    conn.execute(checkpoints_table.delete().where(checkpoints_table.c.group_id == "checkpoint-cost"))
            finally:
                store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
