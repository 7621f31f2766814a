"""``monitor replay``: the pipeline over a file of events, no Kafka.

Each line is one message, exactly as it would be on a topic; ``at_event`` of an alert
is its 0-based line index. A ``.arrow`` file (an Arrow IPC stream of events, see
``collectors.arrow``) is read row by row: each row takes the position its JSON line
would, so the same events give the same alerts either way. The alerts are the ones the daemon raises on the same
messages in the same order (the pipeline is the same and decides nothing by the
wall clock), which makes a replay a backtest, an evaluation run or an incident
post-mortem.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

import pyarrow as pa
from prometheus_client.exposition import generate_latest

from collectors.arrow import ARROW, MAX_ROWS, ArrowInputError, encode_batch, read_file
from collectors.contract import RawMessage
from common.errors import ConfigError, InputError, OutputError
from monitor import __version__
from monitor.config import Settings
from monitor.metrics import Metrics
from monitor.pipeline import BatchResult, Pipeline
from monitor.sinks import AlertFile, EffectSink, Observer, Store, run_chain
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

    def add(self, result: BatchResult) -> None:
        """Count one batch's effects in."""
        self.lines += result.rows
        self.events += result.events
        self.samples += len(result.samples)
        self.dead_letters.update(d.reason for d in result.dead_letters)
        self.alerts.update(a.kind for a in result.alerts)

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


def is_arrow_path(path: str) -> bool:
    return path != "-" and Path(path).suffix.lower() == ".arrow"


def open_arrow(path: str) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow IPC stream file; ``InputError`` if it is not one."""
    try:
        batches = read_file(path)
        first = next(batches, None)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ArrowInputError as exc:
        raise InputError(f"{path}: {exc.detail}") from None
    except pa.ArrowException as exc:
        raise InputError(f"{path} is not an Arrow IPC stream file: {str(exc)[:200]}") from None

    def rest() -> Iterator[pa.RecordBatch]:
        if first is None:
            return
        yield first
        try:
            yield from batches
        except pa.ArrowException as exc:
            raise InputError(f"{path}: unreadable after a readable start: {str(exc)[:200]}") from None
    return rest()


def arrow_messages(batches: Iterator[pa.RecordBatch], batch_size: int, source: str,
                   max_message_bytes: int) -> Iterator[list[RawMessage]]:
    """Batches of Arrow messages of about ``batch_size`` rows in all, each message small
    enough to be one on a topic; the offset is the index of its first row in the file."""
    out: list[RawMessage] = []
    rows = first = 0

    def pieces(batch: pa.RecordBatch) -> Iterator[tuple[bytes, int]]:
        value = encode_batch(batch)
        if len(value) <= max_message_bytes or batch.num_rows == 1:
            yield value, batch.num_rows
            return
        half = batch.num_rows // 2
        yield from pieces(batch.slice(0, half))
        yield from pieces(batch.slice(half))

    for batch in batches:
        per_row = max(1, batch.nbytes // max(1, batch.num_rows))
        step = max(1, min(batch_size, MAX_ROWS, (max_message_bytes * 3 // 4) // per_row))
        for start in range(0, batch.num_rows, step):
            for value, n in pieces(batch.slice(start, step)):
                out.append(RawMessage(source, 0, first, None, value, 0, ARROW))
                first += n
                rows += n
            if rows >= batch_size:
                yield out
                out, rows = [], 0
    if out:
        yield out


def replay(path: str, settings: Settings, alerts_out: IO[bytes], *, store_url: str | None = None,
           batch_size: int = 5000, metrics_out: str | None = None,
           progress: IO[str] | None = sys.stderr, progress_every_s: float = 2.0,
           sinks: Sequence[EffectSink] = ()) -> ReplaySummary:
    """Run the pipeline over ``path`` (``-`` for stdin); write alerts as JSON lines.

    Each batch's effects go through a chain of sinks (``monitor.sinks``): the store (with
    ``store_url``), the alert file, then ``sinks``, then the summary.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    arrow = open_arrow(path) if is_arrow_path(path) else None  # before the store is created, too
    try:  # before the store is created: a wrong path must leave nothing behind
        stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    messages = (read_messages(stream, batch_size, Path(path).name) if arrow is None else
                arrow_messages(arrow, batch_size, Path(path).name, settings.collect.max_message_bytes))
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
    chain: list[EffectSink] = [Store(store)] if store is not None else []
    chain += [AlertFile(alerts_out), *sinks, Observer(summary.add, "summary")]

    async def run() -> None:
        nonlocal last_report
        for batch in messages:
            await run_chain(chain, pipeline.process(batch))
            now = time.perf_counter()
            if progress is not None and now - last_report >= progress_every_s:
                last_report = now
                progress.write(f"  {summary.lines:,} lines, {summary.lines / (now - started):,.0f}/s, "
                               f"{sum(summary.alerts.values())} alerts\n")
                progress.flush()
        # Feedback still waiting: a replay has no next run to hand it to.
        await run_chain(chain, pipeline.drain())

    try:
        asyncio.run(run())  # one event loop for the whole file: the sinks are coroutines
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
