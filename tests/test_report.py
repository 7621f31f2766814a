"""The bad-case report: its numbers on hand-built cases, and the page as a real browser shows it."""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from browser import load
from prometheus_client import CollectorRegistry

from monitor.http import Health, StatusServer
from monitor.report import (
    BAND_COLOURS,
    CATEGORY_COLOURS,
    EXTRA_COLOURS,
    Trend,
    build_report,
    render_html,
    render_markdown,
)

T0 = 1796040000.0  # 2026-11-30 12:00 UTC, on an hour
HOUR, DAY = 3600.0, 86400.0


def case(n: int = 0, **fields: Any) -> dict[str, Any]:
    """A bad-case record as `monitor badcases --format jsonl` prints it."""
    record = {"event_id": f"f-{n}", "model": "recsys", "model_version": "v12", "kind": "thumbs_down",
              "reason": "irrelevant", "comment": "not for me", "value": None, "category": "irrelevant",
              "priority": "P2", "score": 50.0, "segment": {"region": "east"}, "event_ts": T0, "latency_ms": 80.0,
              "status": "ok", "active_alerts": [], "group_id": f"g-{n}", "group_size": 1, "features": {},
              "prediction": {}, "joined": True}
    record.update(fields)
    return record


COMMENTS = ["The answer was wrong about the opening hours", "推荐的都是我已经买过的东西", "太慢了，等了十几秒",
            "Results look random since this morning", "Got an error twice | then gave up", None]


def realistic(n: int = 240, seed: int = 3) -> list[dict[str, Any]]:
    """Cases over ten days: six categories, three segments, four versions, English and Chinese comments."""
    rng = random.Random(seed)
    categories = ["wrong_answer", "irrelevant", "slow", "failure", "harmful", "drifted_input"]
    cases = []
    for i in range(n):
        category = rng.choices(categories, weights=[6, 5, 3, 2, 1, 1])[0]
        score = rng.uniform(5, 99)
        model = rng.choice(["recsys", "search"])
        cases.append(case(i, category=category, score=round(score, 1), model=model,
                          model_version=rng.choice(["v12", "v13"]) if model == "recsys" else rng.choice(["7", "8"]),
                          priority="P0" if score >= 85 else "P1" if score >= 65 else "P2" if score >= 40 else "P3",
                          kind=rng.choice(["thumbs_down", "complaint", "correction", "wrong_label"]),
                          comment=rng.choice(COMMENTS), event_ts=T0 - rng.random() * 10 * DAY,
                          segment={"region": rng.choice(["east", "west", "cn-north"])},
                          group_id=f"g-{category}-{i % 17}", group_size=1 + i % 4))
    return cases


# ---------------------------------------------------------------------------------------------
# The numbers


def test_hourly_buckets_up_to_three_days_aligned_to_utc_hours():
    report = build_report([case(0, event_ts=T0 + 1800), case(1, event_ts=T0 + 3 * DAY)])
    assert report.bucket == "hour"
    assert len(report.buckets) == 73  # 12:00 on the first day to 12:00 three days later
    assert report.buckets[0].label == "2026-11-30T12:00Z" and report.buckets[0].total == 1
    assert report.buckets[-1].label == "2026-12-03T12:00Z" and report.buckets[-1].total == 1
    assert sum(b.total for b in report.buckets) == 2


def test_daily_buckets_beyond_three_days_aligned_to_utc_midnight():
    cases = [case(0, event_ts=T0), case(1, event_ts=T0 + 3 * DAY + 1, category="slow"),
             case(2, event_ts=T0 + 3 * DAY + 2, category="slow")]
    report = build_report(cases)
    assert report.bucket == "day"
    assert [b.label for b in report.buckets] == ["2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03"]
    assert [b.total for b in report.buckets] == [1, 0, 0, 2]
    assert report.buckets[3].counts == (("slow", 2),)
    assert report.categories[0].series == (0, 0, 0, 2)


def test_categories_are_ordered_by_count_then_name():
    cases = [case(0, category="slow"), case(1, category="harmful"), case(2, category="harmful"),
             case(3, category="failure")]
    report = build_report(cases)
    assert [(r.category, r.count, r.share) for r in report.categories] == [
        ("harmful", 2, 0.5), ("failure", 1, 0.25), ("slow", 1, 0.25)]


