#!/usr/bin/env python3
"""Render the example bad-case report: docs/report-example.html and its screenshot docs/report.png.

The cases are made up but shaped like production: three models, ten days, eight
categories, English and Chinese comments (already redacted), near-duplicate groups,
a latency regression after a rollout and a drift burst in one region. The screenshot
is taken by headless Chromium (Debian's ``chromium``), 1280 pixels wide.

    PYTHONPATH=. python scripts/render_example_report.py [--out docs] [--height 2870]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from monitor.report import build_report, render_html

END = 1796040000.0  # 2026-11-30 12:00 UTC
DAY = 86400.0

#: category -> (reason codes, comments, typical score, feedback kinds)
CATEGORIES: dict[str, tuple[list[str], list[str], float, list[str]]] = {
    "wrong_answer": (["wrong", "incorrect"], [
        "The answer says the store opens at 8 but it opens at 10.",
        "Recommended size 42 but I ordered 44 last time, wrong again",
        "价格算错了，应该是 129 元不是 192 元",
        "It told me my order shipped; the tracking page says it has not.",
        "答案和问题无关，而且内容是错的",
    ], 62.0, ["thumbs_down", "correction", "wrong_label"]),
    "irrelevant": (["irrelevant", "off_topic"], [
        "Why am I seeing baby products? I never bought any.",
        "推荐的都是我已经买过的东西",
        "Search for 'running shoes' shows sandals first",
        "Same three items on every page | scrolled for a minute",
    ], 45.0, ["thumbs_down", "complaint"]),
    "harmful": (["harmful", "unsafe"], [
        "The reply suggested mixing two cleaning products. That is dangerous!",
        "回复里有侮辱性的词语，请尽快处理",
        "It recommended a supplement to my kid without any warning",
    ], 88.0, ["complaint", "thumbs_down"]),
    "slow": (["slow", "timeout"], [
        "Took forever to load the recommendations",
        "页面加载太慢了，等了十几秒",
        "Spinner for 8 seconds before anything showed up",
    ], 50.0, ["thumbs_down", "complaint"]),
    "failure": (["error", "broken"], [
        "Got 'something went wrong' twice, contact me at [EMAIL]",
        "打不开，一直显示错误，电话 [PHONE]",
        "Empty result page with an error banner",
    ], 70.0, ["complaint", "thumbs_down"]),
    "stale": (["outdated", "stale"], [
        "Shows last season's prices",
        "推荐的活动已经结束了",
        "The 'new arrivals' are from last year",
    ], 35.0, ["thumbs_down"]),
    "drifted_input": (["weird", "other"], [
        "Results look random since this morning",
        "今天的推荐完全不对，和平时不一样",
    ], 55.0, ["thumbs_down", "complaint"]),
    "uncategorised": ([], [
        "meh",
        "不太满意",
        "not what I expected <b>at all</b>",
    ], 20.0, ["thumbs_down"]),
}
MODELS = {"recsys": ["v12", "v13"], "search": ["v7", "v8"], "support-bot": ["3.1"]}
REGIONS = ["east", "west", "cn-north"]
PLATFORMS = ["ios", "android", "web"]


def band(score: float) -> str:
    return "P0" if score >= 80 else "P1" if score >= 60 else "P2" if score >= 40 else "P3"


def make_cases(seed: int = 7) -> list[dict[str, Any]]:
    """About 300 bad cases over the ten days before END, deterministic for a seed."""
    rng = random.Random(seed)
    weights = {"wrong_answer": 9, "irrelevant": 8, "harmful": 1.2, "slow": 3, "failure": 2, "stale": 2,
               "drifted_input": 1, "uncategorised": 1.5}
    cases: list[dict[str, Any]] = []
    for i in range(300):
        ts = END - rng.random() * 10 * DAY
        day = int((END - ts) // DAY)  # 0 = the last day
        w = dict(weights)
        if day <= 2:
            w["slow"] *= 4  # the latency regression after recsys v13 rolled out
        if day == 1:
            w["drifted_input"] *= 12  # a burst of drifted input in cn-north
        category = rng.choices(list(w), weights=list(w.values()))[0]
        reasons, comments, base, kinds = CATEGORIES[category]
        model = rng.choice(["recsys", "recsys", "search", "support-bot"])
        versions = MODELS[model]
        version = versions[-1] if (len(versions) > 1 and day <= 3) or len(versions) == 1 else versions[0]
        region = "cn-north" if category == "drifted_input" else rng.choice(REGIONS)
        comment_index = rng.randrange(len(comments))
        comment: str | None = comments[comment_index] if rng.random() < 0.8 else None
        score = max(0.0, min(100.0, base + rng.gauss(0, 10) + (8 if model == "support-bot" else 0)))
        kind = rng.choice(kinds)
        latency = rng.uniform(900, 4000) if category == "slow" else rng.uniform(40, 200)
        cases.append({
            "event_id": f"f-{i:04d}", "model": model, "model_version": version, "kind": kind,
            "reason": rng.choice(reasons) if reasons else None, "comment": comment,
            "value": {"label": "size_44"} if kind in ("correction", "wrong_label") else None,
            "category": category, "priority": band(score), "score": round(score, 1),
            "segment": {"region": region, "platform": rng.choice(PLATFORMS)},
            "event_ts": round(ts, 3), "latency_ms": round(latency, 1),
            "status": "error" if category == "failure" else "ok",
            "active_alerts": ["slo_burn"] if category == "slow" and day <= 2 else
            ["data_drift"] if category == "drifted_input" and day == 1 else [],
            "group_id": f"g-{category}-{comment_index if comment else i}", "group_size": 1,
            "features": {}, "prediction": {}, "joined": True,
        })
    # A near-duplicate group's size is how many cases share its id.
    sizes: dict[str, int] = {}
    for c in cases:
        sizes[c["group_id"]] = sizes.get(c["group_id"], 0) + 1
    for c in cases:
        c["group_size"] = sizes[c["group_id"]]
    return sorted(cases, key=lambda c: c["event_ts"])


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("render_example_report: chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                        "--hide-scrollbars", f"--screenshot={png}", f"--window-size={width},{height}",
                        page.resolve().as_uri()], check=True, capture_output=True, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    parser.add_argument("--height", type=int, default=2870, help="screenshot height in pixels")
    parser.add_argument("--examples", type=int, default=2, help="examples per category")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # Ten days of cases: the trend compares the last five days with the five before.
    report = build_report(make_cases(), title="model-monitor: bad cases, 20-30 Nov 2026", until=END,
                          period_s=5 * DAY, generated_at=END + 600, examples_per_category=args.examples)
    page = args.out / "report-example.html"
    page.write_text(render_html(report), encoding="utf-8")
    png = args.out / "report.png"
    screenshot(page, png, 1280, args.height)
    print(f"wrote {page} and {png} ({png.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
