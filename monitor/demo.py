"""``monitor demo``: the whole feedback loop on this machine, in one command.

It starts the embedded broker, creates the topics, runs the daemon (SQLite store in
a temporary folder) and a simulator that plays production traffic and injects four
faults at announced times, then shows what the daemon sees and flags, what reaches
the retraining queue, and whether each fault was caught. The broker and the daemon
are stopped on every exit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from collectors.contract import Alert
from collectors.kafka import KafkaSink
from common.errors import MonitorError
from monitor import badcases
from monitor.broker import EmbeddedBroker, free_port
from monitor.config import Settings, load_settings
from monitor.exit_codes import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_STARTUP
from monitor.metrics import FLAGGED_SAMPLES, INVALID_EVENTS, JOIN
from monitor.pipeline import BatchResult
from monitor.report import render_html
from monitor.service import Service
from monitor.simulator import (
    DEFAULT_MODELS,
    EXPECTED_ALERT,
    SPIKE_REGION,
    Fault,
    TrafficSimulator,
    canary_version,
    default_faults,
)
from retrain.store import SampleStore

FAULT_NAMES = {
    "feature_drift": "feature drift",
    "latency_regression": "latency regression",
    "feedback_spike": "thumbs-down spike",
    "quality_decay": "quality decay",
    "segment_spike": "segment spike",
    "canary_regression": "canary regression",
}
TICK_S = 0.1


@dataclass
class Detection:
    fault: Fault
    alert: Alert | None = None
    delay_s: float | None = None


class Console:
    """Timestamped lines, in colour on a terminal."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.color = sys.stdout.isatty()

    def line(self, text: str, color: str = "") -> None:
        stamp = f"[t+{time.monotonic() - self.started:6.1f}s]"
        if self.color and color:
            codes = {"red": "31;1", "yellow": "33;1", "green": "32", "dim": "2"}
            text = f"\033[{codes[color]}m{text}\033[0m"
        print(f"{stamp} {text}", flush=True)


def versus(score: float, threshold: float) -> str:
    """``score S > T`` with a true sign (``>=`` at equality, ``<`` below), and digits enough
    that a score above its threshold does not print as equal to it.

    >>> versus(10.04, 10.0), versus(10.0, 10.0), versus(0.261, 0.148)
    ('score 10.04 > 10', 'score 10 >= 10', 'score 0.261 > 0.148')
    """
    sign = ">" if score > threshold else ">=" if score == threshold else "<"
    for digits in range(3, 18):
        shown, line = f"{score:.{digits}g}", f"{threshold:.{digits}g}"
        if shown != line or score == threshold:
            break
    return f"score {shown} {sign} {line}"


def _pick_port(preferred: int) -> int:
    """``preferred`` if it is free, else (or for 0) a free port, so the header can show it."""
    if preferred:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    return free_port()