def test_trend_compares_the_last_period_with_the_one_before():
    cases = [case(0, event_ts=T0), case(1, event_ts=T0 - 1), case(2, event_ts=T0 - DAY + 1),  # this period
             case(3, event_ts=T0 - DAY), case(4, event_ts=T0 - 2 * DAY + 1),  # the period before
             case(5, event_ts=T0 - 2 * DAY),  # older than both
             case(6, event_ts=T0 + 1)]  # after `until`: nowhere
    report = build_report(cases, until=T0, period_s=DAY)
    assert report.total == 6
    trend = report.categories[0].trend
    assert (trend.previous, trend.current, trend.ratio) == (2, 3, 1.5)
    assert trend.text() == "2 → 3 (1.5x)"
    assert not report.trend_partial
    # `since` narrows what is shown, not the trend's look-back.
    narrowed = build_report(cases, since=T0 - DAY + 1, until=T0, period_s=DAY)
    assert narrowed.total == 3
    assert narrowed.categories[0].trend == Trend(previous=2, current=3)
    # Without `until` the period ends at the newest case.
    assert build_report(cases[:6], period_s=DAY).categories[0].trend == Trend(2, 3)
    assert build_report(cases[:3], period_s=DAY).trend_partial


def test_trend_text_for_new_and_vanished_categories():
    assert Trend(0, 5).text() == "0 → 5 (new)"
    assert Trend(4, 0).text() == "4 → 0 (0x)"
    assert Trend(0, 0).text() == "0 → 0"
    assert Trend(1, 12).text() == "1 → 12 (12x)"


def test_priority_table_counts_cases_groups_and_bands_per_model_and_category():
    cases = [case(0, model="a", category="x", priority="P0", group_id="g1"),
             case(1, model="a", category="x", priority="P1", group_id="g1"),
             case(2, model="a", category="x", priority="P1", group_id="g2"),
             case(3, model="b", category="x", priority="P2", group_id="g3"),
             case(4, model="a", category="y", priority="P1", group_id="g4"),
             case(5, model="a", category="y", priority="P1", group_id="g5", event_ts=T0 - 8 * DAY)]
    report = build_report(cases)
    rows = [(r.model, r.category, r.cases, r.groups, r.bands, r.best, r.share) for r in report.priorities]
    assert rows == [("a", "x", 3, 2, (1, 2, 0, 0), "P0", 0.5),
                    ("a", "y", 2, 2, (0, 2, 0, 0), "P1", pytest.approx(1 / 3)),
                    ("b", "x", 1, 1, (0, 0, 1, 0), "P2", pytest.approx(1 / 6))]
    assert report.priorities[1].trend == Trend(previous=1, current=1)
    assert report.bands == (("P0", 1), ("P1", 4), ("P2", 1), ("P3", 0))
    assert report.groups == 5


def test_examples_take_the_best_case_of_each_group_best_first():
    cases = [case(0, group_id="g1", score=90.0, group_size=3), case(1, group_id="g1", score=95.0, group_size=3),
             case(2, group_id="g1", score=70.0, group_size=3), case(3, group_id="g2", score=85.0),
             case(4, group_id="g3", score=10.0), case(5, category="slow", score=99.0)]
    report = build_report(cases, examples_per_category=2)
    examples = dict(report.examples)
    assert [(ex.event_id, ex.group_size) for ex in examples["irrelevant"]] == [("f-1", 3), ("f-3", 1)]
    assert [ex.event_id for ex in examples["slow"]] == ["f-5"]


def test_breakdowns_by_segment_value_and_model_version():
    cases = [case(0, segment={"region": "east", "new_user": True}), case(1, segment={"region": "west"}),
             case(2, segment={}, model_version="13"), case(3, model="search", model_version=None, category="slow")]
    report = build_report(cases)
    assert [(r.label, r.total) for r in report.segments] == [
        ("region=east", 2), ("new_user=true", 1), ("region=west", 1)]
    assert [(r.label, r.total, r.counts) for r in report.versions] == [
        ("recsys v12", 2, (("irrelevant", 2),)), ("recsys v13", 1, (("irrelevant", 1),)),
        ("search (no version)", 1, (("slow", 1),))]


def test_a_priority_outside_the_bands_is_an_error():
    with pytest.raises(ValueError, match="P7"):
        build_report([case(0, priority="P7")])


def test_empty_input_renders_a_page_that_says_so():
    report = build_report([])
    assert (report.total, report.categories, report.buckets, report.priorities) == (0, (), (), ())
    page = render_html(report)
    assert "no bad cases" in page and page.endswith("</html>")
    assert "no bad cases" in render_markdown(report)
    windowed = build_report([case(0, event_ts=T0 - 9 * DAY)], since=T0 - DAY, until=T0)
    assert windowed.total == 0
    assert "no bad cases to report in this window" in render_html(windowed)


