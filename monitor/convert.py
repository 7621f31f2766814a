"""``monitor convert IN OUT``: JSON lines to an Arrow IPC stream file and back, by extension.

``.jsonl`` is one JSON event per line; ``.arrow`` an Arrow IPC stream of events in the
layout of ``collectors.arrow`` (what the producer helper sends). Events come back equal
to what went in (floats, nulls, nested features, booleans). A line that is not a JSON
object (not JSON, an array, blank) cannot be a row: it is skipped and counted, so the
events after it take a position one earlier than in the JSON file.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa

from collectors.arrow import NON_FINITE, SchemaBuilder, events_to_batch, rows_of
from common.errors import InputError, OutputError
from monitor.files import check_writable_file
from monitor.replay import open_arrow

EXTENSIONS = (".jsonl", ".arrow")
#: Rows per record batch of a converted file.
ROWS_PER_BATCH = 10_000


@dataclass
class ConvertSummary:
    events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def describe(self, src: str, dst: str) -> str:
        text = f"converted {self.events:,} events from {src} to {dst} in {self.seconds:.2f}s"
        if self.skipped:
            text += (f"; skipped {sum(self.skipped.values()):,} lines that cannot be Arrow rows ("
                     + ", ".join(f"{k} {v:,}" for k, v in self.skipped.most_common())
                     + "): the events after them take earlier positions")
        return text


def _kind(path: str, what: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise InputError(f"{what} {path}: the extension must be .jsonl (JSON lines) or .arrow (Arrow IPC stream), "
                         f"not {suffix or 'none'}")
    return suffix


def _parsed(lines: IO[bytes], skipped: Counter[str] | None) -> Iterator[dict[str, Any]]:
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            reason = "blank"
        else:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                reason = "not JSON"
            else:
                if type(obj) is dict:
                    yield obj
                    continue
                reason = "not a JSON object"
        if skipped is not None:
            skipped[reason] += 1


class _Progress:
    def __init__(self, out: IO[str] | None, every_s: float = 2.0) -> None:
        self.out, self.every_s = out, every_s
        self.started = self.last = time.perf_counter()

    def __call__(self, done: int, what: str) -> None:
        now = time.perf_counter()
        if self.out is not None and now - self.last >= self.every_s:
            self.last = now
            self.out.write(f"  {done:,} {what}, {done / (now - self.started):,.0f}/s\n")
            self.out.flush()


def convert(src: str, dst: str, progress: IO[str] | None = sys.stderr) -> ConvertSummary:
    """Convert ``src`` to ``dst`` (each ``.jsonl`` or ``.arrow``); write ``dst`` whole or not at all."""
    kinds = _kind(src, "IN"), _kind(dst, "OUT")
    if kinds[0] == kinds[1]:
        raise InputError(f"IN and OUT are both {kinds[0]} files: convert goes from .jsonl to .arrow or back")
    if Path(src).resolve() == Path(dst).resolve():
        raise InputError("IN and OUT are the same file")
    check_writable_file(dst, "OUT", InputError)
    target = Path(dst)
    summary = ConvertSummary()
    started = time.perf_counter()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tick = _Progress(progress)
    try:
        if kinds[0] == ".jsonl":
            _to_arrow(src, tmp, summary, tick)
        else:
            _to_jsonl(src, tmp, summary, tick)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - started
    return summary


def _open(src: str) -> IO[bytes]:
    try:
        return open(src, "rb")
    except OSError as exc:
        raise InputError(f"cannot read {src}: {exc.strerror}") from None


def _to_arrow(src: str, tmp: Path, summary: ConvertSummary, tick: _Progress) -> None:
    builder = SchemaBuilder()
    with _open(src) as lines:  # first pass: one schema for the whole file
        for n, event in enumerate(_parsed(lines, summary.skipped)):
            builder.observe(event)
            if n % 10_000 == 0:
                tick(n, "lines read for the schema")
    schema = builder.schema()
    with _open(src) as lines, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for event in _parsed(lines, None):
            chunk.append(event)
            if len(chunk) >= ROWS_PER_BATCH:
                writer.write_batch(events_to_batch(chunk, schema))
                summary.events += len(chunk)
                chunk = []
                tick(summary.events, "events written")
        if chunk or summary.events == 0:
            writer.write_batch(events_to_batch(chunk, schema))
            summary.events += len(chunk)


def _to_jsonl(src: str, tmp: Path, summary: ConvertSummary, tick: _Progress) -> None:
    batches = open_arrow(src)
    dumps = orjson.dumps
    with open(tmp, "wb") as out:
        for batch in batches:
            rows = rows_of(batch)
            for row in rows:
                row.pop(NON_FINITE, None)  # NaN and infinities become null, as JSON has neither
            out.write(b"".join(dumps(row) + b"\n" for row in rows))
            summary.events += len(rows)
            tick(summary.events, "events written")
