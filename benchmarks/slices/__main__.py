"""Run the slices benchmark: ``python -m benchmarks.slices`` (see benchmarks/README.md).

Each stream is written to a temporary directory as JSON lines and replayed by
``monitor replay FILE -c CONFIG --alerts-out ALERTS`` (a subprocess of this Python) under
two configurations: ``slices`` (segments, canaries, fairness on gender and age_band,
label-free estimation: the defaults plus the attributes) and ``whole`` (all of them off:
the whole-model detectors alone). The fixed-window four-fifths check
(``fixed_window.py``, Fairlearn's MetricFrame) runs on the fairness streams beside them.
The scores go to ``benchmarks/results/slices.json`` and the tables to the "Slices"
section of ``benchmarks/RESULTS.md``, with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks.results import replace_section
from benchmarks.slices import fixed_window
from benchmarks.slices.score import SliceScore, score, summarise
from benchmarks.slices.streams import SCENARIOS, SliceStream

ROOT = Path(__file__).resolve().parents[2]
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
RESULTS_JSON = ROOT / "benchmarks" / "results" / "slices.json"
TITLE = "## Slices"
ATTRIBUTES = ["gender", "age_band"]
CONFIGS = {
    "slices": f"[fairness]\nattributes = {json.dumps(ATTRIBUTES)}\n",
    "whole": "[segments]\nmax_keys = 0\n\n[canary]\nenabled = false\n\n[fairness]\nattributes = []\n\n"
             "[estimate]\nenabled = false\n",
}
#: Streams the fixed-window fairness check runs on.
FIXED_WINDOW_STREAMS = ("parity_gap", "stationary_many_segments")


def write_stream(stream: SliceStream, path: Path) -> None:
    with path.open("wb") as out:
        for event in stream.events:
            out.write(orjson.dumps(event) + b"\n")


def replay(events: Path, config: str, workdir: Path) -> tuple[list[dict[str, Any]], float, str]:
    """``monitor replay`` of ``events`` under ``config`` (TOML text): its alerts, seconds, stderr tail."""
    toml = workdir / f"{config}.toml"
    toml.write_text(CONFIGS[config])
    alerts_path = workdir / f"{events.stem}.{config}.alerts.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env = {k: v for k, v in env.items() if not k.startswith("MONITOR_")}  # the file alone decides
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "monitor", "replay", str(events), "-c", str(toml),
                           "--alerts-out", str(alerts_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"monitor replay {events.name} ({config}) failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    alerts = [json.loads(line) for line in alerts_path.read_text().splitlines() if line.strip()]
    return alerts, seconds, "\n".join(done.stderr.strip().splitlines()[-3:])


def run_stream(name: str, scale: float, configs: list[str], keep: str | None) -> dict[str, Any]:
    """In a worker: make one stream, replay it under each config, score; the fixed-window check too."""
    started = time.perf_counter()
    stream = SCENARIOS[name](scale)
    generated = time.perf_counter() - started
    meta = {"name": name, "description": stream.description, "events": len(stream.events),
            "predictions": sum(e["type"] == "prediction" for e in stream.events), "change_at": stream.change_at,
            "expect": stream.expect.describe() if stream.expect else None,
            "also": [e.describe() for e in stream.also], "notes": stream.notes, "generate_s": round(generated, 2)}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="slices-") as tmp:
        workdir = Path(keep) if keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"{name}.jsonl"
        write_stream(stream, path)
        for config in configs:
            alerts, seconds, tail = replay(path, config, workdir)
            s = score(stream, alerts, config)
            kinds: dict[str, int] = {}
            for a in alerts:
                kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
            results.append({**asdict(s), "seconds": round(seconds, 2), "by_kind": kinds, "replay": tail})
    if name in FIXED_WINDOW_STREAMS:
        started = time.perf_counter()
        alerts = fixed_window.alerts(stream.events, ATTRIBUTES)
        s = score(stream, alerts, f"fixed_window ({fixed_window.ENGINE})")
        results.append({**asdict(s), "seconds": round(time.perf_counter() - started, 2),
                        "by_kind": {"fairness_gap": len(alerts)} if alerts else {}, "replay": ""})
    return {"meta": meta, "results": results}


def _delay(r: SliceScore) -> str:
    if not r.changed:
        return ""
    return f"{r.delay:,}" if r.detected else "missed"


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "monitor", "detectors", "collectors"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (with uncommitted changes in monitor/, detectors/ or collectors/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(meta: dict[str, dict[str, Any]], scores: list[SliceScore], command: str, seconds: float) -> str:
    configs = list(dict.fromkeys(s.config for s in scores))
    lines = [
        TITLE, "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), at commit {_commit()}, "
        f"in {seconds / 60:.1f} minutes, by:", "",
        "```sh", command, "```", "",
        f"{len(meta)} streams of two models' traffic with segments ({sum(m['events'] for m in meta.values()):,} "
        "events), each replayed by `monitor replay` under `slices` (segments, canaries, fairness on gender and "
        "age_band, label-free estimation) and `whole` (`[segments] max_keys = 0`, `[canary] enabled = false`, "
        "`[fairness] attributes = []`, `[estimate] enabled = false`); the fixed-window four-fifths check "
        "(Fairlearn's MetricFrame, 5,000-decision windows) on the fairness streams. Detected: an alert of the "
        "expected identity at or after the change (delay in events, feedback included); false alarms: every "
        "alert before the change, on a stream without one, or after it matching neither the expected identity "
        "nor one of the change's other true consequences (`also`). See benchmarks/README.md.", "",
        "| configuration | detected | median delay | false alarms | per million events | per million, "
        "stationary |",
        "|---|---|---|---|---|---|",
    ]
    for config in configs:
        mine = [s for s in scores if s.config == config]
        sm = summarise(config, mine)
        median = "-" if sm.median_delay is None else f"{sm.median_delay:,.0f}"
        stationary = f"{sm.stationary_per_million:,.1f}" if sm.stationary_events else "-"
        lines.append(f"| {config} | {sm.detected}/{sm.changed} | {median} | {sm.false_alarms} | "
                     f"{sm.fa_per_million:,.1f} | {stationary} |")
    lines += ["", "Per stream: delay in events (or missed), then false alarms in brackets; `also`: the first "
              "delay of a true but coarser alert.", "",
              "| stream | events | change at | expected | " + " | ".join(configs) + " | also (slices / whole) |",
              "|---|---|---|---|" + "---|" * len(configs) + "---|"]
    by = {(s.stream, s.config): s for s in scores}
    for name, m in meta.items():
        cells = []
        for config in configs:
            r = by.get((name, config))
            if r is None:
                cells.append("")
                continue
            cell = _delay(r)
            if r.false_alarms:
                cell += f" ({r.false_alarms} FA)"
            cells.append(cell.strip() or "0 FA")
        also = []
        for config in ("slices", "whole"):
            r = by.get((name, config))
            if r is not None and r.also:
                also.append(f"{config}: " + "; ".join(f"{d} at {v:,}" for d, v in r.also.items()))
        change = "-" if m["change_at"] is None else f"{m['change_at']:,}"
        lines.append(f"| {name} | {m['events']:,} | {change} | {m['expect'] or 'no alert'} | " + " | ".join(cells)
                     + f" | {' / '.join(also) or '-'} |")
    for name, m in meta.items():
        if m["notes"].get("first_changed_label") is not None and m["change_at"] is not None:
            lines += ["", f"{name}: the first late label of a changed prediction arrives "
                      f"{m['notes']['first_changed_label'] - m['change_at']:,} events after the change; a "
                      "detector on labels cannot fire before it, a label-free estimate can."]
    false = [s for s in scores if s.false_examples]
    if false:
        lines += ["", "First false alarms (up to 3 per stream and configuration):", ""]
        for s in false:
            for a in s.false_examples[:3]:
                seg = ",".join(f"{k}={v}" for k, v in (a.get("segment") or {}).items()) or "-"
                lines.append(f"- {s.stream} / {s.config}: {a['kind']} {a['model']} {a.get('model_version')} "
                             f"{a.get('detector')} feature={a.get('feature')} segment={seg} at {a['at_event']:,}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slices", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="", help="only these streams (comma-separated names or parts of "
                                                      f"names) of {', '.join(SCENARIOS)}")
    parser.add_argument("--configs", default="slices,whole", help="comma-separated, of slices, whole")
    parser.add_argument("--scale", type=float, default=1.0, help="stream length factor (1: the recorded size)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="streams run at once")
    parser.add_argument("--keep", default=None, help="keep the streams and alert files in this directory")
    parser.add_argument("--no-write", action="store_true", help="print the tables; do not update RESULTS.md")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"unknown configs {sorted(unknown)}")
    names = list(SCENARIOS)
    if args.streams:
        wanted = args.streams.split(",")
        names = [n for n in names if any(w in n for w in wanted)]
        if not names:
            parser.error(f"no stream matches {args.streams!r}")
    given = argv if argv is not None else sys.argv[1:]
    command = "benchmarks/run slices" + (f" {' '.join(given)}" if given else "")
    started = time.perf_counter()
    raw: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_stream, n, args.scale, configs, args.keep): n for n in names}
        for i, future in enumerate(as_completed(futures), 1):
            out = future.result()
            raw[futures[future]] = out
            note = "; ".join(f"{r['config']}: " + (("delay " + str(r["delay"])) if r["detected"] else
                                                   ("missed" if r["changed"] else "no change"))
                             + f", {r['false_before'] + r['false_other']} FA" for r in out["results"])
            print(f"[{i}/{len(names)}] {futures[future]} ({time.perf_counter() - started:.0f}s) {note}",
                  file=sys.stderr, flush=True)
    meta = {n: raw[n]["meta"] for n in names}
    fields = set(SliceScore.__dataclass_fields__)
    scores = [SliceScore(**{k: v for k, v in r.items() if k in fields}) for n in names for r in raw[n]["results"]]
    section = render(meta, scores, command, time.perf_counter() - started)
    print(section)
    if not args.no_write:
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps({"command": command, "commit": _commit(), "scale": args.scale,
                                            "fixed_window_engine": fixed_window.ENGINE,
                                            "streams": meta, "scores": {n: raw[n]["results"] for n in names}},
                                           indent=1) + "\n")
        text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
        RESULTS_MD.write_text(replace_section(text, section, TITLE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
