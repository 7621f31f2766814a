"""CPU per event of the pipeline alone, no Kafka, no file: for comparing two versions.

``python -m benchmarks.throughput.pipeline_cpu [--events N] [--batch N] [--numeric N]
[--tree PATH ...] [--set SECTION.KEY=VALUE[,...] ...]`` runs the workload through ``Pipeline.process`` in
batches (of 5,000), once per source tree given (a git worktree of another commit, say;
default: this checkout) and per set of settings given (default: the defaults), each in
its own process, and prints microseconds of CPU per event and the stage split where
the version reports one. The young-generation GC threshold is set as ``monitor run`` and
``monitor replay`` set it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.throughput import variants

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import collections, gc, importlib.util, json, sys, time
sys.path.insert(0, sys.argv[1])
gc.set_threshold(100_000, 10, 10)
spec = importlib.util.spec_from_file_location("workload", sys.argv[3])  # this checkout's, whatever the tree
workload = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workload)
events = workload.events
from collectors.contract import RawMessage
from monitor.config import load_settings
from monitor.metrics import Metrics
from monitor.pipeline import Pipeline
msgs = [RawMessage("t", 0, i, None, line) for i, line in enumerate(events(int(sys.argv[2]), numeric=int(sys.argv[6])))]
settings = load_settings(environ=json.loads(sys.argv[7]))  # the variant's alone, not the shell's
pipeline = Pipeline(settings, Metrics(), clock=lambda: 2e9)
stages = collections.Counter()
started = time.process_time()
batch = int(sys.argv[4])
for i in range(0, len(msgs), batch):
    stages.update(getattr(pipeline.process(msgs[i:i + batch]), "stages", {}))
us = (time.process_time() - started) / len(msgs) * 1e6
split = ", ".join(f"{k} {v / len(msgs) * 1e6:.1f}" for k, v in stages.items())
print(f"{sys.argv[1]}, batches of {batch:,}, {sys.argv[6]} numeric features"
      f"{', ' + sys.argv[5] if sys.argv[5] else ''}: {us:.2f} us of CPU per event"
      + (f" ({split})" if split else ""))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput.pipeline_cpu",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, action="append", help="messages per batch (repeatable; default 5,000)")
    parser.add_argument("--tree", action="append", help="a source tree to measure (repeatable; default: this one)")
    parser.add_argument("--numeric", type=int, default=10, help="numeric features per event (besides 2 categorical)")
    parser.add_argument("--set", action="append", dest="settings", metavar="SECTION.KEY=VALUE[,...]",
                        help=variants.HELP)
    args = parser.parse_args(argv)
    try:
        environs = [variants.environ(v) for v in args.settings or [""]]
    except ValueError as exc:
        parser.error(str(exc))
    workload = Path(__file__).with_name("workload.py")
    for batch in args.batch or [5000]:
        for variant, env in zip(args.settings or [""], environs, strict=True):
            for tree in args.tree or [str(ROOT)]:
                subprocess.run([sys.executable, "-c", _CHILD, tree, str(args.events), str(workload), str(batch),
                                variant, str(args.numeric), json.dumps(env)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
