"""``monitor replay``: the pipeline over a file of events, no Kafka.

Each line is one message, exactly as it would be on a topic; ``at_event`` of an alert
is its 0-based line index. The alerts are the ones the daemon raises on the same
messages in the same order (the pipeline is the same and decides nothing by the
wall clock), which makes a replay a backtest, an evaluation run or an incident
post-mortem.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

import orjson
from prometheus_client.exposition import generate_latest

from collectors.contract import RawMessage
from collectors.errors import ConfigError, InputError, OutputError
from monitor import __version__
from monitor.config import Settings
from monitor.metrics import Metrics
from monitor.pipeline import BatchResult, Pipeline
from retrain.store import SampleStore


@dataclass
class ReplaySummary:
    """What a replay read and found."""

    lines: int = 0
    events: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    samples: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        rate = self.lines / self.seconds if self.seconds else 0.0
        lines = [f"read {self.lines:,} lines in {self.seconds:.2f}s ({rate:,.0f}/s): "
                 f"{self.events:,} valid events, {sum(self.dead_letters.values()):,} bad input"]
        if self.dead_letters:
            lines.append("  bad input by reason: " + ", ".join(f"{k} {v}" for k, v in self.dead_letters.most_common()))
        lines.append(f"  alerts: {sum(self.alerts.values())}"
                     + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(self.alerts.items())) + ")"
                        if self.alerts else ""))
        lines.append(f"  flagged samples: {self.samples:,}")
        return "\n".join(lines)


def read_messages(stream: BinaryIO, batch_size: int, source: str = "file") -> Iterator[list[RawMessage]]:
    """Batches of lines as messages; the offset is the line index."""
    batch: list[RawMessage] = []
    for index, line in enumerate(stream):
        batch.append(RawMessage(source, 0, index, None, line.rstrip(b"\r\n")))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def replay(path: str, settings: Settings, alerts_out: IO[bytes], *, store_url: str | None = None,
           batch_size: int = 5000, metrics_out: str | None = None,
           progress: IO[str] | None = sys.stderr, progress_every_s: float = 2.0) -> ReplaySummary:
    """Run the pipeline over ``path`` (``-`` for stdin); write alerts as JSON lines."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    try:  # before the store is created: a wrong path must leave nothing behind
        stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    metrics = Metrics(__version__)
    try:
        store = SampleStore(store_url) if store_url else None
    except BaseException:
        if stream is not sys.stdin.buffer:
            stream.close()
        raise
    pipeline = Pipeline(settings, metrics, baselines=store.baselines() if store else None)
    summary = ReplaySummary()
    started = last_report = time.perf_counter()
    def record(result: BatchResult) -> None:
        summary.lines += result.messages
        summary.events += result.events
        summary.samples += len(result.samples)
        summary.dead_letters.update(d.reason for d in result.dead_letters)
        summary.alerts.update(a.kind for a in result.alerts)
        if store is not None:
            store.put(result.samples, result.alerts, result.traffic)
        for alert in result.alerts:
            alerts_out.write(orjson.dumps(alert.to_dict()) + b"\n")

    try:
        for batch in read_messages(stream, batch_size, Path(path).name):
            record(pipeline.process(batch))
            now = time.perf_counter()
            if progress is not None and now - last_report >= progress_every_s:
                last_report = now
                progress.write(f"  {summary.lines:,} lines, {summary.lines / (now - started):,.0f}/s, "
                               f"{sum(summary.alerts.values())} alerts\n")
                progress.flush()
        record(pipeline.drain())  # feedback still waiting: a replay has no next run to hand it to
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        if store is not None:
            store.close()
    alerts_out.flush()
    summary.seconds = time.perf_counter() - started
    if metrics_out:
        try:
            Path(metrics_out).write_bytes(generate_latest(metrics.registry()))
        except OSError as exc:  # the caller checked it first; it may have gone since
            raise OutputError(f"cannot write {metrics_out}: {exc.strerror}") from None
    return summary
