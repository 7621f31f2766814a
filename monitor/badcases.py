"""``monitor badcases``: the stored bad cases, grouped, ranked, filtered and printed.

Reading is where groups and priorities are worked out (``retrain.badcases``): a
case's category was given when it was flagged, and ``--recategorise`` gives it again
under the rules configured now.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

import orjson

from common.errors import ConfigError
from monitor.config import Settings
from monitor.report import Report, build_report, render_html
from retrain.badcases import BADCASE_KINDS, BAND_MEANING, Case, Facts, RuleSet, representatives
from retrain.datasets import load_ranked
from retrain.store import SampleStore

FORMATS = ("table", "jsonl", "csv", "markdown")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, *, now: float, what: str = "time") -> float:
    """A point in time from the command line: epoch seconds, an ISO date or date-time
    (UTC unless it has an offset), or an age such as ``7d``, ``12h``, ``30m``.

    >>> parse_time("1764460800", now=0)
    1764460800.0
    >>> parse_time("2025-11-30", now=0)
    1764460800.0
    >>> parse_time("2d", now=1764460800.0)
    1764288000.0
    >>> parse_time("last week", now=0, what="--since")
    Traceback (most recent call last):
    ...
    common.errors.ConfigError: --since 'last week' is not a time: ...
    """
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        return now - float(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ConfigError(f"{what} {text!r} is not a time: it must be a finite number of seconds")
        return number
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a time: give epoch seconds, a date (2026-11-30), a date-time "
                          "(2026-11-30T08:00:00+08:00) or an age (7d, 12h, 30m)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def parse_segment(items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` filters (values compared as text).

    >>> parse_segment(["region=east", "new_user=true"])
    {'region': 'east', 'new_user': 'true'}
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--segment {item!r} must be KEY=VALUE, e.g. --segment region=east")
        out[key] = value
    return out


@dataclass
class Selection:
    """Which bad cases to show."""

    models: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    segment: dict[str, str] = field(default_factory=dict)
    since: float | None = None
    until: float | None = None

    def keeps(self, case: Case) -> bool:
        return ((not self.versions or (case.model_version or "") in self.versions)
                and (not self.categories or case.category in self.categories)
                and all(case.segment.get(k) == v for k, v in self.segment.items())
                and (self.since is None or case.event_ts >= self.since)
                and (self.until is None or case.event_ts < self.until))


def rules_of(settings: Settings) -> RuleSet:
    return RuleSet.compile(settings.badcases.rules, settings.slo.latency_threshold_ms)


def load_cases(store: SampleStore, settings: Settings, selection: Selection,
               load_since: float | None = None) -> list[Case]:
    """The selected bad cases, grouped and ranked, highest priority first.

    Groups and priorities are worked out over every stored case of the selected
    models up to ``until`` (so a filter does not change a case's group or score); the
    periods of the priority end at ``until``, or at the newest case.
    """
    b = settings.badcases
    cases = load_ranked(store, rules_of(settings), b.weights(), b.duplicate_threshold, selection.models or None,
                        selection.until, load_since)
    return [c for c in cases if selection.keeps(c)]


def recategorise(store: SampleStore, settings: Settings, models: Sequence[str] = ()) -> Counter[tuple[str, str]]:
    """Apply the configured rules again to every stored bad case; return the moves
    (old category, new category) by count."""
    rules = rules_of(settings)
    moves: Counter[tuple[str, str]] = Counter()
    changed: dict[int, str] = {}
    for row in store.badcase_rows(models=list(models) or None, reasons=BADCASE_KINDS):
        new = rules.categorise(Facts.of(row["reason"], row["payload"] or {}))
        if new != row["category"]:
            changed[row["id"]] = new
            moves[(row["category"] or "(none)", new)] += 1
    store.set_categories(changed)
    return moves


# -- output ---------------------------------------------------------------------------------
def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _segment(case: Case) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(case.segment.items())) or "-"


def _one_line(text: str | None, width: int | None = None) -> str:
    flat = " ".join((text or "").split())
    if width is not None and len(flat) > width:
        return flat[: width - 1] + "…"
    return flat


CSV_COLUMNS = ("priority", "score", "category", "kind", "reason", "model", "model_version", "segment", "event_ts",
               "time", "latency_ms", "status", "active_alerts", "group_id", "group_size", "event_id", "comment")


def write(cases: Sequence[Case], fmt: str, out: IO[str], *, grouped: bool = False, explain: bool = False) -> None:
    """Print cases in one of ``FORMATS``; ``grouped``: one line per near-duplicate group."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "jsonl":
        for case in cases:
            # Keys sorted: the same bytes from SQLite and PostgreSQL (JSONB orders keys its own way).
            out.write(orjson.dumps(case.record(), option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS).decode()
                      + "\n")
            if explain:
                out.write(orjson.dumps({"event_id": case.event_id, "explain": {
                    name: {"points": round(p, 2), "of": w, "why": why} for name, (p, w, why) in case.parts.items()
                }}).decode() + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for c in cases:
            writer.writerow([_cell(v) for v in (
                c.priority, f"{c.score:.1f}", c.category, c.kind, c.reason or "", c.model, c.model_version or "",
                _segment(c), f"{c.event_ts:.3f}", _when(c.event_ts), "" if c.latency_ms is None else c.latency_ms,
                c.status or "", " ".join(c.active_alerts), c.group_id, c.group_size, c.event_id,
                _one_line(c.comment))])
        return
    header = ("prio", "score", "category", "kind", "model", "version", "segment", "when (UTC)",
              "group" if grouped else "dups", "comment")
    rows = [(c.priority, f"{c.score:.1f}", c.category, c.kind, c.model, c.model_version or "-", _segment(c),
             _when(c.event_ts), str(c.group_size), _one_line(c.comment, 60 if fmt == "table" else None) or "-")
            for c in cases]
    if fmt == "markdown":
        out.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
        for row in rows:
            out.write("| " + " | ".join(v.replace("|", "\\|") for v in row) + " |\n")
    else:
        widths = [max([len(h), *(_width(r[i]) for r in rows)]) for i, h in enumerate(header)]
        out.write("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip() + "\n")
        for row in rows:
            out.write("  ".join(_pad(v, w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    if explain:
        out.write("\n")
        for c in cases:
            out.write(c.explain() + "\n")


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: what users wrote may start like a
    formula (``=HYPERLINK(...)``), which a spreadsheet would run.

    >>> _cell("=HYPERLINK(1)"), _cell("-1"), _cell(3.5), _cell("fine")
    ("'=HYPERLINK(1)", "'-1", 3.5, 'fine')
    """
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _width(text: str) -> int:
    """Columns a string takes in a terminal: East Asian wide characters take two."""
    import unicodedata  # noqa: PLC0415

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def summary(cases: Sequence[Case]) -> str:
    """One line: how many cases and groups, by band."""
    bands = Counter(c.priority for c in cases)
    groups = len({c.group_id for c in cases})
    by_band = ", ".join(f"{b} {bands[b]} ({BAND_MEANING[b]})" for b in ("P0", "P1", "P2", "P3") if bands[b])
    return f"{len(cases):,} bad cases in {groups:,} groups" + (f": {by_band}" if by_band else "")


def select_output(cases: list[Case], *, grouped: bool, limit: int | None) -> list[Case]:
    shown = representatives(cases) if grouped else cases
    return shown[:limit] if limit is not None else shown


def to_text(cases: Sequence[Case], fmt: str, **kwargs: bool) -> str:
    buffer = io.StringIO()
    write(cases, fmt, buffer, **kwargs)
    return buffer.getvalue()


def report(store: SampleStore, settings: Settings, selection: Selection, *, generated_at: float | None = None,
           title: str = "model-monitor: bad cases", load_since: float | None = None) -> Report:
    """The report of the selected bad cases; the trends also count the cases before ``since``.

    Groups and priorities are worked out over the cases from ``load_since`` (all by
    default, as ``monitor badcases`` does, so both show the same groups)."""
    period_s = settings.badcases.period_days * 86400
    earlier = Selection(models=selection.models, versions=selection.versions, categories=selection.categories,
                        segment=selection.segment, since=None, until=selection.until)
    cases = [c.record() for c in load_cases(store, settings, earlier, load_since)]
    return build_report(cases, title=title, since=selection.since, until=selection.until,
                        period_s=period_s, generated_at=generated_at)


class ReportPage:
    """``/report`` of the daemon: the HTML report of the bad cases of the last two periods
    (``badcases.period_days``, by event time, up to the newest case), built at most every
    ``ttl_s`` (a page that many people reload must not read the store each time; a store
    that keeps months of cases must not be read whole)."""

    def __init__(self, store: Callable[[], SampleStore | None], settings: Settings, ttl_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._page: tuple[float, bytes] | None = None

    def __call__(self) -> tuple[bytes, str]:
        with self._lock:
            now = self.clock()
            if self._page is None or now - self._page[0] >= self.ttl_s:
                store = self.store()
                if store is None:
                    raise RuntimeError("the store is not open yet")
                newest = store.newest_badcase_ts(BADCASE_KINDS)
                period_s = self.settings.badcases.period_days * 86400
                since = None if newest is None else newest - 2 * period_s
                page = render_html(report(store, self.settings, Selection(since=since), generated_at=time.time(),
                                          load_since=None if since is None else since - period_s))
                self._page = (now, page.encode())
            return self._page[1], "text/html; charset=utf-8"
