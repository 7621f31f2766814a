"""The bad-case report: aggregates over case records, rendered as HTML or Markdown.

A pure renderer: :func:`build_report` takes the records ``monitor badcases --format
jsonl`` prints (one dict per bad case) and computes every number the page shows; the
renderers only lay them out. Nothing here reads a clock, a file or the network, so the
same cases always give the same page.

The HTML page is self-contained (inline CSS, charts as inline SVG drawn here, no
script, font or image from elsewhere) and carries each charted number in the DOM
(``data-count`` attributes), so that tests and tools can read what a chart shows.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["BANDS", "Report", "Trend", "build_report", "render_html", "render_markdown"]

#: Priority bands, most urgent first, and what each asks of the model's owner.
BANDS: tuple[str, ...] = ("P0", "P1", "P2", "P3")
BAND_MEANING: Mapping[str, str] = {"P0": "fix this week", "P1": "fix this month", "P2": "plan it", "P3": "backlog"}
BAND_COLOURS: Mapping[str, str] = {"P0": "#b91c1c", "P1": "#c2410c", "P2": "#a16207", "P3": "#4b5563"}

#: A fixed colour per known category (each at least 3:1 against white), then colours
#: for categories the rules may add, handed out in name order.
CATEGORY_COLOURS: Mapping[str, str] = {
    "wrong_answer": "#2563eb",
    "irrelevant": "#d97706",
    "harmful": "#b91c1c",
    "failure": "#7c3aed",
    "slow": "#0e7490",
    "stale": "#4d7c0f",
    "drifted_input": "#db2777",
    "uncategorised": "#6b7280",
}
EXTRA_COLOURS: tuple[str, ...] = ("#92400e", "#1e3a8a", "#16a34a", "#a21caf", "#111827", "#0891b2")

HOUR, DAY = 3600.0, 86400.0
#: Data spanning at most this long is bucketed per hour, longer per day.
HOURLY_SPAN_S = 3 * DAY
#: Comments longer than this are cut (with an ellipsis) in the examples.
COMMENT_CHARS = 600


@dataclass(frozen=True)
class Trend:
    """Cases in the period before and in the latest period, and their ratio.

    >>> Trend(previous=12, current=30).text()
    '12 → 30 (2.5x)'
    >>> Trend(previous=0, current=4).text()
    '0 → 4 (new)'
    """

    previous: int
    current: int

    @property
    def ratio(self) -> float | None:
        """``current / previous``; ``None`` when there were none before."""
        return self.current / self.previous if self.previous else None

    def text(self) -> str:
        ratio = self.ratio
        if ratio is None:
            suffix = " (new)" if self.current else ""
        else:
            suffix = f" ({ratio:.0f}x)" if ratio >= 10 or ratio == 0 else f" ({ratio:.1f}x)"
        return f"{self.previous} → {self.current}{suffix}"

    def arrow(self) -> str:
        """▲ more cases than the period before, ▼ fewer, ＝ as many."""
        return "▲" if self.current > self.previous else "▼" if self.current < self.previous else "＝"


@dataclass(frozen=True)
class CategoryRow:
    """One category: its cases, share of all cases, trend, and count per time bucket."""

    category: str
    count: int
    share: float
    trend: Trend
    series: tuple[int, ...]


@dataclass(frozen=True)
class Bucket:
    """One hour or day (UTC) of the time chart; ``counts`` by category, zeros left out."""

    start: float
    label: str
    counts: tuple[tuple[str, int], ...]
    total: int


@dataclass(frozen=True)
class BreakdownRow:
    """Cases of one segment value (``region=east``) or model version (``recsys v12``), by category."""

    label: str
    total: int
    counts: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class PriorityRow:
    """One model and category: cases, near-duplicate groups, count per band, best band, share, trend."""

    model: str
    category: str
    cases: int
    groups: int
    bands: tuple[int, int, int, int]
    best: str
    share: float
    trend: Trend


@dataclass(frozen=True)
class Example:
    """The highest-scored case of one near-duplicate group, as the examples show it."""

    event_id: str
    model: str
    model_version: str | None
    category: str
    kind: str
    reason: str | None
    comment: str | None
    value: Any
    priority: str
    score: float
    segment: tuple[tuple[str, str], ...]
    event_ts: float
    group_id: str
    group_size: int
    status: str | None
    latency_ms: float | None
    active_alerts: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """Everything the report shows, computed once by :func:`build_report`."""

    title: str
    generated_at: float | None
    since: float | None
    until: float | None
    first_ts: float | None
    last_ts: float | None
    total: int
    groups: int
    models: tuple[str, ...]
    bands: tuple[tuple[str, int], ...]
    kinds: tuple[tuple[str, int], ...]
    categories: tuple[CategoryRow, ...]
    bucket: str
    buckets: tuple[Bucket, ...]
    segments: tuple[BreakdownRow, ...]
    versions: tuple[BreakdownRow, ...]
    period_s: float
    period_end: float | None
    trend_partial: bool
    priorities: tuple[PriorityRow, ...]
    examples: tuple[tuple[str, tuple[Example, ...]], ...]

    def colour(self, category: str) -> str:
        """The category's colour: fixed for known categories, else by its place among the others."""
        if category in CATEGORY_COLOURS:
            return CATEGORY_COLOURS[category]
        others = sorted(row.category for row in self.categories if row.category not in CATEGORY_COLOURS)
        index = others.index(category) if category in others else 0
        return EXTRA_COLOURS[index % len(EXTRA_COLOURS)]


