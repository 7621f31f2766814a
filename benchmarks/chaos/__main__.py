"""Run the chaos scenarios: ``python -m benchmarks.chaos`` (see benchmarks/README.md).

One embedded broker; one seeded stream (the simulator's traffic with its four faults);
a clean run of it (one daemon, no faults) and, with ``--control``, a second one, to show
that a clean run is reproducible; then each scenario on each store, compared with the
clean run by key. Prints a table and, without ``--no-write``, records it with the
command in the "Chaos runs" section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.chaos import harness as H
from benchmarks.chaos.outage import broker_down
from benchmarks.results import replace_section
from monitor.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[2]
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
TITLE = "## Chaos runs"
SCENARIOS = ("kill9", "db_down", "broker_down")
HEADER = ("| scenario | store | events | runs | faults injected | samples lost | duplicated in the store | "
          "extra in the store | joined -> unjoined | queue duplicates | alerts lost / extra | "
          "triggers lost / extra / sent twice | time to recover (median, max) |")


def row(r: H.RunResult) -> str:
    c = r.comparison
    recover = (f"{statistics.median(r.recover_s):.1f} s, {max(r.recover_s):.1f} s" if r.recover_s else "-")
    return (f"| {r.scenario} | {r.store} | {r.events:,} | {r.runs} | {r.faults} | {c.lost} of {c.samples_clean} | "
            f"{c.store_duplicates} | {c.extra} | {c.joined_to_unjoined} | {c.queue_duplicates} | "
            f"{c.alerts_lost} / {c.alerts_extra} | {c.triggers_lost} / {c.triggers_extra} / "
            f"{c.trigger_duplicates} | {recover} |")


def render(results: list[H.RunResult], command: str, seconds: float, stream: H.Stream, clean: H.Outcome,
           control: H.Comparison | None) -> str:
    out = [TITLE, "",
           f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores "
           f"({platform.python_implementation()} {platform.python_version()}), in {seconds / 60:.1f} minutes:",
           "", "```sh", command, "```", "",
           f"One seeded stream of {stream.size:,} events ({stream.seconds:,.0f} s of event time: the simulator's "
           "three models with a feature drift, a latency regression, a thumbs-down spike and a quality decay), "
           f"one partition per topic. The clean run (one daemon, no faults) stored {len(clean.samples):,} flagged "
           f"samples, {len(clean.alerts)} alerts and {len(clean.triggers)} retrain triggers. Each run below is "
           "compared with it by key: samples by `event_id` (stored, or saved in the join's state still waiting "
           "for their prediction), alerts by alert key, triggers by trigger key; the retraining-queue topic by "
           "its records' keys.", ""]
    if control is not None:
        same = "the same, to the key" if control.exact and not control.joined_to_unjoined else (
            f"not the same: {control.lost} samples lost, {control.extra} extra, alerts {control.alerts_lost} "
            f"lost / {control.alerts_extra} extra")
        out += [f"Control: a second clean run of the stream was {same}."]
        out += [f"  - alert only in the first: `{a}`" for a in control.detail["alerts_lost"]]
        out += [f"  - alert only in the second: `{a}`" for a in control.detail["alerts_extra"]]
        out += [""]
    out += [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    out += [row(r) for r in results]
    out += ["", "- *samples lost*: clean-run samples this run neither stored nor saved waiting in the join; "
            "*duplicated in the store*: rows beyond one per `event_id`; *extra*: stored samples the clean run "
            "has not; *joined -> unjoined*: bad cases stored unjoined here and joined in the clean run (a crash "
            "loses the join entries read since the last checkpoint: the documented limit, not a loss); "
            "*queue duplicates*: sample records on the retraining-queue topic beyond one per `event_id` "
            "(at-least-once, keyed by `event_id`).",
            "- *time to recover*: kill9, from the SIGKILL to the restarted daemon being ready and committing "
            "past the offsets committed at the kill (its start, the dead member's session timeout of 6 s and "
            "the group join); db_down, from the store working again to `/readyz` answering ready.",
            "- db_down's outage: on SQLite every write fails (the daemon's file-size limit set to one byte: EFBIG, "
            "as on a full disk; the harness is root, so a chmod would change nothing); on PostgreSQL the daemon's "
            "role may not log in and its connections are ended."]
    for r in results:
        out += [f"- {r.scenario} on {r.store}: {note}" for note in r.notes]
        out += [f"- {r.scenario} on {r.store}: alert of the clean run missing: `{a}`"
                for a in r.comparison.detail["alerts_lost"]]
        out += [f"- {r.scenario} on {r.store}: alert the clean run has not: `{a}`"
                for a in r.comparison.detail["alerts_extra"]]
        if r.scenario == "db_down" and r.comparison.queue_duplicates:
            out.append(f"- db_down on {r.store}: the {r.comparison.queue_duplicates:,} queue duplicates (at most "
                       f"{r.comparison.queue_max_copies} records of one sample) come from the push job: the store "
                       "could still be read, so every push (each `retrain.push_interval_s`, 0.5 s here) claimed "
                       "the undelivered samples, sent them to the queue topic and failed to mark them delivered; "
                       "the next push sent them again. At-least-once, keyed by `event_id`, but not the rare "
                       "duplicate after a crash the README promises: one copy per push while the store is down.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--scenario", default=",".join(SCENARIOS), help=f"comma-separated, from {', '.join(SCENARIOS)}")
    parser.add_argument("--stores", default="sqlite,postgresql",
                        help="stores to run each scenario on (sqlite, postgresql)")
    parser.add_argument("--events", type=int, default=200_000, help="events in the stream")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per kill9 run")
    parser.add_argument("--rate", type=float, default=2_000.0,
                        help="events a second produced while the faulted daemon runs")
    parser.add_argument("--down-s", type=float, default=10.0, help="how long the store is down in db_down")
    parser.add_argument("--broker-down-s", type=float, default=60.0,
                        help="how long the broker is unreachable in broker_down")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--no-control", action="store_true", help="skip the second clean run")
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for any one step, seconds")
    parser.add_argument("--no-write", action="store_true", help="print the table; do not update RESULTS.md")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that the daemons and the broker are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scenarios = [s for s in args.scenario.split(",") if s]
    if unknown := set(scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    stores = [s for s in args.stores.split(",") if s]
    command = "benchmarks/run chaos" + (f" {' '.join(argv if argv is not None else sys.argv[1:])}"
                                        if (argv if argv is not None else sys.argv[1:]) else "")
    started = time.monotonic()
    stream = H.make_stream(args.events, args.seed)
    results: list[H.RunResult] = []
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, \
            EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        folder = Path(tmp)
        print(f"stream: {stream.size:,} events; clean run ...", flush=True)
        # Produced while the daemon runs, at the faulted runs' rate: a backlog read from the
        # start interleaves the two topics otherwise, and the feedback alerts follow that.
        clean = H.clean_run(broker.bootstrap, stream, "sqlite", folder, args.timeout, rate=args.rate)
        control = None
        if not args.no_control:
            print("control: a second clean run ...", flush=True)
            control = H.compare(clean, H.clean_run(broker.bootstrap, stream, "sqlite", folder, args.timeout,
                                                   rate=args.rate))
        if "kill9" in scenarios:
            for store in stores:
                print(f"kill9 on {store}: {args.kills} kills ...", flush=True)
                results.append(H.kill9(broker.bootstrap, stream, clean, store, folder, args.kills, args.seed,
                                       args.rate, args.timeout))
                print(row(results[-1]), flush=True)
        if "db_down" in scenarios:
            for store in stores:
                print(f"db_down on {store}: {args.down_s:.0f} s ...", flush=True)
                results.append(H.db_down(broker.bootstrap, stream, clean, store, folder, args.down_s, args.rate,
                                         args.timeout))
                print(row(results[-1]), flush=True)
        if "broker_down" in scenarios:
            for store in stores:
                print(f"broker_down on {store}: {args.broker_down_s:.0f} s ...", flush=True)
                results.append(broker_down(stream, clean, store, folder, args.broker_down_s, args.timeout))
                print(row(results[-1]), flush=True)
    section = render(results, command, time.monotonic() - started, stream, clean, control)
    print(section)
    if not args.no_write:
        text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
        RESULTS_MD.write_text(replace_section(text, section, TITLE))
    return 0 if all(r.comparison.exact for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
