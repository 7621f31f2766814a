"""Where 6.7 us per event goes: ``python -m benchmarks.throughput.budget [--events N]``.

150,000 events/s per worker leaves 6.7 us of one core per event for everything. This
measures, in one process on the throughput workload, the floors that any design in
CPython pays per event before it fetches a message or writes anything (each the
fastest library call known here for its step), and beside them what ``Pipeline.process``
spends per stage. Each row is the best of ``--rounds`` passes over the same messages,
CPU time; the young-generation GC threshold is set as ``monitor run`` sets it.

- ``orjson.loads``: parse each message into Python objects, no validation.
- ``pyarrow.json``, into columns: each batch of 5,000 messages joined into lines and
  read into an Arrow table on one thread, no validation (a columnar hot path would
  start here); shown when pyarrow is installed (it is in ``.venv-bench``).
- the contract in C: msgspec decodes and validates each tracking event against the
  contract (``collectors.decode._usual_event``), feedback by orjson.
- as a dict: the validated event as the dict Python code reads (``msgspec.to_builtins``).
- typed structs, the schema known: msgspec into structs of exactly the workload's
  fields (features too), no bounds checked; the cheapest parse into Python objects
  known here, and one the daemon cannot use as is (feature names come and go).
- the detectors, fed columns: the drift, missing-rate and SLO tests the pipeline runs
  on each model version's predictions, handed ready numpy columns (no event
  is taken apart), per event of the stream; and the same with the drift and
  missing-rate tests fed a quarter of the predictions (``detect.sample_rate = 0.25``).
"""

from __future__ import annotations

import argparse
import collections
import gc
import io
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import orjson

from benchmarks.throughput.workload import MODELS, NUMERIC, events
from collectors.contract import RawMessage
from collectors.decode import Limits, _usual_event
from monitor.config import load_settings
from monitor.metrics import Metrics
from monitor.model_state import DetectorFactory, in_sample
from monitor.pipeline import Pipeline

BUDGET_US = 1e6 / 150_000
BATCH = 5_000
TYPED = "typed structs, the schema known (msgspec, no bounds)"
SAMPLED = "the detectors, a quarter to the drift tests (detect.sample_rate = 0.25)"


def best_us(work: Callable[[], Any], events: int, rounds: int) -> float:
    """Best CPU time of ``rounds`` runs of ``work``, in microseconds per event."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / events * 1e6


def detector_columns(lines: list[bytes], sample_rate: float = 1.0) -> list[tuple[Any, np.ndarray]]:
    """Each model version's detectors with its batch columns, as the pipeline would feed them
    (the drift and missing-rate tests the sample of ``detect.sample_rate``)."""
    factory = DetectorFactory(load_settings(environ={}))
    work = []
    predictions = [e for e in map(orjson.loads, lines) if e["type"] == "prediction"]
    for model in MODELS:
        every = [p for p in predictions if p["model"] == model]
        rows = [every[i] for i in in_sample([r["event_id"] for r in every], sample_rate)]
        numeric = [[r["features"][n] for r in rows] for n in NUMERIC] + [[r["prediction"]["score"] for r in rows]]
        for column in numeric:
            work.append((factory.numeric(), np.array(column)))
        for name in ("platform", "country"):
            codes: dict[str, int] = {}
            work.append((factory.categorical(),
                         np.array([codes.setdefault(r["features"][name], len(codes)) for r in rows], dtype=float)))
        for _ in range(len(NUMERIC) + 2):
            work.append((factory.rate(), np.zeros(len(rows))))  # missing rate: nothing missing here
        latency = np.array([r["latency_ms"] for r in every])
        work.append((factory.latency_slo(), (latency > 100.0).astype(float)))
        work.append((factory.availability_slo(), np.zeros(len(every))))
    for detector, _ in work:
        detector.set_false_alarm_rate(1e-6 / 30)
    return work


def typed_parser() -> Callable[[bytes], Any]:
    """msgspec into structs of exactly the workload's fields, features included, with no
    bounds: the cheapest parse into Python objects known here, had the daemon each
    model's feature schema in advance (it does not: features come and go)."""
    features = msgspec.defstruct("Features", [*((n, float) for n in NUMERIC), ("platform", str), ("country", str)],
                                 gc=False)
    prediction = msgspec.defstruct("Prediction", [("score", float)], gc=False)
    event = msgspec.defstruct("Event", [("event_id", str), ("type", str), ("ts", float), ("model", str),
                                        ("model_version", str), ("request_id", str), ("features", features),
                                        ("prediction", prediction), ("latency_ms", float), ("status", str)],
                              gc=False)
    return msgspec.json.Decoder(event).decode