def _text(value: Any) -> str:
    """A segment value as text, JSON-style for booleans and null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def version_label(model: str, version: str | None) -> str:
    """``recsys v12`` for version ``v12`` or ``12``; ``recsys (no version)`` without one.

    >>> version_label("recsys", "12"), version_label("recsys", "v12"), version_label("m", None)
    ('recsys v12', 'recsys v12', 'm (no version)')
    """
    if version is None or version == "":
        return f"{model} (no version)"
    return f"{model} {version}" if re.match(r"[vV]\d", version) else f"{model} v{version}"


def _bucket_label(start: float, bucket: str) -> str:
    moment = datetime.fromtimestamp(start, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:00Z") if bucket == "hour" else moment.strftime("%Y-%m-%d")


def _ordered_counts(counter: Mapping[str, int], order: Sequence[str]) -> tuple[tuple[str, int], ...]:
    return tuple((name, counter[name]) for name in order if counter.get(name))


def build_report(cases: Sequence[Mapping[str, Any]], *, title: str = "model-monitor: bad cases",
                 since: float | None = None, until: float | None = None, period_s: float = 7 * 86400,
                 generated_at: float | None = None, examples_per_category: int = 5) -> Report:
    """Aggregate bad-case records (as ``monitor badcases --format jsonl`` prints them).

    Cases after ``until`` are left out; cases before ``since`` count only in the trends.
    A trend compares the ``period_s`` ending at ``until`` (else at the newest case) with
    the period before it, counting every case given up to ``until``: pass cases from
    before ``since`` to give the earlier period its cases. Time buckets are UTC hours
    when the cases shown span at most 3 days, else UTC days. A case's ``priority`` must
    be one of P0-P3 (else ``ValueError``). The result depends on the arguments alone
    (``generated_at`` is only shown).

    >>> r = build_report([{"event_id": "f-1", "model": "m", "category": "slow", "priority": "P1",
    ...                    "score": 60.0, "event_ts": 7200.5}])
    >>> r.total, r.bucket, r.buckets[0].label, r.categories[0].category, r.bands
    (1, 'hour', '1970-01-01T02:00Z', 'slow', (('P0', 0), ('P1', 1), ('P2', 0), ('P3', 0)))
    """
    if period_s <= 0:
        raise ValueError(f"period_s must be positive, not {period_s}")
    for case in cases:
        if case["priority"] not in BANDS:
            raise ValueError(f"bad case {case.get('event_id')!r}: priority {case['priority']!r} is not one of "
                             f"{', '.join(BANDS)}")
    upto = [c for c in cases if until is None or float(c["event_ts"]) <= until]
    shown = [c for c in upto if since is None or float(c["event_ts"]) >= since]
    total = len(shown)

    by_category = Counter(str(c["category"]) for c in shown)
    order = sorted(by_category, key=lambda name: (-by_category[name], name))
    times = [float(c["event_ts"]) for c in shown]
    first_ts, last_ts = (min(times), max(times)) if times else (None, None)

    # Time buckets, every hour/day between the first and the last case, empty ones too.
    bucket = "hour" if first_ts is None or last_ts is None or last_ts - first_ts <= HOURLY_SPAN_S else "day"
    width = HOUR if bucket == "hour" else DAY
    per_bucket: dict[float, Counter[str]] = defaultdict(Counter)
    for c in shown:
        per_bucket[math.floor(float(c["event_ts"]) / width) * width][str(c["category"])] += 1
    starts: list[float] = []
    if first_ts is not None and last_ts is not None:
        start = math.floor(first_ts / width) * width
        while start <= last_ts:
            starts.append(start)
            start += width
    buckets = tuple(Bucket(s, _bucket_label(s, bucket), _ordered_counts(per_bucket[s], order),
                           sum(per_bucket[s].values())) for s in starts)

    # Trend: the latest period against the one before, over every case up to `until`.
    period_end = until if until is not None else last_ts
    # The cases given may start well after the period before began (by more than a tenth of
    # a period): its count is then likely partial, and the page says so.
    earliest = min((float(c["event_ts"]) for c in upto), default=None)
    trend_partial = (period_end is not None and earliest is not None
                     and earliest > period_end - 2 * period_s + period_s / 10)

    def trend_of(selected: Iterable[Mapping[str, Any]]) -> Trend:
        if period_end is None:
            return Trend(0, 0)
        current = previous = 0
        for c in selected:
            age = period_end - float(c["event_ts"])
            if 0 <= age < period_s:
                current += 1
            elif period_s <= age < 2 * period_s:
                previous += 1
        return Trend(previous, current)

    upto_by_category: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in upto:
        upto_by_category[str(c["category"])].append(c)
    categories = tuple(
        CategoryRow(name, by_category[name], by_category[name] / total, trend_of(upto_by_category[name]),
                    tuple(per_bucket[s][name] for s in starts))
        for name in order)

    # Breakdowns by segment value and by model version.
    segment_counts: dict[str, Counter[str]] = defaultdict(Counter)
    version_counts: dict[str, Counter[str]] = defaultdict(Counter)
    for c in shown:
        for key, value in sorted((c.get("segment") or {}).items()):
            segment_counts[f"{key}={_text(value)}"][str(c["category"])] += 1
        version_counts[version_label(str(c["model"]), c.get("model_version"))][str(c["category"])] += 1

    def breakdown(counts: Mapping[str, Counter[str]]) -> tuple[BreakdownRow, ...]:
        rows = [BreakdownRow(label, sum(counter.values()), _ordered_counts(counter, order))
                for label, counter in counts.items()]
        return tuple(sorted(rows, key=lambda row: (-row.total, row.label)))

    # The priority table: one row per model and category, most urgent first.
    cells: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for c in shown:
        cells[(str(c["model"]), str(c["category"]))].append(c)
    upto_cells: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for c in upto:
        upto_cells[(str(c["model"]), str(c["category"]))].append(c)
    priorities = []
    for (model, category), members in cells.items():
        band_count = Counter(str(c["priority"]) for c in members)
        bands = (band_count["P0"], band_count["P1"], band_count["P2"], band_count["P3"])
        best = next(band for band in BANDS if band_count[band])
        priorities.append(PriorityRow(model, category, len(members), len({_group(c) for c in members}), bands,
                                      best, len(members) / total, trend_of(upto_cells[(model, category)])))
    priorities.sort(key=lambda r: (BANDS.index(r.best), -r.bands[BANDS.index(r.best)], -r.cases, r.model,
                                   r.category))

    # Examples: the best-scored case of each group, best groups first.
    examples = []
    for name in order:
        ranked = sorted((c for c in shown if str(c["category"]) == name),
                        key=lambda c: (-float(c["score"]), -float(c["event_ts"]), str(c["event_id"])))
        seen: set[str] = set()
        picked: list[Example] = []
        for c in ranked:
            if len(picked) >= examples_per_category:
                break
            if _group(c) not in seen:
                seen.add(_group(c))
                picked.append(_example(c))
        examples.append((name, tuple(picked)))

    band_totals = Counter(str(c["priority"]) for c in shown)
    kinds = Counter(str(c.get("kind")) for c in shown)
    return Report(
        title=title, generated_at=generated_at, since=since, until=until, first_ts=first_ts, last_ts=last_ts,
        total=total, groups=len({_group(c) for c in shown}), models=tuple(sorted({str(c["model"]) for c in shown})),
        bands=tuple((band, band_totals[band]) for band in BANDS),
        kinds=tuple(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        categories=categories, bucket=bucket, buckets=buckets, segments=breakdown(segment_counts),
        versions=breakdown(version_counts), period_s=period_s, period_end=period_end,
        trend_partial=trend_partial, priorities=tuple(priorities), examples=tuple(examples))


def _group(case: Mapping[str, Any]) -> str:
    return str(case.get("group_id") or case["event_id"])


def _example(c: Mapping[str, Any]) -> Example:
    version = c.get("model_version")
    latency = c.get("latency_ms")
    return Example(
        event_id=str(c["event_id"]), model=str(c["model"]), model_version=None if version is None else str(version),
        category=str(c["category"]), kind=str(c.get("kind")), reason=c.get("reason"), comment=c.get("comment"),
        value=c.get("value"), priority=str(c["priority"]), score=float(c["score"]),
        segment=tuple(sorted((str(k), _text(v)) for k, v in (c.get("segment") or {}).items())),
        event_ts=float(c["event_ts"]), group_id=_group(c), group_size=int(c.get("group_size") or 1),
        status=c.get("status"), latency_ms=None if latency is None else float(latency),
        active_alerts=tuple(str(a) for a in c.get("active_alerts") or ()))


# ---------------------------------------------------------------------------------------------
# Shared formatting


def _when(ts: float | None, seconds: bool = False) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _duration(seconds: float) -> str:
    """``7 d``, ``12 h``, ``90 s``."""
    if seconds % DAY == 0:
        return f"{seconds / DAY:.0f} d"
    if seconds % HOUR == 0:
        return f"{seconds / HOUR:.0f} h"
    return f"{seconds:g} s"


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%" if share >= 0.01 or share == 0 else "<1%"


def _value_text(value: Any, limit: int = 200) -> str:
    try:
        text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # not JSON (a huge int, an object): its repr will do
        text = repr(value)
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(report: Report) -> str:
    """One plain-text line: cases, groups, top categories, P0 count."""
    top = ", ".join(f"{row.category} {row.count} ({_percent(row.share)})" for row in report.categories[:3])
    p0 = dict(report.bands)["P0"]
    return (f"{report.total} bad cases in {report.groups} near-duplicate groups; top categories: {top}; "
            f"{p0} P0 ({BAND_MEANING['P0']})")


def _window(report: Report) -> str:
    start = report.since if report.since is not None else report.first_ts
    end = report.until if report.until is not None else report.last_ts
    return f"{_when(start)} to {_when(end)} UTC"


# ---------------------------------------------------------------------------------------------
# HTML

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #111827;
       font-family: "DejaVu Sans", "Helvetica Neue", Arial, "Noto Sans CJK SC", sans-serif; font-size: 14px;
       line-height: 1.45; }
main { max-width: 1220px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 0 0 4px; }
h3 { font-size: 15px; margin: 18px 0 8px; display: flex; align-items: center; gap: 8px; }
p { margin: 4px 0; }
.summary { font-size: 16px; }
.meta, .note { color: #4b5563; font-size: 12.5px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 16px 18px; margin-top: 16px; }
.tiles { display: flex; gap: 12px; margin-top: 16px; flex-wrap: wrap; }
.tile { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 16px; min-width: 130px; }
.tile .n { font-size: 26px; font-weight: 700; display: block; }
.tile .l { color: #4b5563; font-size: 12.5px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 8px 0 4px; font-size: 12.5px; }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px; flex: none; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.cols > .card { margin-top: 16px; min-width: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e5e7eb; vertical-align: middle; }
th { font-size: 12px; color: #4b5563; font-weight: 600; background: #f9fafb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; color: #fff; border-radius: 4px; padding: 0 6px; font-weight: 700; font-size: 12px; }
.up { color: #b91c1c; } .down { color: #15803d; } .flat { color: #4b5563; }
.ex { border-top: 1px solid #e5e7eb; padding: 8px 0; }
.ex .head { font-size: 12.5px; color: #374151; display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: center; }
.ex .comment { margin: 4px 0 0; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 14px; }
.ex .nocomment { color: #6b7280; font-style: italic; }
.dup { background: #eef2ff; color: #3730a3; border-radius: 4px; padding: 0 6px; font-size: 12px; }
svg text { font-family: inherit; fill: #374151; }
.empty { font-size: 18px; padding: 40px 0; text-align: center; color: #374151; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _nice_max(value: int) -> tuple[int, int]:
    """An axis top at or above ``value`` and its tick step (1, 2 or 5 times a power of ten), at most 6 steps.

    >>> _nice_max(42), _nice_max(40), _nice_max(3), _nice_max(0)
    ((50, 10), (40, 10), (3, 1), (1, 1))
    """
    value = max(value, 1)
    power = 1
    while True:
        for m in (1, 2, 5):
            step = m * power
            if math.ceil(value / step) <= 6:
                return step * math.ceil(value / step), step
        power *= 10


def _legend(report: Report) -> str:
    items = "".join(f'<span><i class="sw" style="background:{report.colour(row.category)}"></i>{_e(row.category)}'
                    f"</span>" for row in report.categories)
    return f'<div class="legend" aria-label="category colours">{items}</div>'


def _time_chart(report: Report) -> str:
    """Stacked bars of cases per bucket, coloured by category, with axes and labels."""
    width, height, left, right, top, bottom = 1160, 300, 56, 12, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(b.total for b in report.buckets)
    ymax, step = _nice_max(peak + math.ceil(peak * 0.04))  # room above the highest bar for its label
    n = len(report.buckets)
    slot = plot_w / n
    bar = max(min(slot * 0.8, 60.0), 1.0)
    unit = "hour" if report.bucket == "hour" else "day"
    out = [f'<svg data-chart="time" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="bad cases per {unit} by category">']
    for tick in range(0, ymax + 1, step):
        y = top + plot_h - tick / ymax * plot_h
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{tick}</text>')
    label_every = max(1, math.ceil(n / 14))
    for i, b in enumerate(report.buckets):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        out.append(f'<g data-bucket="{_e(b.label)}" data-total="{b.total}">')
        for category, count in b.counts:
            h = count / ymax * plot_h
            y -= h
            out.append(f'<rect data-category="{_e(category)}" data-bucket="{_e(b.label)}" data-count="{count}" '
                       f'x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{report.colour(category)}" stroke="#fff" stroke-width="0.5">'
                       f"<title>{_e(category)}, {_e(_when(b.start) if unit == 'hour' else b.label)}: {count}"
                       f"</title></rect>")
        if b.total and n <= 40:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="10">'
                       f"{b.total}</text>")
        out.append("</g>")
        if i % label_every == 0:
            moment = datetime.fromtimestamp(b.start, tz=UTC)
            first = moment.strftime("%m-%d") if unit == "day" else moment.strftime("%H:00")
            second = moment.strftime("%a") if unit == "day" else moment.strftime("%m-%d")
            cx = left + i * slot + slot / 2
            out.append(f'<text x="{cx:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11">{first}'
                       f'</text><text x="{cx:.1f}" y="{top + plot_h + 29}" text-anchor="middle" font-size="10" '
                       f'fill="#6b7280">{second}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#6b7280"/>'
               f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#6b7280"/>'
               f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" font-size="12">'
               f"{unit} (UTC)</text>"
               f'<text transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
               f'font-size="12">bad cases per {unit}</text></svg>')
    return "".join(out)


def _spark(series: Sequence[int], colour: str) -> str:
    width, height = 110, 22
    peak = max(series, default=0) or 1
    if len(series) <= 1:
        points = f"0,{height / 2} {width},{height / 2}"
    else:
        points = " ".join(f"{i / (len(series) - 1) * width:.1f},{height - 2 - v / peak * (height - 4):.1f}"
                          for i, v in enumerate(series))
    return (f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" aria-hidden="true">'
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/></svg>')


def _trend_html(trend: Trend) -> str:
    arrow = trend.arrow()
    css = "up" if arrow == "▲" else "down" if arrow == "▼" else "flat"
    return (f'<span class="{css}" data-previous="{trend.previous}" data-current="{trend.current}">{arrow} '
            f"{_e(trend.text())}</span>")


def _category_table(report: Report) -> str:
    """The horizontal bar chart by category, each row with its share, trend and sparkline."""
    peak = max(row.count for row in report.categories)
    bar_w = 300
    period = _duration(report.period_s)
    rows = []
    for row in report.categories:
        colour = report.colour(row.category)
        w = max(row.count / peak * bar_w, 1.0)
        rows.append(
            f'<tr data-category="{_e(row.category)}"><td><i class="sw" style="background:{colour}"></i> '
            f"{_e(row.category)}</td>"
            f'<td><svg viewBox="0 0 {bar_w + 44} 18" width="{bar_w + 44}" height="18">'
            f'<rect data-category="{_e(row.category)}" data-count="{row.count}" x="0" y="2" width="{w:.1f}" '
            f'height="14" rx="2" fill="{colour}"><title>{_e(row.category)}: {row.count}</title></rect>'
            f'<text x="{w + 5:.1f}" y="14" font-size="12">{row.count}</text></svg></td>'
            f'<td class="num">{_percent(row.share)}</td><td>{_trend_html(row.trend)}</td>'
            f"<td>{_spark(row.series, colour)}</td></tr>")
    return (f'<table data-chart="categories"><thead><tr><th>category</th><th>cases</th><th class="num">share</th>'
            f"<th>last {period} vs the {period} before</th><th>per {report.bucket}</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _breakdown_chart(report: Report, rows: Sequence[BreakdownRow], kind: str, limit: int = 12) -> str:
    """Horizontal stacked bars, one per segment value or model version."""
    if not rows:
        return f'<p class="note" data-chart="{kind}s">No case carries a {kind}.</p>'
    shown = rows[:limit]
    label_w, bar_w, row_h, axis_h = 170, 330, 24, 34
    width, height = label_w + bar_w + 50, row_h * len(shown) + 4 + axis_h
    xmax, step = _nice_max(max(row.total for row in shown))
    out = [f'<svg data-chart="{kind}s" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="bad cases by {kind} and category">']
    base = row_h * len(shown) + 4
    for tick in range(0, xmax + 1, step):
        x = label_w + tick / xmax * bar_w
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{base}" stroke="#e5e7eb"/>'
                   f'<text x="{x:.1f}" y="{base + 13}" text-anchor="middle" font-size="11">{tick}</text>')
    out.append(f'<line x1="{label_w}" x2="{label_w + bar_w}" y1="{base}" y2="{base}" stroke="#6b7280"/>'
               f'<text x="{label_w + bar_w / 2}" y="{base + 29}" text-anchor="middle" font-size="12">bad cases'
               f"</text>")
    for i, row in enumerate(shown):
        y = 2 + i * row_h
        out.append(f'<g data-{kind}="{_e(row.label)}" data-total="{row.total}">'
                   f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
                   f"{_e(_cut(row.label, 26))}<title>{_e(row.label)}</title></text>")
        x = float(label_w)
        for category, count in row.counts:
            w = count / xmax * bar_w
            out.append(f'<rect data-{kind}="{_e(row.label)}" data-category="{_e(category)}" data-count="{count}" '
                       f'x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 7}" fill="{report.colour(category)}"'
                       f' stroke="#fff" stroke-width="0.5"><title>{_e(row.label)}, {_e(category)}: {count}</title>'
                       f"</rect>")
            x += w
        out.append(f'<text x="{x + 5:.1f}" y="{y + 15}" font-size="12">{row.total}</text></g>')
    out.append("</svg>")
    if len(rows) > limit:
        out.append(f'<p class="note">and {len(rows) - limit} more {kind}s with fewer cases</p>')
    return "".join(out)


def _partial_note(report: Report) -> str:
    if not report.trend_partial:
        return ""
    start = report.period_end - 2 * report.period_s if report.period_end is not None else None
    return (f" (the cases given start well after {_when(start)} UTC, when the period before began: "
            f"its counts may be incomplete)")


def _badge(band: str) -> str:
    return f'<span class="badge" style="background:{BAND_COLOURS[band]}" title="{BAND_MEANING[band]}">{band}</span>'


def _priority_table(report: Report) -> str:
    period = _duration(report.period_s)
    rows = []
    for r in report.priorities:
        band_cells = "".join(f'<td class="num">{count or ""}</td>' for count in r.bands)
        rows.append(
            f'<tr data-model="{_e(r.model)}" data-category="{_e(r.category)}" data-cases="{r.cases}" '
            f'data-groups="{r.groups}" data-best="{r.best}" '
            f'data-bands="{" ".join(str(b) for b in r.bands)}">'
            f"<td>{_badge(r.best)}</td><td>{_e(r.model)}</td><td><i class=\"sw\" style=\"background:"
            f'{report.colour(r.category)}"></i> {_e(r.category)}</td><td class="num">{r.cases}</td>'
            f'<td class="num">{r.groups}</td>{band_cells}<td class="num">{_percent(r.share)}</td>'
            f"<td>{_trend_html(r.trend)}</td></tr>")
    heads = "".join(f'<th class="num">{band}</th>' for band in BANDS)
    return (f'<table data-chart="priorities"><thead><tr><th>best</th><th>model</th><th>category</th>'
            f'<th class="num">cases</th><th class="num">groups</th>{heads}<th class="num">share</th>'
            f"<th>last {period} vs before</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _example_html(ex: Example) -> str:
    parts = [_badge(ex.priority), f"<span>score {ex.score:.0f}</span>"]
    if ex.group_size > 1:
        parts.append(f'<span class="dup" data-group-size="{ex.group_size}">×{ex.group_size} similar</span>')
    parts.append(f"<span>{_e(ex.kind)}{' · ' + _e(ex.reason) if ex.reason else ''}</span>")
    parts.append(f"<span>{_e(version_label(ex.model, ex.model_version))}</span>")
    if ex.segment:
        parts.append(f"<span>{_e(', '.join(f'{k}={v}' for k, v in ex.segment))}</span>")
    if ex.latency_ms is not None:
        parts.append(f"<span>{ex.latency_ms:.0f} ms</span>")
    if ex.status and ex.status != "ok":
        parts.append(f"<span>status {_e(ex.status)}</span>")
    if ex.active_alerts:
        parts.append(f"<span>alerts: {_e(', '.join(ex.active_alerts))}</span>")
    parts.append(f'<span class="meta">{_e(_when(ex.event_ts))} UTC · {_e(ex.event_id)}</span>')
    if ex.comment:
        body = f'<p class="comment">{_e(_cut(ex.comment, COMMENT_CHARS))}</p>'
    else:
        body = '<p class="comment nocomment">no comment</p>'
    if ex.value is not None and ex.kind in ("correction", "wrong_label"):
        body += f'<p class="note">should have been: {_e(_value_text(ex.value))}</p>'
    return (f'<div class="ex" data-event-id="{_e(ex.event_id)}" data-group-id="{_e(ex.group_id)}">'
            f'<div class="head">{"".join(parts)}</div>{body}</div>')


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (UTF-8; no script, no outside resource).

    Every text from the data is escaped:

    >>> page = render_html(build_report([{"event_id": "f-1", "model": "m", "category": "slow",
    ...     "priority": "P0", "score": 90.0, "event_ts": 0.0, "comment": "<script>alert(1)</script>"}]))
    >>> "<script>" in page, "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    (False, True)
    """
    head = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(report.title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{_e(report.title)}</h1>")
    generated = f" · generated {_e(_when(report.generated_at))} UTC" if report.generated_at is not None else ""
    if not report.total:
        window = ""
        if report.since is not None or report.until is not None:
            window = f'<p class="meta">{_e(_window(report))}</p>'
        return (f'{head}{window}<div class="card empty" data-total="0">There are no bad cases to report'
                f"{' in this window' if window else ''}.</div>"
                f'<p class="meta">{generated.removeprefix(" · ")}</p></main></body></html>')

    bands = dict(report.bands)
    top = ", ".join(f'<b>{_e(row.category)}</b> {row.count} ({_percent(row.share)})' for row in report.categories[:3])
    summary = (f'<p class="summary" data-total="{report.total}"><b>{report.total}</b> bad cases in '
               f"<b>{report.groups}</b> near-duplicate groups · top: {top} · "
               f'<b style="color:{BAND_COLOURS["P0"]}">{bands["P0"]} P0</b> to {BAND_MEANING["P0"]}</p>')
    kinds = ", ".join(f"{_e(kind)} {count}" for kind, count in report.kinds)
    meta = (f'<p class="meta">{_e(_window(report))} · models: {_e(", ".join(report.models))} · '
            f"feedback: {kinds}{generated}</p>")
    tiles = [f'<div class="tile"><span class="n" data-total="{report.total}">{report.total}</span>'
             f'<span class="l">bad cases</span></div>',
             f'<div class="tile"><span class="n">{report.groups}</span><span class="l">near-duplicate groups</span>'
             f"</div>"]
    tiles += [f'<div class="tile" data-band="{band}" data-count="{bands[band]}"><span class="n" style="color:'
              f'{BAND_COLOURS[band]}">{bands[band]}</span><span class="l">{band}: {BAND_MEANING[band]}</span></div>'
              for band in BANDS]
    unit = report.bucket
    examples = []
    for category, picked in report.examples:
        if not picked:
            continue
        examples.append(f'<section data-examples="{_e(category)}"><h3><i class="sw" style="background:'
                        f'{report.colour(category)}"></i>{_e(category)}</h3>'
                        f"{''.join(_example_html(ex) for ex in picked)}</section>")
    body = (
        f"{summary}{meta}<div class=\"tiles\">{''.join(tiles)}</div>"
        f'<section class="card"><h2>Bad cases over time</h2><p class="note">per {unit} (UTC), stacked by '
        f"category</p>{_legend(report)}{_time_chart(report)}</section>"
        f'<section class="card"><h2>By category</h2><p class="note">trend: cases in the last '
        f"{_duration(report.period_s)} up to {_e(_when(report.period_end))} UTC against the "
        f"{_duration(report.period_s)} before{_partial_note(report)}</p>{_category_table(report)}</section>"
        f'<section class="card"><h2>Priorities</h2><p class="note">one row per model and category, most urgent '
        f"first; P0 {BAND_MEANING['P0']}, P1 {BAND_MEANING['P1']}, P2 {BAND_MEANING['P2']}, P3 "
        f"{BAND_MEANING['P3']}; groups are near-duplicate cases counted once</p>{_priority_table(report)}</section>"
        f'<div class="cols"><section class="card"><h2>By segment</h2><p class="note">a case counts once under each '
        f"of its segment keys</p>{_breakdown_chart(report, report.segments, 'segment')}</section>"
        f'<section class="card"><h2>By model version</h2><p class="note">cases per model and version</p>'
        f"{_breakdown_chart(report, report.versions, 'version')}</section></div>"
        f'<section class="card"><h2>Examples</h2><p class="note">per category, highest score first, one per '
        f"near-duplicate group; comments are redacted of personal data</p>{''.join(examples)}</section>")
    return f"{head}{body}</main></body></html>"


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(value: Any) -> str:
    r"""Text safe in a Markdown table cell: no HTML tag or entity, pipes and backslashes escaped, newlines as <br>.

    >>> _md("a|b\\c\nd <i> & <1%")
    'a\\|b\\\\c<br>d &lt;i> & <1%'
    """
    text = re.sub(r"&(?=#?\w+;)", "&amp;", str(value))
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text).replace("\\", "\\\\").replace("|", "\\|")
    return re.sub(r"\r\n|\r|\n", "<br>", text)