def test_html_escapes_everything_from_the_data():
    nasty = "<script>alert('x')</script>"
    page = render_html(build_report([
        case(0, comment=nasty, category='<img src=x onerror="alert(1)">', model='m"><svg onload=alert(1)>',
             segment={"region": "<b>east</b>"}, reason="<i>", kind="complaint", model_version='"v1')]))
    assert "<script" not in page and "<img" not in page and "<svg onload" not in page and "<b>east" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "onerror=&quot;alert(1)&quot;" in page


def test_html_is_self_contained_and_utf8():
    page = render_html(build_report(realistic(60)))
    assert '<meta charset="utf-8">' in page and '"Noto Sans CJK SC", sans-serif' in page
    assert not re.search(r"<script|<link|<img|src=|url\(|@import|https?://", page)
    assert "推荐的都是我已经买过的东西" in page


def test_the_report_does_not_depend_on_the_order_of_the_cases():
    cases = realistic(120)
    shuffled = cases[:]
    random.Random(1).shuffle(shuffled)
    assert render_html(build_report(cases)) == render_html(build_report(shuffled))
    assert render_markdown(build_report(cases)) == render_markdown(build_report(shuffled))


UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def test_markdown_tables_stay_intact_with_pipes_and_newlines_in_comments():
    cases = [case(0, comment="left | right\nnext line\\", score=90.0, priority="P0"),
             case(1, comment="a\r\nb || c", group_id="g-9")]
    markdown = render_markdown(build_report(cases))
    example_table = markdown.split("### irrelevant", 1)[1].strip().splitlines()
    header, rows = example_table[0], example_table[2:]
    assert len(rows) == 2
    for row in rows:
        assert len(UNESCAPED_PIPE.findall(row)) == len(UNESCAPED_PIPE.findall(header))
    assert "left \\| right<br>next line\\\\ |" in rows[0]
    assert "a<br>b \\|\\| c" in rows[1]
    assert "| P0 | recsys | irrelevant | 2 | 2 | 1 | 0 | 1 | 0 | 100% | 0 → 2 (new) |" in markdown


def test_markdown_carries_the_summary_and_the_trend():
    cases = [case(i, event_ts=T0 - 8 * DAY) for i in range(4)] + [case(i + 4) for i in range(10)]
    markdown = render_markdown(build_report(cases, title="weekly", generated_at=T0))
    assert markdown.startswith("# weekly\n")
    assert "**14 bad cases in 14 near-duplicate groups; top categories: irrelevant 14 (100%); 0 P0" in markdown
    assert "| irrelevant | 14 | 100% | 4 → 10 (2.5x) |" in markdown
    assert "Generated 2026-11-30 12:00 UTC." in markdown


def contrast_with_white(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 1.05 / (0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2] + 0.05)


def test_colours_contrast_with_the_white_page_and_differ_per_category():
    for colour in [*CATEGORY_COLOURS.values(), *EXTRA_COLOURS]:
        assert contrast_with_white(colour) >= 3, colour  # WCAG: graphics against their background
    for colour in BAND_COLOURS.values():
        assert contrast_with_white(colour) >= 4.5, colour  # white text on the priority badges
    report = build_report([case(i, category=name) for i, name in enumerate(
        [*CATEGORY_COLOURS, "new_rule", "other_rule"])])
    assert len({report.colour(row.category) for row in report.categories}) == len(CATEGORY_COLOURS) + 2


# ---------------------------------------------------------------------------------------------
# The page in a real browser


class Charted(HTMLParser):
    """Every element with a data-count, with the data-chart of the chart that holds it."""

    VOID: ClassVar[set[str]] = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                                "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.counts: list[tuple[str | None, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        chart = found.get("data-chart") or (self.stack[-1] if self.stack else None)
        if "data-count" in found:
            self.counts.append((chart, tag, found))
        if tag not in self.VOID:
            self.stack.append(chart)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def chart(self, name: str) -> list[dict[str, str]]:
        return [attrs for chart, tag, attrs in self.counts if chart == name and tag == "rect"]


def sums(rects: list[dict[str, str]], *keys: str) -> Counter[tuple[str, ...]]:
    total: Counter[tuple[str, ...]] = Counter()
    for attrs in rects:
        total[tuple(attrs[k] for k in keys)] += int(attrs["data-count"])
    return total


