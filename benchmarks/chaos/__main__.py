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

from benchmarks.chaos import bursts as B
from benchmarks.chaos import harness as H
from benchmarks.chaos import volume as V
from benchmarks.chaos.outage import broker_down
from benchmarks.results import replace_section
from monitor.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[2]
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
TITLE = "## Chaos runs"
SCENARIOS = ("kill9", "db_down", "broker_down", "bursts", "hostile", "explosion")
VOLUME = ("hostile", "explosion")
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


VOLUME_HEADER = ("| scenario | runs | messages | faults injected | lost | duplicated | crashes | RSS max | "
                 "time | messages/s | checks failed |")


def volume_row(r: V.VolumeResult) -> str:
    return (f"| {r.scenario} | {r.runs} | {r.messages:,} | {r.faults:,} | {r.lost} | {r.duplicated} | {r.crashes} | "
            f"{r.rss_max_mb:,.0f} MB | {r.seconds:,.1f} s | {r.rate:,.0f} | {len(r.problems)} |")


def render_volume(results: list[V.VolumeResult]) -> list[str]:
    """The hostile-input and label-explosion runs: their table and what each observed."""
    if not results:
        return []
    out = ["", "### Hostile input at volume, and label explosions", "",
           "The real daemon (`python -m monitor run`, SQLite store, default `[collect]`, `[detect]`, `[segments]` "
           "and `[badcases]` bounds) on a backlog produced before it starts; *time* is from `/readyz` ready to the "
           "whole backlog committed, *RSS* sampled from `/proc/PID/status` (VmRSS) every 0.25 s over the run.", "",
           VOLUME_HEADER, "|" + "---|" * VOLUME_HEADER.count(" | ") + "---|"]
    out += [volume_row(r) for r in results]
    out += [""]
    for r in results:
        f = r.facts
        if r.scenario == "hostile":
            out += [f"- hostile: {f['bad']:,} hostile and {f['valid']:,} valid messages from "
                    "`benchmarks/chaos/generators.py` (`hostile_messages`, seeded, shuffled), each with the reason "
                    "its construction gives it. Every dead letter is matched to its message by key (`h-<index>`): "
                    f"{f['dead_letters']:,} dead letters, {r.lost} hostile messages without one, {r.duplicated} "
                    f"twice, {f['valid_rejected']} valid ones dead-lettered, "
                    f"{sum(f['mismatch'].values())} with another reason than expected; "
                    f"`model_monitor_events_total` {f['events_total']:,} (valid sent: {f['valid']:,}); exit code "
                    f"{f['exit_code']} at the graceful stop; {f['tracebacks']} tracebacks in its log.",
                    "- hostile, expected reasons: " + ", ".join(f"{k} {v:,}" for k, v in f["reasons"].items()) + ".",
                    "- hostile, cases: " + ", ".join(f"{k} {v:,}" for k, v in f["cases"].items()) + ".",
                    f"- hostile, RSS at a quarter, half, three quarters and the end of the run: "
                    f"{', '.join(f'{v:,.0f}' for v in f['rss_quarters_mb'])} MB; producing the backlog took "
                    f"{f['produce_s']:,.0f} s."]
        else:
            seen, bounds = f["distinct_label_values"], f["bounds"]
            out += [f"- explosion: {r.messages:,} predictions, every name new (`explosion_events`: each a new "
                    "model_version, feature, prediction field, category, segment key and value; every third a new "
                    f"model): {r.messages // 3 + 1:,} models, {r.messages:,} of each other name. "
                    "Distinct label values over every `model_monitor_*` family, seen / bound: " + ", ".join(
                        f"{k} {seen[k]:,} / {bounds[k]:,}" for k in bounds) + ".",
                    f"- explosion: {f['series_total']:,} `model_monitor_*` series at the end, "
                    f"{f['series_total_at_half']:,} when half the stream was committed; families that grew since: "
                    f"{', '.join(f'{k} {a} -> {b}' for k, (a, b) in f['series_grew'].items()) or 'none'}.",
                    "- explosion, folds (`model_monitor_bound_overflow_total`), counted / implied by the stream: "
                    + ", ".join(f"{k} {f['folds'].get(k, 0):,} / {v:,}" for k, v in f["folds_expected"].items())
                    + ".",
                    f"- explosion, RSS at a quarter, half, three quarters and the end: "
                    f"{', '.join(f'{v:,.0f}' for v in f['rss_quarters_mb'])} MB (the join buffer holds up to "
                    "`join.max_predictions` predictions' bytes); exit code "
                    f"{f['exit_code']}; {f['tracebacks']} tracebacks in its log."]
        out += [f"- **{r.scenario}: check failed**: {p}" for p in r.problems]
    return out