def _md_table(heads: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(heads)
    lines = ["| " + " | ".join(_md(h) for h in heads) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    """The report's content as Markdown: the summary, then tables (trends as ``12 → 30 (2.5x)``)."""
    out = [f"# {_md(report.title)}", ""]
    generated = f" Generated {_when(report.generated_at)} UTC." if report.generated_at is not None else ""
    if not report.total:
        window = f" in {_window(report)}" if report.since is not None or report.until is not None else ""
        out.append(f"There are no bad cases to report{window}.{generated}")
        return "\n".join(out) + "\n"
    out += [f"**{_md(_summary(report))}**", "",
            f"{_window(report)}; models: {_md(', '.join(report.models))}; feedback: "
            f"{_md(', '.join(f'{k} {n}' for k, n in report.kinds))}.{generated}", ""]
    period = _duration(report.period_s)
    out += ["## By category", "",
            f"Trend: cases in the last {period} up to {_when(report.period_end)} UTC against the {period} before"
            f"{_partial_note(report)}.", "",
            _md_table(["category", "cases", "share", f"last {period} vs the {period} before"],
                      [(r.category, r.count, _percent(r.share), r.trend.text()) for r in report.categories],
                      [False, True, True, False]), ""]
    cats = [r.category for r in report.categories]
    unit = report.bucket
    rows = [(b.label, b.total, *(dict(b.counts).get(c, 0) for c in cats)) for b in report.buckets if b.total]
    out += [f"## Over time (per {unit}, UTC)", ""]
    if len(rows) < len(report.buckets):
        out += [f"{unit.capitalize()}s without cases are left out.", ""]
    out += [_md_table([unit, "total", *cats], rows, [False] + [True] * (len(cats) + 1)), ""]
    out += ["## Priorities", "",
            f"P0 {BAND_MEANING['P0']}, P1 {BAND_MEANING['P1']}, P2 {BAND_MEANING['P2']}, P3 {BAND_MEANING['P3']}; "
            "groups count near-duplicate cases once.", "",
            _md_table(["best", "model", "category", "cases", "groups", *BANDS, "share", "trend"],
                      [(r.best, r.model, r.category, r.cases, r.groups, *r.bands, _percent(r.share),
                        r.trend.text()) for r in report.priorities],
                      [False, False, False, True, True, True, True, True, True, True, False]), ""]
    for heading, rows_ in (("By segment", report.segments), ("By model version", report.versions)):
        if rows_:
            out += [f"## {heading}", "",
                    _md_table([heading.split()[-1], "total", *cats],
                              [(r.label, r.total, *(dict(r.counts).get(c, 0) for c in cats)) for r in rows_],
                              [False] + [True] * (len(cats) + 1)), ""]
    out += ["## Examples", "", "Per category, highest score first, one per near-duplicate group.", ""]
    for category, picked in report.examples:
        if not picked:
            continue
        out += [f"### {_md(category)}", "",
                _md_table(["priority", "score", "similar", "model", "kind", "reason", "segment", "time (UTC)",
                           "comment"],
                          [(ex.priority, f"{ex.score:.0f}", ex.group_size, version_label(ex.model, ex.model_version),
                            ex.kind, ex.reason or "", ", ".join(f"{k}={v}" for k, v in ex.segment),
                            _when(ex.event_ts), _cut(ex.comment or "", COMMENT_CHARS)
                            + (f" (should have been: {_value_text(ex.value)})"
                               if ex.value is not None and ex.kind in ("correction", "wrong_label") else ""))
                           for ex in picked],
                          [False, True, True] + [False] * 6), ""]
    return "\n".join(out).rstrip("\n") + "\n"
