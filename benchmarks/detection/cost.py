"""What detection costs per event: ``python -m benchmarks.detection.cost``.

The detectors one model version runs with 10 numeric features (value drift and
missing rate each), a score, a label, two SLO burns, the error rate and the feedback
rate, fed in batches of 2,000 events (``--batch``) as the pipeline feeds them, with nothing else
(no decoding, no join). Printed: microseconds per event, and the share of the budget
of a worker meant to carry 150,000 events a second (6.7 us per event for everything).
River's ADWIN on the same 10 features is timed beside it, value by value, as a
yardstick.

A version's share of a pipeline batch is often much smaller than 2,000 events (several
models, a sample rate): ``--batch 200`` shows what a detector's fixed cost per call
does then.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from monitor.config import load_settings
from monitor.model_state import DetectorFactory

EVENTS = 400_000
BATCH = 2_000
FEATURES = 10
BUDGET_US = 1e6 / 150_000


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=BATCH, help=f"events per call (default {BATCH:,})")
    batch = parser.parse_args().batch
    rng = np.random.default_rng(0)
    factory = DetectorFactory(load_settings(environ={}))
    streams = {
        **{f"x{i}": (factory.numeric(), rng.normal(0, 1, EVENTS)) for i in range(FEATURES)},
        **{f"missing x{i}": (factory.rate(), (rng.random(EVENTS) < 0.01).astype(float)) for i in range(FEATURES)},
        "prediction.score": (factory.numeric(), rng.random(EVENTS)),
        "prediction.label": (factory.categorical(), rng.integers(0, 2, EVENTS).astype(float)),
        "latency slo": (factory.latency_slo(), (rng.random(EVENTS) < 0.005).astype(float)),
        "availability slo": (factory.availability_slo(), (rng.random(EVENTS) < 0.0005).astype(float)),
        "error rate (a label on 1 event in 4)": (factory.error_rate(), (rng.random(EVENTS // 4) < 0.15).astype(float)),
        "negative feedback": (factory.rate(), (rng.random(EVENTS) < 0.02).astype(float)),
    }
    for detector, _ in streams.values():
        detector.set_false_alarm_rate(1e-6 / len(streams))
    print(f"{EVENTS:,} events of one model version, batches of {batch:,}; "
          f"python -m benchmarks.detection.cost --batch {batch}\n")
    print("| detector | us per event |")
    print("|---|---|")
    total = features = 0.0
    for name, (detector, values) in streams.items():
        step = max(1, batch * len(values) // EVENTS)
        started = time.perf_counter()
        for i in range(0, len(values), step):
            detector.update_many(values[i:i + step])
        us = (time.perf_counter() - started) / EVENTS * 1e6
        total += us
        if name.startswith("x"):
            features += us
        print(f"| {name} | {us:.3f} |")
    print(f"| **all of them** | **{total:.2f}** ({total / BUDGET_US:.0%} of the {BUDGET_US:.1f} us budget) |")
    from river import drift  # noqa: PLC0415 - the yardstick only

    adwins = [drift.ADWIN() for _ in range(FEATURES)]
    sample = 50_000
    values = rng.normal(0, 1, (sample, FEATURES))
    started = time.perf_counter()
    for row in values.tolist():
        for adwin, x in zip(adwins, row, strict=True):
            adwin.update(x)
    us = (time.perf_counter() - started) / sample * 1e6
    print(f"\nriver ADWIN on the {FEATURES} features, value by value: {us:.2f} us per event "
          f"(our drift tests on the same features: {features:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
