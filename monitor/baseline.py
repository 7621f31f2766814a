"""``monitor baseline``: reference distributions from a file (the training set, a good week).

Without a baseline a model version's detectors take their first values as the
reference (a warm-up), so a version that is drifted from the start looks normal. A
baseline built from the data the model was trained on fixes the reference instead:
drift is measured against training from the first event.

The file holds events in the contract (prediction events with ``features`` and, if
you have them, ``prediction``); for every (model, version) and field a uniform
sample of ``detect.reference_size`` values is kept (reservoir sampling, seeded, so
the same file gives the same baseline) and stored. The daemon and ``monitor replay
--store`` load them at start-up; a version with no baseline warms up as before.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

from collectors.decode import Decoder, Limits
from common.errors import InputError
from monitor.config import Settings
from monitor.replay import read_messages


class Reservoir:
    """A uniform sample of at most ``size`` of the values offered (Vitter's algorithm R).

    >>> r = Reservoir(3, random.Random(1))
    >>> for v in range(100): r.offer(v)
    >>> r.seen, len(r.values)
    (100, 3)
    """

    __slots__ = ("rng", "seen", "size", "values")

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.rng = rng
        self.seen = 0
        self.values: list[Any] = []

    def offer(self, value: Any) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            slot = self.rng.randrange(self.seen)
            if slot < self.size:
                self.values[slot] = value


@dataclass
class BaselineSummary:
    lines: int = 0
    predictions: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    baselines: dict[tuple[str, str], dict[str, tuple[int, list[Any]]]] = field(default_factory=dict)

    def describe(self) -> str:
        out = [f"read {self.lines:,} lines in {self.seconds:.1f}s: {self.predictions:,} predictions"
               + (f", {sum(self.skipped.values()):,} skipped ("
                  + ", ".join(f"{k} {v}" for k, v in self.skipped.most_common()) + ")" if self.skipped else "")]
        for (model, version), features in sorted(self.baselines.items()):
            rows = max((seen for seen, _ in features.values()), default=0)
            out.append(f"  {model} {version or '(no version)'}: {len(features)} fields, up to {rows:,} values each")
        return "\n".join(out)


def build(path: str, settings: Settings, progress: IO[str] | None = sys.stderr, seed: int = 0) -> BaselineSummary:
    """Sample every field of every (model, version) in the file."""
    c = settings.collect
    decoder = Decoder(Limits(c.max_message_bytes, c.max_features, c.max_string_length, c.max_depth,
                             c.max_future_skew_s))
    size = settings.detect.reference_size
    rng = random.Random(seed)
    samples: dict[tuple[str, str], dict[str, Reservoir]] = {}
    summary = BaselineSummary()
    started = last = time.perf_counter()
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        now = time.time()
        for batch in read_messages(stream, 10_000):
            for message in batch:
                summary.lines += 1
                event, reason, _ = decoder.decode(message.value, now)
                if event is None or event["type"] != "prediction":
                    summary.skipped[f"{event['type']} events" if event else str(reason)] += 1
                    continue
                summary.predictions += 1
                fields = samples.setdefault((event["model"], event.get("model_version") or ""), {})
                for name, value in (event.get("features") or {}).items():
                    if value is not None:
                        fields.setdefault(name, Reservoir(size, rng)).offer(value)
                for name, value in (event.get("prediction") or {}).items():
                    if value is not None:
                        fields.setdefault(f"prediction.{name}", Reservoir(size, rng)).offer(value)
            if progress is not None and time.perf_counter() - last > 2.0:
                last = time.perf_counter()
                progress.write(f"  {summary.lines:,} lines\n")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    summary.baselines = {key: {name: (r.seen, r.values) for name, r in fields.items()}
                         for key, fields in samples.items()}
    summary.seconds = time.perf_counter() - started
    return summary
