"""The ``monitor`` command line: a thin layer over the settings and the runners.

Exit codes: 0 success; 1 a failure while running (or a demo fault that was not
detected); 2 bad usage or configuration; 3 start-up failed (broker, store).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from common.errors import ConfigError, FatalError, InputError, OutputError, TransientError
from monitor import __version__
from monitor.config import ENV_PREFIX, Settings, load_settings, reference_markdown, render_toml
from monitor.exit_codes import (
    EXIT_BROKEN_PIPE,
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STARTUP,
)
from monitor.files import check_writable_file

if TYPE_CHECKING:
    from retrain.store import SampleStore

log = logging.getLogger("monitor")

DESCRIPTION = """\
Streaming model monitoring and feedback loop.

Reads prediction and feedback events from Kafka, detects data drift, prediction
drift, metric decay, feedback spikes and SLO burn, serves Prometheus metrics, and
pushes flagged samples (bad cases, drifted data) to a retraining queue.

Start with `monitor demo`: it runs everything on an embedded broker.
"""

EPILOG = f"""\
configuration: one TOML file (-c, or $MONITOR_CONFIG); every key has a default
(`monitor config --defaults` prints them all); {ENV_PREFIX}<SECTION>_<KEY>
environment variables override the file.
exit codes: 0 ok, 1 failure while running, 2 bad usage or config, 3 start-up failed.
"""


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", default=os.environ.get("MONITOR_CONFIG"),
                        help="TOML configuration file (default: $MONITOR_CONFIG, else built-in defaults)")


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL", help="SQLAlchemy URL of the store (default: store.url)")


TIMES = "times (--since, --until): epoch seconds, a date (2026-11-30), a date-time (2026-11-30T08:00:00+08:00, " \
        "UTC without an offset) or an age (7d, 12h, 30m)"


def _add_times(parser: argparse.ArgumentParser, since: str, until: str) -> None:
    parser.add_argument("--since", metavar="T", help=since)
    parser.add_argument("--until", metavar="T", help=until)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"model-monitor {__version__}")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="override service.log_level")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run everything on an embedded broker with simulated traffic and injected faults",
        description="Start an embedded Kafka-compatible broker, the daemon (SQLite store in a temporary "
                    "folder) and a traffic simulator; inject a feature drift, a latency regression, a "
                    "thumbs-down spike, the same in one region only, a slower canary version and a quality "
                    "decay at announced times, and show what the daemon flags. Ends after --duration seconds "
                    "(at least 60; exit 0 when every fault was detected) or on Ctrl-C.")
    demo.add_argument("--duration", type=float, metavar="SECONDS",
                      help="end after this many seconds, with a summary (default: run until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=1000.0, metavar="N",
                      help="predictions per second the simulator plays (default: 1000)")
    demo.add_argument("--seed", type=int, default=7, help="simulator seed (default: 7)")
    demo.add_argument("--metrics-port", type=int, default=9465, metavar="PORT",
                      help="port for /metrics (default: 9465; a free one if that is taken)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary folder (SQLite store, logs)")

    run = commands.add_parser("run", help="run the daemon",
                              description="Consume the tracking and feedback topics until SIGTERM or SIGINT.")
    _add_config(run)

    replay = commands.add_parser(
        "replay", help="run the pipeline over a file of events, no Kafka",
        description="Run the same pipeline over a file of JSON lines (one message per line, '-' for stdin) "
                    "or an Arrow IPC stream file (.arrow, read row by row). Alerts are written as JSON lines; "
                    "at_event is the line (or row) index.")
    replay.add_argument("file", help="events, one JSON object per line, or a .arrow file")
    replay.add_argument("--alerts-out", metavar="FILE", default="-",
                        help="where to write alerts as JSON lines (default: stdout)")
    replay.add_argument("--store", metavar="URL", help="also store flagged samples and alerts (SQLAlchemy URL)")
    replay.add_argument("--metrics-out", metavar="FILE", help="write the final metrics in Prometheus text format")
    replay.add_argument("--batch-size", type=int, default=5000, metavar="N", help="lines per batch (default: 5000)")
    _add_config(replay)

    produce = commands.add_parser(
        "produce", help="send a file of events to a Kafka topic",
        description="Send each line of a file ('-' for stdin) as one message, keyed by request_id; or, with "
                    "--encoding arrow, the events in Arrow IPC batches of --batch-rows per message (header "
                    "content-type: application/vnd.apache.arrow.stream), each to its request_id's partition.")
    produce.add_argument("file", help="events, one JSON object per line, or a .arrow file")
    produce.add_argument("--topic", required=True, help="topic to send to")
    produce.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="override kafka.bootstrap_servers")
    produce.add_argument("--key-field", default="request_id", help="field to key messages by (default: request_id)")
    produce.add_argument("--create-partitions", type=int, metavar="N",
                         help="create the topic with N partitions if it does not exist")
    produce.add_argument("--encoding", choices=("json", "arrow"), default="json",
                         help="one JSON event per message, or Arrow IPC batches of events (default: json)")
    produce.add_argument("--batch-rows", type=int, default=1000, metavar="N",
                         help="events per Arrow message, 1..10000 (default: 1000)")
    _add_config(produce)

    convert = commands.add_parser(
        "convert", help="convert a file of events between JSON lines and an Arrow IPC stream",
        description="Convert IN to OUT, by extension: .jsonl (one JSON event per line) to .arrow (an Arrow IPC "
                    "stream of the same events, as the producer helper writes them) or back. Lines that are not "
                    "JSON objects cannot be rows: they are skipped and counted.")
    convert.add_argument("input", metavar="IN", help="a .jsonl or .arrow file")
    convert.add_argument("output", metavar="OUT", help="a .arrow or .jsonl file (written whole or not at all)")

    baseline = commands.add_parser(
        "baseline", help="store reference distributions from a file (e.g. the training set)",
        description="Sample every feature and prediction field of every model version in a file of prediction "
                    "events (e.g. the training set) and store the samples: those versions are then tested against "
                    "them from their first event instead of against a warm-up.")
    baseline.add_argument("file", help="prediction events, one JSON object per line ('-' for stdin)")
    baseline.add_argument("--store", metavar="URL", help="override store.url")
    _add_config(baseline)

    badcases = commands.add_parser(
        "badcases", help="list the bad cases users reported, by priority",
        description="List the stored bad cases (thumbs-downs, complaints, corrections and late labels that said "
                    "the prediction was wrong), one per feedback event, highest priority first. Each has a "
                    "category (from [[badcases.rules]]), a priority (P0 fix this week, P1 fix this month, P2 plan "
                    "it, P3 backlog; --explain shows the parts of its score) and a near-duplicate group. "
                    "Everything shown is redacted of personal data.",
        epilog=TIMES)
    _add_store(badcases)
    badcases.add_argument("--model", action="append", default=[], metavar="M", help="only this model (repeatable)")
    badcases.add_argument("--version", action="append", default=[], metavar="V",
                          help="only this model version (repeatable)")
    badcases.add_argument("--category", action="append", default=[], metavar="C",
                          help="only this category (repeatable)")
    badcases.add_argument("--segment", action="append", default=[], metavar="KEY=VALUE",
                          help="only cases whose segment has this value (repeatable: all must hold)")
    _add_times(badcases, "only cases at or after this event time",
               "only cases before this event time; priorities are worked out as of then")
    badcases.add_argument("--limit", type=int, metavar="N", help="print at most N lines")
    badcases.add_argument("--format", choices=("table", "jsonl", "csv", "markdown"), default="table",
                          help="table (default), jsonl (every field), csv or markdown")
    badcases.add_argument("--grouped", action="store_true", help="one line per near-duplicate group, with its size")
    badcases.add_argument("--explain", action="store_true", help="show how each case got its priority")
    badcases.add_argument("--recategorise", action="store_true",
                          help="first apply the configured rules again to every stored bad case")
    _add_config(badcases)

    report = commands.add_parser(
        "report", help="write the bad-case report (HTML with charts, and Markdown)",
        description="Write the report of the stored bad cases: counts by category over time, by segment and by "
                    "version, each category's trend, the priority table and the top examples per category "
                    "(redacted). The HTML page is self-contained and opens offline; the daemon also serves it "
                    "at /report.",
        epilog=TIMES)
    _add_store(report)
    report.add_argument("--out", metavar="FILE.html", help="write the HTML report here")
    report.add_argument("--markdown", metavar="FILE.md", help="write the same report as Markdown here")
    report.add_argument("--model", action="append", default=[], metavar="M", help="only this model (repeatable)")
    _add_times(report, "show cases at or after this event time (trends look further back)",
               "only cases before this event time")
    _add_config(report)

    dataset = commands.add_parser(
        "dataset", help="build and list versioned retraining datasets of bad cases",
        description="Build a new version of a model's retraining dataset from its stored bad cases, or list the "
                    "versions built. A version holds the data file, a to_label file (samples from drifted "
                    "windows that need a human label) and manifest.json (counts, sources, sha256 of each file).")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", metavar="ACTION")
    build = dataset_commands.add_parser(
        "build", help="write the next dataset version of a model",
        description="Write the next version of a model's dataset: one record per near-duplicate group of its bad "
                    "cases (the best ranked, with a count), stratified by category and segment, at most "
                    "--max-per-category per category. A sample goes into one version only, unless --include-used.",
        epilog=TIMES)
    build.add_argument("--model", required=True, help="the model whose bad cases make the dataset")
    _add_times(build, "only cases at or after this event time", "only cases before this event time")
    build.add_argument("--max-per-category", type=int, metavar="N",
                       help="most records per category (default: datasets.max_per_category)")
    build.add_argument("--out", metavar="DIR", help="folder of the datasets (default: datasets.dir); MODEL/vN/ in it")
    build.add_argument("--format", choices=("jsonl", "parquet"), help="file format (default: datasets.format)")
    build.add_argument("--include-used", action="store_true",
                       help="also take samples that are in an earlier version")
    _add_store(build)
    _add_config(build)
    listing = dataset_commands.add_parser("list", help="list the dataset versions built",
                                          description="List the dataset versions recorded in the store.")
    listing.add_argument("--model", help="only this model's versions")
    listing.add_argument("--format", choices=("table", "jsonl"), default="table",
                         help="table (default) or jsonl (each version's manifest)")
    _add_store(listing)
    _add_config(listing)

    config = commands.add_parser("config", help="print or check the configuration",
                                 description="Print the effective configuration (defaults, file, environment).")
    config.add_argument("--defaults", action="store_true", help="print the defaults, ignoring file and environment")
    config.add_argument("--check", action="store_true", help="only check; print nothing when it is valid")
    config.add_argument("--markdown", action="store_true", help="print the reference table of the README")
    _add_config(config)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("aiokafka", "kafka", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (see the module docstring)."""
    try:
        try:
            code = _main(argv)
        finally:
            sys.stdout.flush()  # here, not at exit: a closed pipe must be caught below
    except BrokenPipeError:
        # The reader went away (`monitor config --markdown | head -3`): stop quietly, as
        # a tool killed by SIGPIPE does, and let nothing flush to the dead pipe at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    if args.command in ("run", "replay", "demo"):
        tune_gc()
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"monitor: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as exc:  # the user's mistake, not the configuration's
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except FatalError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_STARTUP if args.command in ("run", "demo", "produce") else EXIT_FAILURE
    except TransientError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_STARTUP if args.command in ("run", "demo", "produce") else EXIT_FAILURE
    except KeyboardInterrupt:
        print("monitor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def tune_gc() -> None:
    """Run the young-generation collector every 100,000 allocations instead of 700.

    The hot path makes and drops a few dozen objects per event (decoded events,
    columns), none of them in cycles: at the default threshold a collection ran every
    20 or so events and cost about a tenth of replay's time (measured with gc
    disabled beside it). The cycles that do form are still collected.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(100_000, older, oldest)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from monitor.demo import run_demo  # noqa: PLC0415 - the demo pulls in the simulator

        _setup_logging(args.log_level or "warning")
        return run_demo(duration=args.duration, rate=args.rate, seed=args.seed,
                        metrics_port=args.metrics_port, keep=args.keep)
    if args.command == "config":
        if args.markdown:
            print(reference_markdown())
            return EXIT_OK
        settings = load_settings(None if args.defaults else args.config, environ={} if args.defaults else None)
        if not args.check:
            print(render_toml(settings), end="")
        return EXIT_OK
    if args.command == "convert":
        from monitor.convert import convert  # noqa: PLC0415

        converted = convert(args.input, args.output)
        print(converted.describe(args.input, args.output), file=sys.stderr)
        return EXIT_OK
    settings = load_settings(args.config)
    # produce says what it did on stderr itself: its log shows only what went wrong.
    _setup_logging(args.log_level or ("warning" if args.command == "produce" else settings.service.log_level))
    if args.command == "run":
        from monitor.service import run_daemon  # noqa: PLC0415

        return run_daemon(settings)
    if args.command == "replay":
        from monitor.replay import replay  # noqa: PLC0415

        # Checked before any work: a wrong path must not cost a whole replay.
        if args.alerts_out != "-":
            _check_writable_file(args.alerts_out, "--alerts-out")
        if args.metrics_out:
            _check_writable_file(args.metrics_out, "--metrics-out")
        try:
            out = sys.stdout.buffer if args.alerts_out == "-" else open(args.alerts_out, "wb")  # noqa: SIM115
        except OSError as exc:
            raise OutputError(f"cannot write {args.alerts_out}: {exc.strerror}") from None
        try:
            summary = replay(args.file, settings, out, store_url=args.store, batch_size=args.batch_size,
                             metrics_out=args.metrics_out)
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        print(summary.describe(), file=sys.stderr)
        return EXIT_OK
    if args.command == "baseline":
        from monitor.baseline import build  # noqa: PLC0415
        from retrain.store import SampleStore  # noqa: PLC0415

        baselines = build(args.file, settings)
        store = SampleStore(args.store or settings.store.url)
        try:
            stored = store.put_baselines(baselines.baselines)
        finally:
            store.close()
        print(baselines.describe(), file=sys.stderr)
        print(f"stored {stored} reference samples in {store.url}", file=sys.stderr)
        return EXIT_OK
    if args.command == "badcases":
        return _badcases(args, settings)
    if args.command == "report":
        return _report(args, settings)
    if args.command == "dataset":
        return _dataset(args, settings)
    if args.command == "produce":
        from collections import Counter  # noqa: PLC0415

        from collectors.arrow import MAX_ROWS  # noqa: PLC0415
        from monitor.produce import produce  # noqa: PLC0415
        from monitor.service import kafka_client_config  # noqa: PLC0415

        if not 1 <= args.batch_rows <= MAX_ROWS:
            raise ConfigError(f"--batch-rows must be 1..{MAX_ROWS}, got {args.batch_rows}")
        bootstrap = args.bootstrap_servers or settings.kafka.bootstrap_servers
        skipped: Counter[str] = Counter()
        sent = asyncio.run(produce(args.file, args.topic, bootstrap, key_field=args.key_field,
                                   create_partitions=args.create_partitions,
                                   connect_timeout_s=settings.kafka.connect_timeout_s,
                                   kafka_config=kafka_client_config(settings), encoding=args.encoding,
                                   batch_rows=args.batch_rows, skipped=skipped))
        if args.encoding == "arrow":
            print(f"sent {sent:,} events in Arrow batches to {args.topic}" + (
                f"; skipped {sum(skipped.values()):,} lines that cannot be rows (" + ", ".join(
                    f"{k} {v:,}" for k, v in skipped.most_common()) + ")" if skipped else ""), file=sys.stderr)
        else:
            print(f"sent {sent:,} messages to {args.topic}", file=sys.stderr)
        return EXIT_OK
    raise AssertionError(f"unhandled command {args.command}")  # argparse only allows the ones above


def _times(args: argparse.Namespace, now: float) -> tuple[float | None, float | None]:
    """``--since`` and ``--until`` as epoch seconds (None where not given)."""
    from monitor.badcases import parse_time  # noqa: PLC0415

    since, until = (parse_time(value, now=now, what=f"--{name}") if value else None
                    for name, value in (("since", args.since), ("until", args.until)))
    return since, until


def _open_store(args: argparse.Namespace, settings: Settings) -> SampleStore:
    """The store the reading commands read: one that exists (a mistyped SQLite path must
    not become a new, empty store that says there is nothing)."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    from retrain.store import SampleStore  # noqa: PLC0415

    url = args.store or settings.store.url
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"--store {url!r} is not a SQLAlchemy URL (e.g. sqlite:///monitor.db)") from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not os.path.exists(database):
        raise ConfigError(f"no store at {database}: give the daemon's store with --store URL or store.url "
                          "(monitor replay FILE --store URL fills one from a file)")
    return SampleStore(url)