def check_charts(dom: str, cases: list[dict[str, Any]]) -> None:
    """The charts in the browser's DOM hold exactly the numbers of the cases."""
    parsed = Charted()
    parsed.feed(dom)
    by_category = Counter(c["category"] for c in cases)
    categories = parsed.chart("categories")
    assert sum(int(a["data-count"]) for a in categories) == len(cases)
    assert sums(categories, "data-category") == Counter({(k,): n for k, n in by_category.items()})
    time = parsed.chart("time")
    assert sums(time, "data-category") == sums(categories, "data-category")
    assert len({a["data-bucket"] for a in time}) > 5
    by_segment = Counter((f"region={c['segment']['region']}", c["category"]) for c in cases)
    assert sums(parsed.chart("segments"), "data-segment", "data-category") == by_segment
    versions = sums(parsed.chart("versions"), "data-version", "data-category")
    assert sum(versions.values()) == len(cases)
    assert {v for v, _ in versions} <= {"recsys v12", "recsys v13", "search v7", "search v8"}


def check_screenshot(loaded: Any) -> None:
    assert loaded.pixels.shape == (2000, 1280, 3)
    assert loaded.ink_share() > 0.05, "the screenshot is (nearly) blank"
    assert loaded.colours() > 200
    # The category colours were painted (the bars of the charts).
    painted = {tuple(p) for p in loaded.pixels[::2, ::2].reshape(-1, 3).tolist()}
    for category in ("wrong_answer", "irrelevant", "slow"):
        colour = CATEGORY_COLOURS[category]
        assert tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)) in painted, category


def test_the_page_in_headless_chromium_shows_the_numbers(tmp_path: Path):
    cases = realistic()
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(cases, until=T0)), encoding="utf-8")
    loaded = load(page.as_uri())
    check_charts(loaded.dom, cases)
    check_screenshot(loaded)
    assert "推荐的都是我已经买过的东西" in loaded.dom


def test_the_empty_page_in_headless_chromium(tmp_path: Path):
    page = tmp_path / "empty.html"
    page.write_text(render_html(build_report([])), encoding="utf-8")
    loaded = load(page.as_uri(), height=600)
    assert "There are no bad cases to report." in loaded.dom
    assert loaded.ink_share() > 0.001  # the text


def test_status_server_serves_the_report_page(caplog: pytest.LogCaptureFixture):
    cases = realistic()
    report = build_report(cases, until=T0)

    def boom() -> tuple[bytes, str]:
        raise RuntimeError("the store is gone")

    pages = {"/report": lambda: (render_html(report).encode(), "text/html; charset=utf-8"), "/boom": boom}
    server = StatusServer("127.0.0.1", 0, CollectorRegistry(), Health(60.0), pages=pages)
    server.start()
    try:
        response = httpx.get(server.url + "/report", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert "推荐的都是我已经买过的东西" in response.text
        loaded = load(server.url + "/report")
        check_charts(loaded.dom, cases)
        check_screenshot(loaded)

        with caplog.at_level(logging.ERROR, logger="monitor.http"):
            failed = httpx.get(server.url + "/boom", timeout=10)
        assert (failed.status_code, failed.text) == (500, "/boom failed; see the daemon's log\n")
        assert "the store is gone" in caplog.text
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200  # still serving
        index = httpx.get(server.url + "/", timeout=10).text
        assert "/report" in index and "/boom" in index and "/metrics" in index
        missing = httpx.get(server.url + "/nope", timeout=10)
        assert missing.status_code == 404 and "/report" in missing.text
    finally:
        server.stop()


def test_status_server_without_pages_keeps_its_answers():
    server = StatusServer("127.0.0.1", 0, CollectorRegistry(), Health(60.0))
    server.start()
    try:
        assert httpx.get(server.url + "/report", timeout=10).status_code == 404
        missing = httpx.get(server.url + "/nope", timeout=10).text
        assert missing == "not found; try /metrics, /healthz, /readyz or /status\n"
        assert "/report" not in httpx.get(server.url + "/", timeout=10).text
    finally:
        server.stop()


def test_a_page_may_not_shadow_a_builtin_path():
    with pytest.raises(ValueError, match="/metrics"):
        StatusServer("127.0.0.1", 0, CollectorRegistry(), Health(60.0), pages={"/metrics": lambda: (b"", "x")})