def render(results: list[H.RunResult], command: str, seconds: float, stream: H.Stream | None,
           clean: H.Outcome | None, control: H.Comparison | None, volume: list[V.VolumeResult] | None = None) -> str:
    out = [TITLE, "",
           f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores "
           f"({platform.python_implementation()} {platform.python_version()}), in {seconds / 60:.1f} minutes:",
           "", "```sh", command, "```", ""]
    if not results:
        return "\n".join(out + render_volume(volume or [])[1:]) + "\n"
    if stream is not None and clean is not None:
        out += [f"One seeded stream of {stream.size:,} events ({stream.seconds:,.0f} s of event time: the simulator's "
           "three models with a feature drift, a latency regression, a thumbs-down spike and a quality decay), "
           f"one partition per topic. The clean run (one daemon, no faults) stored {len(clean.samples):,} flagged "
           f"samples, {len(clean.alerts)} alerts and {len(clean.triggers)} retrain triggers. Each run below is "
           "compared with it by key: samples by `event_id` (stored, or saved in the join's state still waiting "
           "for their prediction), alerts by alert key, triggers by trigger key; the retraining-queue topic by "
           "its records' keys.", ""]
    if any(r.scenario == "bursts" for r in results):
        out += ["*bursts* runs a stream of its own (sized by its schedule: see its notes below) through the real "
                "daemon, produced at a nominal rate, then the burst, then the nominal rate again, and compares it "
                "with a clean run of that stream (one constant rate, the same settings); its *time to recover* is "
                "the time to drain: from the burst's last message sent to the consumer lag back under one second "
                "of nominal traffic.", ""]
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
        if r.scenario == "bursts":
            out += [f"- bursts on {r.store}: alert differing from its clean run (interleaving, see finding 3): `{a}`"
                    for a in r.comparison.detail["alerts_lost"] + r.comparison.detail["alerts_extra"]]
            continue
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
    parser.add_argument("--scenarios", "--scenario", dest="scenario", default=",".join(SCENARIOS),
                        help=f"comma-separated, from {', '.join(SCENARIOS)}")
    parser.add_argument("--stores", default="sqlite,postgresql",
                        help="stores to run each scenario on (sqlite, postgresql)")
    parser.add_argument("--events", type=int, default=200_000, help="events in the stream")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per kill9 run")
    parser.add_argument("--rate", type=float, default=2_000.0,
                        help="events a second produced while the faulted daemon runs")
    parser.add_argument("--down-s", type=float, default=10.0, help="how long the store is down in db_down")
    parser.add_argument("--broker-down-s", type=float, default=60.0,
                        help="how long the broker is unreachable in broker_down")
    parser.add_argument("--nominal-rate", type=float, default=1_000.0,
                        help="bursts: events a second before and after the burst")
    parser.add_argument("--burst-factor", type=float, default=10.0, help="bursts: the burst's rate, x nominal")
    parser.add_argument("--burst-s", type=float, default=60.0, help="bursts: how long the burst lasts")
    parser.add_argument("--burst-lead-s", type=float, default=10.0, help="bursts: seconds at nominal before it")
    parser.add_argument("--burst-tail-s", type=float, default=20.0, help="bursts: seconds at nominal after it")
    parser.add_argument("--burst-rss-factor", type=float, default=1.5,
                        help="bursts: RSS in and after the burst at most this times the nominal-rate RSS")
    parser.add_argument("--burst-join-max-predictions", type=int, default=0,
                        help="bursts: join.max_predictions of both its runs (0: the default), to make it shed")
    parser.add_argument("--burst-join-max-pending", type=int, default=-1,
                        help="bursts: join.max_pending of both its runs (-1: the default)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages of the hostile scenario (half valid)")
    parser.add_argument("--names", type=int, default=1_000_000,
                        help="predictions of the label-explosion scenario (every name in each new)")
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
    results: list[H.RunResult] = []
    volume: list[V.VolumeResult] = []
    stream: H.Stream | None = None
    clean: H.Outcome | None = None
    control = None
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, \
            EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        folder = Path(tmp)
        if {"kill9", "db_down"} & set(scenarios):
            stream = H.make_stream(args.events, args.seed)
            print(f"stream: {stream.size:,} events; clean run ...", flush=True)
            # Produced while the daemon runs, at the faulted runs' rate: a backlog read from the
            # start interleaves the two topics otherwise, and the feedback alerts follow that.
            clean = H.clean_run(broker.bootstrap, stream, "sqlite", folder, args.timeout, rate=args.rate)
            if not args.no_control:
                print("control: a second clean run ...", flush=True)
                control = H.compare(clean, H.clean_run(broker.bootstrap, stream, "sqlite", folder, args.timeout,
                                                       rate=args.rate))
        if "kill9" in scenarios:
            assert stream is not None and clean is not None
            for store in stores:
                print(f"kill9 on {store}: {args.kills} kills ...", flush=True)
                results.append(H.kill9(broker.bootstrap, stream, clean, store, folder, args.kills, args.seed,
                                       args.rate, args.timeout))
                print(row(results[-1]), flush=True)
        if "db_down" in scenarios:
            assert stream is not None and clean is not None
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
        if "bursts" in scenarios:
            schedule = B.Schedule(args.nominal_rate, args.burst_factor, args.burst_s, args.burst_lead_s,
                                  args.burst_tail_s)
            overrides = {"join_max_predictions": args.burst_join_max_predictions,
                         "join_max_pending": args.burst_join_max_pending}
            burst_stream = H.make_stream(schedule.events, args.seed)
            for store in stores:
                print(f"bursts on {store}: {burst_stream.size:,} events ({schedule.describe()}); its clean run at "
                      f"{args.rate:,.0f}/s ...", flush=True)
                burst_clean = B.clean_run(broker.bootstrap, burst_stream, store, folder, args.rate, args.timeout,
                                          **overrides)
                print(f"bursts on {store}: the burst ...", flush=True)
                results.append(B.bursts(broker.bootstrap, burst_stream, burst_clean, store, folder, schedule,
                                        args.timeout, args.burst_rss_factor, **overrides))
                print(row(results[-1]), flush=True)
        if "hostile" in scenarios:
            print(f"hostile: {args.messages:,} messages ...", flush=True)
            volume.append(V.hostile(broker.bootstrap, folder, args.messages, args.seed, max(args.timeout, 1800)))
            print(volume_row(volume[-1]), flush=True)
        if "explosion" in scenarios:
            print(f"explosion: {args.names:,} predictions ...", flush=True)
            volume.append(V.explosion(broker.bootstrap, folder, args.names, max(args.timeout, 1800)))
            print(volume_row(volume[-1]), flush=True)
    section = render(results, command, time.monotonic() - started, stream, clean, control, volume)
    print(section)
    if not args.no_write:
        text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
        RESULTS_MD.write_text(replace_section(text, section, TITLE))
    # bursts fails on its own checks (B.bursts: alerts that depend on interleaving do not count).
    return 0 if (all(r.comparison.exact for r in results if r.scenario != "bursts")
                 and not any(r.facts.get("problems") for r in results)
                 and not any(v.problems for v in volume)) else 1


if __name__ == "__main__":
    sys.exit(main())