def _badcases(args: argparse.Namespace, settings: Settings) -> int:
    from monitor import badcases as bc  # noqa: PLC0415

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    since, until = _times(args, time.time())
    selection = bc.Selection(
        models=args.model, versions=args.version, categories=args.category, segment=bc.parse_segment(args.segment),
        since=since, until=until)
    store = _open_store(args, settings)
    try:
        if args.recategorise:
            moves = bc.recategorise(store, settings, args.model)
            moved = sum(moves.values())
            print(f"recategorised {moved:,} bad cases" + (": " + ", ".join(
                f"{old} -> {new} {n:,}" for (old, new), n in moves.most_common()) if moves else ""), file=sys.stderr)
        cases = bc.load_cases(store, settings, selection)
    finally:
        store.close()
    shown = bc.select_output(cases, grouped=args.grouped, limit=args.limit)
    if not cases:
        filtered = any((args.model, args.version, args.category, args.segment, args.since, args.until))
        print("monitor: no bad case" + (" matches these filters" if filtered else " is stored yet: the daemon stores "
              "thumbs-downs, complaints, corrections and wrong late labels as they arrive (monitor replay FILE "
              "--store URL fills a store from a file)") + f"; store {store.url}", file=sys.stderr)
        return EXIT_OK
    bc.write(shown, args.format, sys.stdout, grouped=args.grouped, explain=args.explain)
    sys.stdout.flush()
    print(bc.summary(cases) + (f"; {len(shown):,} shown" if len(shown) < len(cases) else ""), file=sys.stderr)
    return EXIT_OK