class Demo:
    def __init__(self, duration: float | None, rate: float, seed: int, metrics_port: int, keep: bool) -> None:
        self.duration = duration
        self.rate = rate
        self.seed = seed
        self.metrics_port = metrics_port
        self.keep = keep
        self.faults = default_faults(duration)
        self.detections = [Detection(f) for f in self.faults]
        self.unexpected: list[Alert] = []
        self.alerts = 0
        #: Messages the daemon processed and committed, counted by ``_on_batch``.
        self.read = 0
        self.stopping = asyncio.Event()
        self.produced = 0
        self.queue: Counter[str] = Counter()
        self.start_ts = time.time()
        self.console = Console(time.monotonic())
        self.service: Service | None = None
        self.interrupted = False

    # -- wiring ---------------------------------------------------------------------
    def settings(self, bootstrap: str, folder: Path) -> Settings:
        return load_settings(environ={}, overrides={
            "kafka": {"bootstrap_servers": bootstrap, "session_timeout_ms": 6000, "rebalance_timeout_ms": 5000,
                      "heartbeat_interval_ms": 1000, "connect_timeout_s": 15.0, "group_id": "model-monitor-demo"},
            "store": {"url": f"sqlite:///{folder / 'monitor.db'}"},
            # The simulator's feedback arrives within 8 s: a shorter burn-in fits the demo's minute.
            "detect": {"feedback_burn_in_s": 10.0},
            "http": {"host": "127.0.0.1", "port": _pick_port(self.metrics_port)},
            # A short push interval, and every drift or decay alert counts as severe, so the
            # queue and the immediate retrain triggers show within the demo's minute.
            "retrain": {"push_interval_s": 2.0, "severe_factor": 1.0, "severe_cooldown_s": 600.0},
            "datasets": {"dir": str(folder / "datasets")},
            "service": {"shutdown_timeout_s": 15.0},
        })

    async def run(self) -> int:
        folder = Path(tempfile.mkdtemp(prefix="model-monitor-demo-"))
        self._log_to(folder / "daemon.log")
        broker = EmbeddedBroker(log_path=folder / "broker.log")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            bootstrap = await asyncio.to_thread(broker.start)
            settings = self.settings(bootstrap, folder)
            return await self._run_with(settings, bootstrap, folder)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            broker.stop()
            if self.keep:
                print(f"kept {folder} (monitor.db, daemon.log, broker.log)")
            else:
                shutil.rmtree(folder, ignore_errors=True)

    def _on_signal(self) -> None:
        """First Ctrl-C: stop the traffic, let the daemon drain. Then: hurry the daemon up."""
        self.interrupted = True
        if self.stopping.is_set() and self.service is not None:
            self.service.request_exit()
        self.stopping.set()

    def _log_to(self, path: Path) -> None:
        """The daemon's log goes to a file; the console shows the demo's view and errors."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            handler.setLevel(logging.ERROR)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        for noisy in ("aiokafka", "kafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    async def _run_with(self, settings: Settings, bootstrap: str, folder: Path) -> int:
        self.service = service = Service(settings, observers=(self._on_batch,))
        self._header(bootstrap, settings, folder)
        daemon = asyncio.create_task(service.run())
        if not await self._wait_ready(daemon):
            if not daemon.done():
                service.request_exit()
            code = await daemon
            if self.interrupted:
                return EXIT_INTERRUPTED
            print("the daemon did not start; see daemon.log (run with --keep)", file=sys.stderr)
            return code or EXIT_STARTUP
        # The clock of the schedule starts with the traffic.
        self.start_ts = time.time()
        self.console = Console(time.monotonic())
        self.console.line("daemon ready: consumer group joined, partitions assigned; traffic starts", "green")
        tasks = [asyncio.create_task(self._simulate(settings)),
                 asyncio.create_task(self._read_queue(settings)),
                 asyncio.create_task(self._report())]
        with contextlib.suppress(TimeoutError):  # the duration ran out
            await asyncio.wait_for(self.stopping.wait(), self.duration)
        self.stopping.set()
        await tasks[0]
        await self._drain(service)
        if not service.should_exit:
            service.request_exit()
        code = await daemon
        await asyncio.sleep(0.5)  # let the queue reader see the final push
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        return self._summary(code, settings, folder)

    async def _wait_ready(self, daemon: asyncio.Task[int], timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not daemon.done() and not self.stopping.is_set():
            service = self.service
            if service is not None and service.health.ready()[0]:
                return True
            await asyncio.sleep(0.1)
        return False

    async def _drain(self, service: Service, timeout_s: float = 10.0) -> None:
        """Give the daemon a moment to read what was produced, so the summary is complete."""
        deadline = time.monotonic() + timeout_s
        while service.committed < self.produced and time.monotonic() < deadline and not service.should_exit:
            await asyncio.sleep(0.1)

    # -- the three tasks ------------------------------------------------------------
    async def _simulate(self, settings: Settings) -> None:
        sim = TrafficSimulator(seed=self.seed, start_ts=self.start_ts, faults=self.faults)
        sink = KafkaSink(settings.kafka.bootstrap_servers)
        await sink.start(10.0)
        announced: set[int] = set()
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        try:
            while not self.stopping.is_set():
                for i, fault in enumerate(self.faults):
                    if i not in announced and sim.elapsed >= fault.start_s:
                        announced.add(i)
                        self.console.line(f">>> INJECT {FAULT_NAMES[fault.kind]}: {fault.note} "
                                          f"(expect {EXPECTED_ALERT[fault.kind]})", "yellow")
                tracking: list[tuple[bytes | None, bytes | None, None]] = []
                feedback: list[tuple[bytes | None, bytes | None, None]] = []
                for event in sim.advance(TICK_S, self.rate):
                    if isinstance(event, bytes):
                        tracking.append((None, event, None))
                        continue
                    record = (event["request_id"].encode(), orjson.dumps(event), None)
                    (feedback if event["type"] == "feedback" else tracking).append(record)
                await sink.send_all(settings.topics.tracking, tracking)
                await sink.send_all(settings.topics.feedback, feedback)
                self.produced += len(tracking) + len(feedback)
                next_tick += TICK_S
                await asyncio.sleep(max(0.0, next_tick - loop.time()))
        finally:
            await sink.stop()

    async def _read_queue(self, settings: Settings) -> None:
        """Read the retraining topic, as a training pipeline would, and count what arrives."""
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(settings.topics.retrain) or {0}
            consumer.assign([TopicPartition(settings.topics.retrain, p) for p in partitions])
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        message = orjson.loads(record.value)
                        if message.get("type") == "retrain_trigger":
                            self.queue["trigger:" + message["reason"]] += 1
                            self.console.line(f"retrain trigger for {message['model']} ({message['reason']}) "
                                              "sent to the retraining queue", "yellow")
                        else:
                            self.queue[message["reason"]] += 1
        finally:
            await consumer.stop()

    async def _report(self, every_s: float = 5.0) -> None:
        service = self.service
        last_count, last_time = 0, time.monotonic()
        while service is not None:
            await asyncio.sleep(every_s)
            m, now = service.metrics, time.monotonic()
            read = self.read
            samples = sum(v for k, v in self.queue.items() if not k.startswith("trigger:"))
            self.console.line(
                f"read {read:,} ({(read - last_count) / (now - last_time):,.0f}/s)  "
                f"bad input {m.total(INVALID_EVENTS):,.0f}  "
                f"feedback joined {m.total(JOIN, outcome='matched'):,.0f}  "
                f"flagged {m.total(FLAGGED_SAMPLES):,.0f}  "
                f"in retraining queue {samples:,}  alerts {self.alerts}", "dim")
            last_count, last_time = read, now

    # -- what the daemon saw --------------------------------------------------------
    def _on_batch(self, result: BatchResult) -> None:
        """The daemon's observer (an ``Observer`` sink, after each commit): what it read and raised."""
        self.read += result.messages
        for alert in result.alerts:
            self.alerts += 1
            where = f"{alert.model} {alert.model_version or ''} {alert.feature or ''}".strip()
            if alert.segment:
                where += " " + ",".join(f"{k}={v}" for k, v in alert.segment.items())
            if alert.baseline_version:
                where += f" vs {alert.baseline_version}"
            self.console.line(f"ALERT {alert.kind:<17} {where:<32} {alert.detector} "
                              f"{versus(alert.score, alert.threshold)}", "red")
            if not self._match(alert):
                self.unexpected.append(alert)

    @staticmethod
    def _versions(model: str) -> tuple[str, ...]:
        """The versions a model serves when no canary is rolling out."""
        return tuple(m.version for m in DEFAULT_MODELS if m.name == model)

    def _match(self, alert: Alert) -> bool:
        """Tie an alert to the injected fault it reveals; False if it matches none."""
        for detection in self.detections:
            fault = detection.fault
            if fault.model != alert.model or alert.ts < self.start_ts + fault.start_s:
                continue
            expected = EXPECTED_ALERT[fault.kind]
            found = alert.kind == expected
            if fault.kind == "feature_drift":
                # The drifted feature moves the model's scores too: prediction drift is related.
                related = (alert.kind == "data_drift" and alert.feature == fault.feature
                           and alert.detector != "missing_rate") or alert.kind == "prediction_drift"
            elif fault.kind == "segment_spike":
                # The region's spike lifts the whole model's rate a little too: related, not the find.
                related = found
                found = found and alert.segment == {"region": SPIKE_REGION}
            elif fault.kind == "canary_regression":
                # The slow canary also burns its own latency SLO: related, not the find.
                canary = {canary_version(v) for v in self._versions(fault.model)}
                related = alert.model_version in canary
                found = found and related
            else:
                related = found
            if related:
                if detection.alert is None and found:
                    detection.alert = alert
                    detection.delay_s = alert.ts - (self.start_ts + fault.start_s)
                return True
        return False

    def _header(self, bootstrap: str, settings: Settings, folder: Path) -> None:
        http = settings.http
        print("model-monitor demo")
        print(f"  broker    {bootstrap} (embedded Tansu, in memory)")
        print(f"  metrics   http://{http.host}:{http.port}/metrics  (also /healthz /readyz /status)")
        print(f"  report    http://{http.host}:{http.port}/report  (the bad cases users report, by category and "
              "priority)")
        print(f"  store     {settings.store.url}")
        print(f"  traffic   {self.rate:,.0f} predictions/s for recsys, fraud and search, with impressions, "
              "clicks, feedback, late labels and ~0.1% bad input")
        print("  faults    " + "\n            ".join(
            f"t+{f.start_s:>4.0f}s  {FAULT_NAMES[f.kind]:<19} {f.note}" for f in self.faults))
        ends = f"after {self.duration:.0f}s" if self.duration else "on Ctrl-C"
        print(f"  ends      {ends} (Ctrl-C ends it early, cleanly)")
        print(f"  logs      {folder}/daemon.log")
        print(flush=True)

    def _bad_cases(self, settings: Settings, folder: Path) -> None:
        """The end of the summary: the top categories of the bad cases, and the report."""
        store = SampleStore(settings.store.url)
        try:
            report = badcases.report(store, settings, badcases.Selection(), generated_at=time.time())
            datasets = store.dataset_versions()
        finally:
            store.close()
        bands = dict(report.bands)
        print(f"  bad cases: {report.total:,} in {report.groups:,} near-duplicate groups; "
              f"P0 {bands.get('P0', 0):,} (fix this week), P1 {bands.get('P1', 0):,} (fix this month)")
        for row in report.categories[:4]:
            print(f"    {row.category:<14} {row.count:>6,}  {row.share:4.0%}")
        if datasets:
            print(f"  retraining datasets: {', '.join(d['dataset_id'] for d in datasets)} (built by the triggers)")
        path = folder / "report.html"
        path.write_text(render_html(report), encoding="utf-8")
        where = f"{path}" if self.keep else f"{path} (run with --keep to keep it)"
        http = settings.http
        print(f"  report: http://{http.host}:{http.port}/report while the daemon ran; written to {where}")

    def _summary(self, daemon_code: int, settings: Settings | None = None, folder: Path | None = None) -> int:
        elapsed = time.time() - self.start_ts
        print("\nsummary")
        missed = 0
        for d in self.detections:
            injected = d.fault.start_s <= elapsed
            if d.alert is not None and d.delay_s is not None:
                a = d.alert
                scope = "".join((f" on {a.feature}" if a.feature else "",
                                 "".join(f" in {k}={v}" for k, v in (a.segment or {}).items()),
                                 f" of {a.model_version} against {a.baseline_version}" if a.baseline_version else ""))
                outcome = f"detected {d.delay_s:5.1f}s after injection: {a.kind} ({a.detector}{scope})"
            elif injected:
                outcome = "NOT DETECTED"
                missed += 1
            else:
                outcome = "not injected (the demo ended first)"
            print(f"  {FAULT_NAMES[d.fault.kind]:<19} {d.fault.model:<7} t+{d.fault.start_s:>4.0f}s  {outcome}")
        service = self.service
        if service is not None:
            m = service.metrics
            print(f"  messages: {self.produced:,} produced, {service.committed:,} processed and committed; "
                  f"{m.total(INVALID_EVENTS):,.0f} bad input dead-lettered")
            print(f"  alerts: {self.alerts} ({len(self.unexpected)} not tied to an injected fault)")
        samples = {k: v for k, v in self.queue.items() if not k.startswith("trigger:")}
        triggers = {k.removeprefix("trigger:"): v for k, v in self.queue.items() if k.startswith("trigger:")}
        print(f"  retraining queue: {sum(samples.values()):,} samples"
              + (" (" + ", ".join(f"{k} {v:,}" for k, v in sorted(samples.items())) + ")" if samples else "")
              + f", {sum(triggers.values())} retrain triggers"
              + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(triggers.items())) + ")" if triggers else ""))
        if settings is not None and folder is not None:
            try:
                self._bad_cases(settings, folder)
            except MonitorError as exc:  # the demo's verdict is about the faults; say it and go on
                print(f"  bad cases: could not read them: {exc}")
        if daemon_code != EXIT_OK:
            print(f"the daemon exited with code {daemon_code}; see daemon.log (run with --keep)")
            return daemon_code
        if missed:
            print(f"{missed} injected fault(s) were not detected")
            return EXIT_FAILURE
        return EXIT_OK


def run_demo(duration: float | None = None, rate: float = 1000.0, seed: int = 7, metrics_port: int = 9465,
             keep: bool = False) -> int:
    """Run the demo; the exit code is 0 when every injected fault was detected."""
    if duration is not None and duration < 60:
        # The rate detectors first learn their normal (a segment's takes longest): a shorter run
        # injects the spikes before that, or ends before they are seen.
        print("monitor demo: --duration must be at least 60 seconds for the faults to play out", file=sys.stderr)
        return 2
    if rate <= 0:
        print("monitor demo: --rate must be positive", file=sys.stderr)
        return 2
    demo = Demo(duration, rate, seed, metrics_port, keep)
    return asyncio.run(demo.run())
