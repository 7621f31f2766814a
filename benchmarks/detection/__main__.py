"""Run the detection-quality benchmark: ``python -m benchmarks.detection`` (see benchmarks/README.md).

Every detector runs on every stream in one process per stream (``--jobs`` at a time);
the scores go to ``benchmarks/results/detection.json`` and the tables to the
"Detection quality" section of ``benchmarks/RESULTS.md``, with the command and
the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.detection import detectors as D
from benchmarks.detection.score import StreamScore, Summary, score_stream, summarise
from benchmarks.detection.streams import catalog
from benchmarks.results import replace_section
from common.errors import ConfigError
from monitor.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
RESULTS_JSON = ROOT / "benchmarks" / "results" / "detection.json"
ALL = ("ours", "ours_adwin", "evidently_1000", "evidently_5000", "river_ADWIN", "river_PageHinkley", "river_KSWIN",
       "river_DDM", "river_HDDMA", "periodic", "random")
#: Ours with the drift tests fed a sample (detect.sample_rate), asked for by name: ours_sample_0.25.
SAMPLED = re.compile(r"ours_sample_(\d+(?:\.\d+)?)")


def _runner(name: str) -> Any:
    if name == "ours":
        return D.ours()
    if sampled := SAMPLED.fullmatch(name):
        return D.ours({"detect": {"sample_rate": float(sampled.group(1))}})
    if name == "ours_adwin":  # ours plus river's ADWIN (default delta) on every numeric feature
        return D.ours({"detect": {"adwin_delta": 0.002}})
    if name.startswith("evidently_"):
        return D.evidently(int(name.split("_")[1]))
    if name.startswith("river_"):
        return D.river_detector(name.split("_", 1)[1])
    return {"periodic": D.periodic, "random": D.random_alarms}[name]


def run_stream(name: str, detector_names: list[str]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """In a worker: make one stream, run every detector on it, return its scores."""
    stream = dict(catalog())[name]()
    meta = {"name": stream.name, "family": stream.family, "description": stream.description,
            "events": len(stream.events), "change_at": stream.change_at, "notes": stream.notes,
            "expect_kinds": sorted(stream.expect_kinds), "expect_features": sorted(stream.expect_features)}
    scores = []
    for detector in detector_names:
        alerts, seconds = _runner(detector)(stream)
        score = score_stream(stream, alerts, seconds)
        scores.append({"detector": detector, **asdict(score), "alerts": len(alerts)})
    return name, meta, scores


def _fmt_delay(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt(value: float, digits: int = 1) -> str:
    return "∞" if math.isinf(value) else f"{value:,.{digits}f}"


def render(meta: dict[str, dict[str, Any]], scores: dict[str, list[StreamScore]], command: str,
           seconds: float) -> str:
    feature_streams = {n: bool(m["expect_features"]) for n, m in meta.items()}
    summaries = {d: summarise(d, s, feature_streams) for d, s in scores.items()}
    changed = [n for n, m in meta.items() if m["change_at"] is not None]
    steady = [n for n, m in meta.items() if m["change_at"] is None]
    lines = [
        "## Detection quality",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), in {seconds / 60:.1f} minutes, by:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"{len(meta)} streams: {len(changed)} with one change, {len(steady)} without. Delays are in events "
        "(the stream's messages, feedback included) from the first changed event to the first alert of an "
        "expected kind; false alarms are all alerts before the change and all alerts on the streams without "
        "one. MTR = MTFA / MTD x (1 - missed rate). See benchmarks/README.md for the streams and the rules.",
        "",
        "| detector | detected | median delay | mean delay | false alarms | per million events | MTR | "
        "right feature | µs per event |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d, s in summaries.items():
        attribution = f"{s.attributed / s.attributable:.0%}" if s.attributable else "-"
        lines.append(
            f"| {d} | {s.detected}/{s.changed} | {_fmt_delay(s.median_delay)} | {_fmt(s.mtd, 0)} | "
            f"{s.false_alarms} | {s.fa_per_million:,.0f} | {_fmt(s.mtr, 2)} | {attribution} | "
            f"{s.us_per_event:,.1f} |")
    lines += ["", "Per stream: delay in events (`-` missed), then false alarms in brackets when any.", ""]
    shown = [d for d in scores if d not in ("periodic", "random")]
    lines.append("| stream | family | change | " + " | ".join(shown) + " |")
    lines.append("|---|---|---|" + "---|" * len(shown))
    by_stream = {d: {r.stream: r for r in s} for d, s in scores.items()}
    for name, m in meta.items():
        cells = []
        for d in shown:
            r = by_stream[d].get(name)
            if r is None:
                cells.append("")
                continue
            cell = ("-" if not r.detected else f"{r.delay:,}") if r.changed else ""
            if r.false_alarms:
                cell += f" ({r.false_alarms})"
            cells.append(cell.strip() or ("0 FA" if not r.changed else "-"))
        lines.append(f"| {name} | {m['family']} | {m['description']} | " + " | ".join(cells) + " |")
    lines += ["", *targets(summaries, by_stream, meta), ""]
    return "\n".join(lines)


def targets(summaries: dict[str, Summary], by_stream: dict[str, dict[str, StreamScore]],
            meta: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's targets, each stated as met or not, from the numbers above."""
    out = ["### Targets"]
    ours = summaries.get("ours")
    if ours is None:
        return out
    steady = [n for n, m in meta.items() if m["change_at"] is None]
    missed = [n for n, r in by_stream["ours"].items() if r.changed and not r.detected]
    out.append(f"- Every injected change detected: {'met' if not missed else 'NOT met'} "
               f"({ours.detected}/{ours.changed}" + (f"; missed: {', '.join(missed)})" if missed else ")"))
    steady_fa = sum(by_stream["ours"][n].false_alarms for n in steady)
    out.append(f"- Zero false alarms on the no-change streams at the default settings: "
               f"{'met' if steady_fa == 0 else 'NOT met'} ({steady_fa}); before the change on the others: "
               f"{ours.false_alarms - steady_fa}.")
    for window in (1000, 5000):
        peer = f"evidently_{window}"
        if peer not in by_stream:
            continue
        peer_fa = sum(by_stream[peer][n].false_alarms for n in steady)
        out.append(f"- False alarms on the no-change streams vs Evidently at {window}-row windows: ours {steady_fa}, "
                   f"Evidently {peer_fa}: {'met' if steady_fa <= peer_fa else 'NOT met'}.")
        both = [n for n, r in by_stream["ours"].items() if r.detected and by_stream[peer][n].detected]
        if both:
            ours_median = statistics.median(by_stream["ours"][n].delay or 0 for n in both)
            peer_median = statistics.median(by_stream[peer][n].delay or 0 for n in both)
            ratio = ours_median / peer_median if peer_median else math.inf
            out.append(f"- Median delay on the {len(both)} changes both detect, vs Evidently at {window}: ours "
                       f"{ours_median:,.0f}, Evidently {peer_median:,.0f} (ratio {ratio:.2f}; target <= 0.5: "
                       f"{'met' if ratio <= 0.5 else 'NOT met'}).")
        only_ours = [n for n, r in by_stream["ours"].items() if r.detected and not by_stream[peer][n].detected]
        out.append(f"- Detected by us and missed by Evidently at {window}: {len(only_ours)} "
                   f"({', '.join(only_ours) or 'none'}).")
    out.append(f"- Detection cost: {ours.us_per_event:.1f} µs per event through the whole pipeline on these "
               "streams (decode, join, detectors, metrics); the detector-only cost is measured by "
               "`python -m benchmarks.detection.cost` below.")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__)
    parser.add_argument("--detectors", default=",".join(ALL),
                        help=f"comma-separated, from {', '.join(ALL)}; and ours_sample_RATE (e.g. ours_sample_0.25: "
                             "ours with detect.sample_rate = RATE)")
    parser.add_argument("--streams", default="", help="only streams whose name contains one of these (comma-separated)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="streams run at once")
    parser.add_argument("--no-write", action="store_true", help="print the tables; do not update RESULTS.md")
    args = parser.parse_args(argv)
    detector_names = [d for d in args.detectors.split(",") if d]
    unknown = {d for d in detector_names if d not in ALL and not SAMPLED.fullmatch(d)}
    if unknown:
        parser.error(f"unknown detectors {sorted(unknown)}")
    for name in detector_names:
        if sampled := SAMPLED.fullmatch(name):
            try:
                load_settings(environ={}, overrides={"detect": {"sample_rate": float(sampled.group(1))}})
            except ConfigError as exc:
                parser.error(f"{name}: {exc}")
    names = [n for n, _ in catalog()]
    if args.streams:
        wanted = args.streams.split(",")
        names = [n for n in names if any(w in n for w in wanted)]
    command = "benchmarks/run detection" + (f" {' '.join(argv or sys.argv[1:])}" if (argv or sys.argv[1:]) else "")
    started = time.perf_counter()
    meta: dict[str, dict[str, Any]] = {}
    raw: dict[str, list[dict[str, Any]]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_stream, n, detector_names) for n in names]
        for i, future in enumerate(as_completed(futures), 1):
            name, m, scores = future.result()
            meta[name], raw[name] = m, scores
            ours = next((s for s in scores if s["detector"] == "ours"), None)
            note = "" if ours is None else (f"ours: delay {ours['delay']}" if ours["detected"] else
                                            ("ours: missed" if ours["changed"] else "ours: no change")) + \
                f", {ours['false_alarms']} false alarms"
            print(f"[{i}/{len(names)}] {name} ({time.perf_counter() - started:.0f}s) {note}", file=sys.stderr,
                  flush=True)
    meta = {n: meta[n] for n in names}
    fields = set(StreamScore.__dataclass_fields__)
    scores = {d: [StreamScore(**{k: v for k, v in s.items() if k in fields})
                  for n in names for s in raw[n] if s["detector"] == d] for d in detector_names}
    section = render(meta, scores, command, time.perf_counter() - started)
    print(section)
    if not args.no_write:
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps({"command": command, "streams": meta, "scores": raw}, indent=1) + "\n")
        text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
        RESULTS_MD.write_text(replace_section(text, section, "## Detection quality"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