def _dataset(args: argparse.Namespace, settings: Settings) -> int:
    import orjson  # noqa: PLC0415

    from monitor.badcases import rules_of  # noqa: PLC0415
    from retrain import datasets  # noqa: PLC0415

    if args.dataset_command is None:
        raise ConfigError("monitor dataset needs an action: build or list (see monitor dataset --help)")
    store = _open_store(args, settings)
    try:
        if args.dataset_command == "list":
            versions = store.dataset_versions(args.model)
            if args.format == "jsonl":
                for v in versions:
                    print(orjson.dumps({**v["manifest"], "path": v["path"]}).decode())
                return EXIT_OK
            print(f"{'dataset':<28} {'created (UTC)':<17} {'records':>8} {'to label':>8}  top categories")
            for v in versions:
                counts = v["manifest"].get("counts", {})
                top = sorted(counts.get("by_category", {}).items(), key=lambda kv: -kv[1])[:3]
                created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(v["created_at"]))
                print(f"{v['dataset_id']:<28} {created:<17} {counts.get('records', 0):>8,} "
                      f"{counts.get('to_label', 0):>8,}  " + ", ".join(f"{k} {n}" for k, n in top))
            if not versions:
                print("(no dataset built yet: monitor dataset build --model M)", file=sys.stderr)
            return EXIT_OK
        d, b = settings.datasets, settings.badcases
        since, until = _times(args, time.time())
        cap = (args.max_per_category if args.max_per_category is not None
               else int(d.for_model(args.model).get("max_per_category", d.max_per_category)))
        options = datasets.DatasetOptions(
            out_dir=args.out or d.dir, fmt=args.format or d.format, max_per_category=cap,
            include_used=args.include_used,
            since=since, until=until)
        _check_writable_dir(options.out_dir, "--out")
        manifest = datasets.build(store, args.model, rules_of(settings), b.weights(), b.duplicate_threshold, options,
                                  {"reason": "manual"})
        models = store.models_since(0.0)
        known = args.model in models
    finally:
        store.close()
    if manifest is None:
        if not known:
            print(f"monitor: the store has no bad case of {args.model!r}"
                  + (f"; models with samples: {', '.join(models)}" if models else ""), file=sys.stderr)
        else:
            print(f"monitor: no bad case of {args.model} is left for a new dataset version: each is in an earlier "
                  "one (--include-used takes them again) or outside --since/--until", file=sys.stderr)
        return EXIT_FAILURE
    counts = manifest["counts"]
    print(manifest["path"])
    print(f"dataset {manifest['dataset_id']}: {counts['records']:,} records standing for {counts['cases']:,} bad "
          f"cases, {counts['to_label']:,} to label; by category: "
          + ", ".join(f"{k} {n}" for k, n in counts["by_category"].items()), file=sys.stderr)
    return EXIT_OK


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from monitor import badcases as bc  # noqa: PLC0415
    from monitor.report import render_html, render_markdown  # noqa: PLC0415

    if not args.out and not args.markdown:
        raise ConfigError("monitor report needs --out FILE.html, --markdown FILE.md or both")
    outputs = [p for p in (args.out, args.markdown) if p]
    for path in outputs:
        _check_writable_file(path, "--out" if path == args.out else "--markdown")
    now = time.time()
    since, until = _times(args, now)
    selection = bc.Selection(models=args.model,
                             since=since, until=until)
    store = _open_store(args, settings)
    try:
        report = bc.report(store, settings, selection, generated_at=now)
    finally:
        store.close()
    for path, text in ((args.out, render_html(report) if args.out else ""),
                       (args.markdown, render_markdown(report) if args.markdown else "")):
        if path:
            try:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as exc:
                raise OutputError(f"cannot write {path}: {exc.strerror}") from None
            print(path)
    top = ", ".join(f"{row.category} {row.count}" for row in report.categories[:3])
    print(f"{report.total:,} bad cases in {report.groups:,} groups" + (f"; top: {top}" if top else ""),
          file=sys.stderr)
    return EXIT_OK


def _check_writable_file(path: str, what: str) -> None:
    """Fail before any work when ``path`` cannot be written."""
    check_writable_file(path, what, ConfigError)


def _check_writable_dir(path: str, what: str) -> None:
    """Fail before any work when ``path`` cannot become a folder we write in."""
    from pathlib import Path  # noqa: PLC0415

    target = Path(path)
    existing = next((p for p in (target, *target.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: cannot write in {existing}")


if __name__ == "__main__":
    sys.exit(main())