def arrow_row(lines: list[bytes], rounds: int) -> list[tuple[str, float]]:
    """The columnar parse, if pyarrow is installed: ``[(name, us per event)]``, else ``[]``."""
    try:
        import pyarrow.json as arrow_json  # noqa: PLC0415 - a benchmark peer, not a dependency
    except ImportError:
        return []
    options = arrow_json.ReadOptions(use_threads=False, block_size=8 << 20)

    def parse() -> None:
        for i in range(0, len(lines), BATCH):
            arrow_json.read_json(io.BytesIO(b"\n".join(lines[i:i + BATCH])), read_options=options)

    return [("pyarrow.json, into columns", best_us(parse, len(lines), rounds))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput.budget",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    gc.set_threshold(100_000, 10, 10)
    n = args.events
    lines = list(events(n))
    usual = _usual_event(Limits()).decode

    def contract() -> list[Any]:
        out = []
        for line in lines:
            try:
                out.append(usual(line))
            except msgspec.ValidationError:  # feedback: not a tracking event
                out.append(orjson.loads(line))
        return out

    structs = [s for s in contract() if not isinstance(s, dict)]
    typed = typed_parser()

    def typed_parse() -> list[Any]:
        out = []
        for line in lines:
            try:
                out.append(typed(line))
            except msgspec.ValidationError:  # feedback
                out.append(orjson.loads(line))
        return out

    def detect(sample_rate: float) -> Callable[[], None]:
        work = detector_columns(lines, sample_rate)
        # A batch of 5,000 messages gives each of the 3 models about a third of it.
        share = BATCH // len(MODELS)

        def run() -> None:
            for detector, column in work:
                # A sampled column comes in proportionally smaller pieces.
                step = max(1, round(share * len(column) / (n / len(MODELS))))
                for i in range(0, len(column), step):
                    detector.update_many(column[i:i + step])

        return run

    rows: list[tuple[str, float]] = [
        ("orjson.loads", best_us(lambda: [orjson.loads(line) for line in lines], n, args.rounds)),
        *arrow_row(lines, args.rounds),
        ("the contract in C (msgspec)", best_us(contract, n, args.rounds)),
        ("as a dict (to_builtins)", best_us(lambda: [msgspec.to_builtins(s) for s in structs], n, args.rounds)),
        (TYPED, best_us(typed_parse, n, args.rounds)),
        # The detectors learn as they go: one pass, measured once.
        ("the detectors, fed columns", best_us(detect(1.0), n, 1)),
        (SAMPLED, best_us(detect(0.25), n, 1)),
    ]
    messages = [RawMessage("t", 0, i, None, line) for i, line in enumerate(lines)]
    pipeline = Pipeline(load_settings(environ={}), Metrics(), clock=lambda: 2e9)
    stages: collections.Counter[str] = collections.Counter()

    def process() -> None:
        for i in range(0, n, BATCH):
            stages.update(pipeline.process(messages[i:i + BATCH]).stages)

    whole = best_us(process, n, 1)
    print(f"{n:,} events of the throughput workload, batches of {BATCH:,}; "
          f"python -m benchmarks.throughput.budget --events {n}\n")
    print(f"| per event | us | share of the {BUDGET_US:.1f} us budget |")
    print("|---|---|---|")
    for name, us in rows:
        print(f"| {name} | {us:.2f} | {us / BUDGET_US:.0%} |")
    got = dict(rows)
    floor = got["the contract in C (msgspec)"] + got["as a dict (to_builtins)"] + got["the detectors, fed columns"]
    print(f"| **floors: the contract in C, a dict, the detectors** | **{floor:.2f}** | **{floor / BUDGET_US:.0%}** |")
    least = got[TYPED] + got[SAMPLED]
    print(f"| **the least floors: typed structs, a quarter to the drift tests** | **{least:.2f}** | "
          f"**{least / BUDGET_US:.0%}** |")
    for stage, seconds in stages.items():
        print(f"| Pipeline.process: {stage} | {seconds / n * 1e6:.2f} | {seconds / n * 1e6 / BUDGET_US:.0%} |")
    print(f"| **Pipeline.process, all of it** | **{whole:.2f}** | **{whole / BUDGET_US:.0%}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
