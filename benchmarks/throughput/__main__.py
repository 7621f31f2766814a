"""Throughput benchmark: ``python -m benchmarks.throughput`` (see benchmarks/README.md).

One embedded broker; the workload (``workload.py``) produced to the tracking and
feedback topics (4 partitions each); then, one after another on the same topics,
each in its own process: the bare consumers (``floors.py``), the daemon with one and
with two workers in one consumer group, ``monitor replay`` on the same events from a
file, and Evidently's drift preset on the same predictions in windows. Rates are
timed from the first message handled to the last; peak RSS is each process's own
(``wait4``). With ``--latency``, the alert latency at a paced offered load instead.
Results go to the "Throughput" section of benchmarks/RESULTS.md.

``--tree A --tree B`` instead runs only ``monitor run`` (one worker) from each source
tree (a git worktree of another commit, say), alternating, ``--rounds`` times each on
the same topics: a side-by-side comparison, printed and not written. ``--set
detect.sample_rate=1 --set detect.sample_rate=0.25`` does the same for settings (of
this tree, or of each ``--tree``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.throughput import variants, workload
from monitor.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[2]
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
RESULTS_JSON = ROOT / "benchmarks" / "results" / "throughput.json"
TRACKING, FEEDBACK = "bench-tracking", "bench-feedback"
PARTITIONS = 4
PY = sys.executable


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- producing ----------------------------------------------------------------------------------------------

async def _produce(bootstrap: str, n: int, rate: float | None = None, drift_every: int | None = None,
                   marks: dict[int, float] | None = None, seed: int = 0,
                   topics: tuple[str, str] = (TRACKING, FEEDBACK)) -> None:
    """Send ``n`` workload events (feedback to its own topic), at ``rate`` a second if given;
    ``marks`` gets the wall time each position in it was sent at."""
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                acks=1)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i, line in enumerate(workload.events(n, seed=seed, drift_every=drift_every,
                                                 start_ts=time.time() if rate else workload.START_TS,
                                                 rate_per_s=rate or 10_000.0)):
            if rate and i % 100 == 0:
                ahead = started + i / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if marks is not None and i in marks:
                marks[i] = time.time()
            key = re.search(rb'"request_id":"([^"]+)"', line)
            topic = topics[1] if b'"type":"feedback"' in line else topics[0]
            pending.append(await producer.send(topic, line, key=key.group(1) if key else None))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
            if not rate and i and i % 200_000 == 0:
                log(f"  produced {i:,}")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def produce(bootstrap: str, n: int) -> None:
    from collectors.kafka import ensure_topics  # noqa: PLC0415

    asyncio.run(ensure_topics(bootstrap, {TRACKING: PARTITIONS, FEEDBACK: PARTITIONS}, 30.0))
    started = time.perf_counter()
    asyncio.run(_produce(bootstrap, n))
    log(f"produced {n:,} events in {time.perf_counter() - started:.1f}s")


# -- processes ------------------------------------------------------------------------------------------------

def run_child(args: list[str], read: str = "stdout") -> tuple[str, float, int]:
    """Run a command; return what it wrote to ``read`` (stdout or stderr), its wall seconds
    and its peak RSS in MiB."""
    started = time.perf_counter()
    child = subprocess.Popen(args, text=True, cwd=ROOT,
                             stdout=subprocess.PIPE if read == "stdout" else subprocess.DEVNULL,
                             stderr=subprocess.PIPE if read == "stderr" else None)
    stream = child.stdout if read == "stdout" else child.stderr
    out = stream.read() if stream else ""
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{args} exited {os.waitstatus_to_exitcode(status)}: {out[-2000:]}")
    return out, time.perf_counter() - started, usage.ru_maxrss // 1024


def floor(client: str, bootstrap: str, n: int) -> dict[str, Any]:
    out, _, rss = run_child([PY, "-m", "benchmarks.throughput.floors", client, bootstrap, str(n), TRACKING, FEEDBACK])
    found = re.search(r'\{"client".*\}', out)  # faust's spinner writes escape codes around it
    if not found:
        raise RuntimeError(f"{client} printed no result: {out[-500:]!r}")
    result = json.loads(found.group(0))
    return {"name": f"bare {client}", "events": n, "seconds": result["seconds"],
            "rate": n / result["seconds"], "rss_mib": rss}


def _config(bootstrap: str, folder: Path, group: str, port: int,
            topics: tuple[str, str] = (TRACKING, FEEDBACK)) -> Path:
    path = folder / f"monitor-{port}.toml"
    path.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
topic_partitions = {PARTITIONS}
topic_replication = 1
[topics]
tracking = "{topics[0]}"
feedback = "{topics[1]}"
deadletter = "bench-deadletter"
retrain = "bench-retrain"
alerts = "bench-alerts"
[store]
url = "sqlite:///{folder / 'store.db'}"
[http]
host = "127.0.0.1"
port = {port}
[retrain]
trigger_cron = ""
""")
    return path


def _metrics(port: int) -> dict[str, float]:
    """The daemon's counters we need, summed over labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"(model_monitor_(?:events_total|invalid_events_total|alerts_total|stage_seconds_total))"
                         r"(\{[^}]*\})? (\S+)", line)
        if match:
            name, labels, value = match.groups()
            stage = re.search(r'stage="([^"]+)"', labels or "")
            kind = re.search(r'kind="([^"]+)"', labels or "")
            key = f"stage:{stage.group(1)}" if stage else f"alerts:{kind.group(1)}" if kind and "alerts" in name \
                else "handled"
            out[key] = out.get(key, 0.0) + float(value)
    return out


def daemon(bootstrap: str, n: int, workers: int, folder: Path, root: Path = ROOT,
           env: dict[str, str] | None = None) -> dict[str, Any]:
    """``workers`` daemons (of the source tree ``root``, with ``env`` added to their
    environment) in one fresh group over the whole topic; rate while all work."""
    group = f"bench-{os.urandom(4).hex()}"
    ports = [free_port() for _ in range(workers)]
    logs = [(folder / f"{group}-{port}.log").open("wb") for port in ports]
    children = [subprocess.Popen([PY, "-m", "monitor", "run", "-c", str(_config(bootstrap, folder, group, port))],
                                 cwd=root, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
                for port, out in zip(ports, logs, strict=True)]
    samples: list[tuple[float, list[float]]] = []  # (time, handled per worker)
    stages: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 60 + n / 10_000
        while time.monotonic() < deadline:
            try:
                now_metrics = [_metrics(port) for port in ports]
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            samples.append((time.perf_counter(), [m.get("handled", 0.0) for m in now_metrics]))
            if sum(samples[-1][1]) >= n:
                stages = {k[6:]: sum(m.get(k, 0.0) for m in now_metrics)
                          for k in now_metrics[0] if k.startswith("stage:")}
                break
            time.sleep(0.25)  # a scrape costs the daemon a little: not too often
        else:
            tails = "\n".join(log.name + ":\n" + Path(log.name).read_text()[-3000:] for log in logs)
            raise RuntimeError(f"{workers} worker(s) handled {sum(samples[-1][1]) if samples else 0:,.0f} "
                               f"of {n:,}; their logs end:\n{tails}")
    finally:
        rss = []
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            _, _, usage = os.wait4(child.pid, 0)
            rss.append(usage.ru_maxrss // 1024)
        for out in logs:
            out.close()
    # The steady rate: from 10% to 90% of the events, when every worker is busy (startup,
    # the group join and the tail where one worker has run out of work are left out).
    t10 = next(t for t, per in samples if sum(per) >= 0.1 * n)
    t90 = next(t for t, per in samples if sum(per) >= 0.9 * n)
    rate = 0.8 * n / (t90 - t10)
    busy = [w for w in range(workers) if next(per for t, per in samples if t >= t10)[w]
            < next(per for t, per in samples if t >= t90)[w]]
    if len(busy) < workers:
        log(f"  only workers {busy} handled events between 10% and 90%: partitions were not spread")
    return {"name": f"monitor run, {workers} worker{'s' if workers > 1 else ''}", "events": n,
            "seconds": t90 - t10, "rate": rate,
            "rss_mib": max(rss), "stages": stages}


def replay(path: Path, n: int) -> dict[str, Any]:
    err, wall, rss = run_child([PY, "-m", "monitor", "replay", str(path), "--alerts-out", os.devnull], read="stderr")
    match = re.search(r"read ([\d,]+) lines in ([\d.]+)s", err)
    if not match:
        raise RuntimeError(f"monitor replay printed no summary: {err[-2000:]}")
    seconds = float(match.group(2))
    return {"name": "monitor replay (no Kafka)", "events": n, "seconds": seconds, "rate": n / seconds,
            "rss_mib": rss, "wall_s": wall}


def evidently(path: Path, rows: int, window: int = 5000) -> dict[str, Any] | None:
    try:
        out, _, rss = run_child([PY, "-m", "benchmarks.throughput.evidently_rate", str(path), str(rows), str(window)])
    except RuntimeError as exc:
        log(f"  Evidently skipped: {exc}")
        return None
    result = json.loads(out.strip().splitlines()[-1])
    return {"name": f"Evidently DataDriftPreset, windows of {window:,}", "events": result["rows"],
            "seconds": result["seconds"], "rate": result["rows"] / result["seconds"], "rss_mib": rss}


# -- memory over 10 million events -------------------------------------------------------------------------

def memory(n: int, marks: tuple[int, ...]) -> dict[str, Any]:
    """``monitor replay -`` fed ``n`` generated events through a pipe; its RSS when its
    progress passes each mark."""
    generator = subprocess.Popen([PY, "-c", f"import sys; from benchmarks.throughput.workload import events\n"
                                  f"out = sys.stdout.buffer\nfor line in events({n}): out.write(line + b'\\n')"],
                                 cwd=ROOT, stdout=subprocess.PIPE)
    child = subprocess.Popen([PY, "-m", "monitor", "replay", "-", "--alerts-out", os.devnull], cwd=ROOT,
                             stdin=generator.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if generator.stdout:
        generator.stdout.close()
    rss: dict[int, int] = {}
    pending = sorted(marks)
    assert child.stderr is not None
    for line in child.stderr:
        progress = re.match(r"\s*(?:read )?([\d,]+) lines", line)  # progress lines, then the summary
        if progress and pending and int(progress.group(1).replace(",", "")) >= pending[0]:
            status = Path(f"/proc/{child.pid}/status").read_text()
            rss[pending.pop(0)] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) // 1024  # type: ignore[union-attr]
            log(f"  {line.strip()}: RSS {list(rss.values())[-1]} MiB")
    child.wait()
    generator.wait()
    return {"events": n, "rss_mib": rss}


# -- alert latency at an offered load -------------------------------------------------------------------------

def latency(bootstrap: str, folder: Path, rate: float, seconds: float, every: int) -> dict[str, Any]:
    """Events at ``rate`` a second for ``seconds``, x0 shifted on and off every ``every``
    events; for each shift and model, the time from sending its first shifted event to a
    data_drift alert for the model on /metrics."""
    topics = (f"lat-tracking-{os.urandom(3).hex()}", f"lat-feedback-{os.urandom(3).hex()}")
    from collectors.kafka import ensure_topics  # noqa: PLC0415

    asyncio.run(ensure_topics(bootstrap, dict.fromkeys(topics, PARTITIONS), 30.0))
    port = free_port()
    config = _config(bootstrap, folder, f"lat-{os.urandom(4).hex()}", port, topics)
    child = subprocess.Popen([PY, "-m", "monitor", "run", "-c", str(config)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n = int(rate * seconds)
    shifts = list(range(every, n, every))
    sent: dict[int, float] = dict.fromkeys(shifts, 0.0)
    seen: dict[int, dict[str, float]] = {s: {} for s in shifts}
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        done = False

        def watch() -> None:
            counts: dict[str, float] = {}
            while not done:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                now = time.time()
                totals: dict[str, float] = {}
                for labels, value in re.findall(r"^model_monitor_alerts_total\{([^}]*)\} (\S+)", text, re.M):
                    tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                    if tags.get("kind") == "data_drift":
                        totals[tags["model"]] = totals.get(tags["model"], 0.0) + float(value)
                for model in workload.MODELS:
                    total = totals.get(model, 0.0)
                    if total > counts.get(model, 0.0):
                        counts[model] = total
                        open_shifts = [s for s in shifts if sent[s] and model not in seen[s]]
                        if open_shifts:
                            seen[open_shifts[-1]][model] = now
                time.sleep(0.02)

        import threading  # noqa: PLC0415

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        asyncio.run(_produce(bootstrap, n, rate=rate, drift_every=every, marks=sent, topics=topics))
        time.sleep(3)
        done = True
        watcher.join(10)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(60)
    latencies = sorted(at - sent[s] for s in shifts for at in seen[s].values())
    missed = sum(len(workload.MODELS) - len(seen[s]) for s in shifts)
    return {"rate": rate, "shifts": len(shifts), "samples": latencies, "missed": missed}


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# -- the report -----------------------------------------------------------------------------------------------

def table(rows: list[dict[str, Any]], ceiling: float) -> list[str]:
    out = ["| what | events | events/s | share of the aiokafka ceiling | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['events']:,} | {r['rate']:,.0f} | {r['rate'] / ceiling:.2f} | {r['rss_mib']} |")
    return out


def stage_table(stages: dict[str, float]) -> list[str]:
    total = sum(stages.values()) or 1.0
    out = ["| stage | seconds | share |", "|---|---|---|"]
    for stage in ("fetch", "decode", "route", "detect", "metrics", "store", "commit"):
        if stage in stages:
            out.append(f"| {stage} | {stages[stage]:.2f} | {stages[stage] / total:.0%} |")
    return out


def compare(trees: list[Path], settings: list[str], n: int, rounds: int) -> int:
    """``monitor run`` (one worker) of each source tree with each settings variant, over
    the same topics, alternating."""
    runs = [(tree, variant, variants.environ(variant)) for variant in settings for tree in trees]
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        log(f"broker at {broker.bootstrap}; producing {n:,} events")
        produce(broker.bootstrap, n)
        for _ in range(rounds):
            for tree, variant, env in runs:
                name = f"{tree}" + (f" {variant}" if variant else "")
                row = daemon(broker.bootstrap, n, 1, Path(tmp), root=tree.resolve(), env=env)
                rates.setdefault(name, []).append(row["rate"])
                split = ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in row["stages"].items())
                log(f"{name}: {row['rate']:,.0f} events/s (us/event: {split})")
    for name, got in rates.items():
        log(f"{name}: best {max(got):,.0f} events/s of {len(got)} runs ({', '.join(f'{r:,.0f}' for r in got)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events produced (default 1,000,000)")
    parser.add_argument("--faust-events", type=int, default=100_000,
                        help="events the faust agent reads (it is slow; default 100,000)")
    parser.add_argument("--skip", default="",
                        help="comma-separated: floors, faust, daemon, two, replay, evidently, memory, latency")
    parser.add_argument("--memory-events", type=int, default=10_000_000,
                        help="events replayed for RSS at 1/10 and all of them (default 10,000,000)")
    parser.add_argument("--latency-rate", type=float, default=10_000.0, help="offered load for alert latency")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="how long to offer it (default 60)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--tree", action="append", type=Path,
                        help="compare `monitor run` from these source trees only (repeatable; prints, writes nothing)")
    parser.add_argument("--set", action="append", dest="settings", metavar="SECTION.KEY=VALUE[,...]",
                        help=f"with or without --tree: {variants.HELP}")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each --tree and --set, alternating (default 2)")
    args = parser.parse_args(argv)
    if args.tree or args.settings:
        try:
            return compare(args.tree or [ROOT], args.settings or [""], args.events, args.rounds)
        except ValueError as exc:
            parser.error(str(exc))
    skip = set(filter(None, args.skip.split(",")))
    n = args.events
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        folder = Path(tmp)
        bootstrap = broker.bootstrap
        log(f"broker at {bootstrap}; producing {n:,} events")
        produce(bootstrap, n)
        path = folder / "events.jsonl"
        workload.write(str(path), n)
        if "floors" not in skip:
            for client in ("aiokafka", "kafka-python"):
                log(f"bare {client} ...")
                rows.append(floor(client, bootstrap, n))
                log(f"  {rows[-1]['rate']:,.0f}/s")
            if "faust" not in skip:
                log("faust agent ...")
                rows.append(floor("faust", bootstrap, min(n, args.faust_events)))
                log(f"  {rows[-1]['rate']:,.0f}/s")
        for workers in (1, 2):
            if "daemon" in skip or (workers == 2 and "two" in skip):
                continue
            log(f"monitor run, {workers} worker(s) ...")
            rows.append(daemon(bootstrap, n, workers, folder))
            log(f"  {rows[-1]['rate']:,.0f}/s")
        if "replay" not in skip:
            log("monitor replay ...")
            rows.append(replay(path, n))
            log(f"  {rows[-1]['rate']:,.0f}/s")
        if "evidently" not in skip:
            log("Evidently ...")
            row = evidently(path, min(n, 50_000))
            if row:
                rows.append(row)
                log(f"  {row['rate']:,.0f}/s")
        lat = None
        if "latency" not in skip:
            log(f"alert latency at {args.latency_rate:,.0f} events/s ...")
            lat = latency(bootstrap, folder, args.latency_rate, args.latency_seconds, 50_000)
            log(f"  {len(lat['samples'])} alerts, {lat['missed']} missed")
    mem = None
    if "memory" not in skip:
        marks = tuple(args.memory_events * k // 10 for k in range(1, 11))  # a curve: growth or a plateau
        log(f"memory: replaying {args.memory_events:,} generated events ...")
        mem = memory(args.memory_events, marks)
    ceiling = next((r["rate"] for r in rows if r["name"] == "bare aiokafka"), float("nan"))
    command = "benchmarks/run throughput" + (f" --events {n}" if n != 1_000_000 else "") \
        + (f" --skip {args.skip}" if args.skip else "")
    lines = ["## Throughput", "",
             f"`{command}` on {datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}; the broker (Tansu) on the same cores. "
             f"{n:,} events of the throughput workload (3 models, 10 numeric and 2 categorical features, "
             f"2% feedback) on {PARTITIONS} partitions per topic.", "", *table(rows, ceiling), ""]
    for r in rows:
        if r.get("stages"):
            lines += [f"Where `{r['name']}` spent its time (model_monitor_stage_seconds_total):", "",
                      *stage_table(r["stages"]), ""]
    one = next((r for r in rows if r["name"] == "monitor run, 1 worker"), None)
    two = next((r for r in rows if r["name"] == "monitor run, 2 workers"), None)
    if one and two:
        lines += [f"Two workers against one: **{two['rate'] / one['rate']:.2f}x**.", ""]
    if mem:
        curve = sorted(mem["rss_mib"].items())
        (small, a), (large, b) = curve[0], curve[-1]
        lines += [f"Memory: `monitor replay -` over {mem['events']:,} generated events: RSS {a} MiB after "
                  f"{small:,} and {b} MiB after {large:,} (**{(b - a) / a:+.0%}**); at each tenth: "
                  f"{', '.join(f'{rss}' for _, rss in curve)} MiB.", ""]
    if lat:
        samples = lat["samples"]
        lines += [f"Alert latency at {lat['rate']:,.0f} events/s offered (`monitor run`, 1 worker): x0 of all three "
                  f"models shifted by 1 sd, on and off every 50,000 events; from sending a shift's first event "
                  f"to a data_drift alert of the model on /metrics (scraped every 20 ms): "
                  f"{len(samples)} alerts, {lat['missed']} missed; p50 **{_percentile(samples, 0.5):.2f} s**, "
                  f"p99 **{_percentile(samples, 0.99):.2f} s**, max {max(samples, default=float('nan')):.2f} s.", ""]
    section = "\n".join(lines)
    print(section)
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    if not args.no_write:
        RESULTS_JSON.write_text(json.dumps({"command": command, "rows": rows, "memory": mem, "latency": lat},
                                           indent=1) + "\n")
        from benchmarks.results import replace_section  # noqa: PLC0415

        text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
        RESULTS_MD.write_text(replace_section(text, section, "## Throughput"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
