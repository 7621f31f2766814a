"""Volume scenarios of the chaos harness: hostile input, and label explosions.

Both send a backlog to a run's topics on the embedded broker, start the real daemon
(``python -m monitor run``, a SQLite store), sample its resident memory from
``/proc/PID/status`` while it reads, scrape ``/metrics``, and stop it gracefully.

- ``hostile``: messages of ``generators.hostile_messages`` (about half valid, the rest
  hostile, each with the reason the contract gives it). The dead-letter topic is read
  back and every dead letter matched to its message by key: each hostile message must
  be dead-lettered exactly once with its reason, no valid one at all, and
  ``model_monitor_events_total`` must count exactly the valid ones.
- ``explosion``: predictions of ``generators.explosion_events`` (every name new). The
  series of every metric family are counted against the documented bounds, and the
  folds on ``model_monitor_bound_overflow_total`` against the counts the stream implies.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.chaos import harness as H
from benchmarks.chaos.generators import explosion_events, hostile_messages
from monitor.broker import free_port
from monitor.config import Settings
from monitor.model_state import WATCHES


@dataclass
class VolumeResult:
    """One volume scenario's run."""

    scenario: str
    messages: int
    faults: int  # hostile messages, or distinct names per dimension
    lost: int
    duplicated: int
    crashes: int  # daemon exits before the graceful stop, plus a non-zero exit code at it
    rss_max_mb: float
    seconds: float  # from the daemon ready to the whole backlog committed
    runs: int = 1
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what failed a check: findings

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


class RssSampler:
    """VmRSS of a process every ``every_s`` seconds, from /proc (kB -> MB)."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float]] = []  # (monotonic, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def read(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, ValueError):
            return None
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.read()
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def max_mb(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)

    def at_share(self, share: float) -> float:
        """RSS at a share (0..1) of the sampled time."""
        if not self.samples:
            return 0.0
        return self.samples[min(len(self.samples) - 1, int(share * len(self.samples)))][1]


def produce(bootstrap: str, settings: Settings, records: Iterable[tuple[int, bytes, bytes | None]]) -> dict[str, int]:
    """Send (topic 0/1, key, value) records, all acknowledged; return the end offset of each topic."""
    topics = (settings.topics.tracking, settings.topics.feedback)
    ends: dict[str, int] = {}
    lock = threading.Lock()

    def acked(meta: Any) -> None:
        with lock:
            ends[meta.topic] = max(ends.get(meta.topic, 0), meta.offset + 1)

    errors: list[BaseException] = []
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=1 << 20,
                             max_request_size=8 << 20)
    try:
        for topic, key, value in records:
            producer.send(topics[topic], key=key, value=value).add_callback(acked).add_errback(errors.append)
        producer.flush(300)
    finally:
        producer.close()
    if errors:
        raise H.ChaosError(f"{len(errors)} records were not acknowledged: {errors[0]!r}")
    return ends


def scrape(daemon: H.Daemon) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``/metrics`` as family name -> [(labels, value)] (histograms: their _count samples)."""
    response = daemon.get("/metrics")
    if response is None or response.status_code != 200:
        raise H.ChaosError("/metrics did not answer")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        name = family.name + ("_total" if family.type == "counter" else "")
        samples = [s for s in family.samples if family.type != "histogram" or s.name.endswith("_count")]
        if family.type == "counter":
            samples = [s for s in samples if s.name.endswith("_total")]
        out[name] = [(dict(s.labels), s.value) for s in samples]
    return out


def _total(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, by: str | None = None) -> Any:
    rows = metrics.get(name, [])
    if by is None:
        return sum(v for _, v in rows)
    out: Counter[str] = Counter()
    for labels, value in rows:
        out[labels[by]] += int(value)
    return out


def _run_daemon(bootstrap: str, folder: Path, name: str, ends: dict[str, int], settings: Settings,
                timeout_s: float, midway: Any = None) -> tuple[H.Daemon, RssSampler, float, Any]:
    """Start the daemon on a produced backlog; wait until it committed all of it (calling
    ``midway(daemon)`` once half is committed). Returns the daemon (still running), the
    RSS samples, the seconds from ready to all committed, and what ``midway`` returned."""
    daemon = H.daemon_for(settings, folder, name)
    offsets = H.Offsets(bootstrap, settings.kafka.group_id, [settings.topics.tracking, settings.topics.feedback])
    total = sum(ends.values())
    try:
        daemon.start()
        assert daemon.proc is not None
        rss = RssSampler(daemon.proc.pid).start()
        H.wait_until(lambda: daemon.alive() and H._ready(daemon)[0], timeout_s, "the daemon to be ready")
        ready = time.monotonic()
        half = None
        if midway is not None:
            H.wait_until(lambda: daemon.alive() and offsets.total() >= total // 2, timeout_s,
                         "half the backlog committed", poll_s=0.2)
            half = midway(daemon)

        def consumed() -> bool:
            committed = offsets.committed()
            return all(committed.get((topic, 0), 0) >= n for topic, n in ends.items())

        H.wait_until(lambda: daemon.alive() and consumed(), timeout_s, "the backlog to be committed", poll_s=0.2)
        return daemon, rss, time.monotonic() - ready, half
    finally:
        offsets.close()


def _crashes(daemon: H.Daemon, code: int | None) -> int:
    return int(code not in (0, None))


def _tracebacks(log: Path) -> int:
    try:
        return log.read_text(errors="replace").count("Traceback (most recent call last)")
    except OSError:
        return 0


def read_dead_letters(bootstrap: str, topic: str, expected: int, timeout_s: float) -> tuple[
        dict[int, list[str]], list[str]]:
    """The dead-letter topic: reasons by message index (from the key ``h-<index>``), and
    the reasons of records whose key names no message."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000,
                             fetch_max_bytes=64 << 20, max_partition_fetch_bytes=16 << 20)
    by_index: dict[int, list[str]] = defaultdict(list)
    strays: list[str] = []
    seen = 0
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            got = 0
            for batch in consumer.poll(timeout_ms=200, max_records=50_000).values():
                for record in batch:
                    got += 1
                    reason = dict(record.headers).get("monitor.reason", b"?").decode()
                    key = record.key.decode() if record.key else ""
                    if key.startswith("h-"):
                        by_index[int(key[2:])].append(reason)
                    else:
                        strays.append(reason)
            seen += got
            if got:
                quiet_since = time.monotonic()
            elif seen >= expected and time.monotonic() - quiet_since > 2.0:
                break
    finally:
        consumer.close()
    return by_index, strays


# -- hostile input --------------------------------------------------------------------------
def hostile(bootstrap: str, folder: Path, messages: int, seed: int, timeout_s: float,
            valid_share: float = 0.5, huge_share: float = 0.001) -> VolumeResult:
    """``messages`` from the hostile generator through the daemon; every one accounted for."""
    with H.store_url("sqlite", folder) as url:
        settings = H.run_settings(bootstrap, folder, url, free_port())
        c = settings.collect
        H.create_topics(bootstrap, settings)
        expected: list[str | None] = []
        cases: Counter[str] = Counter()

        def records() -> Iterator[tuple[int, bytes, bytes | None]]:
            for m in hostile_messages(messages, seed, time.time(), valid_share, c.max_message_bytes,
                                      c.max_features, c.max_string_length, c.max_depth, huge_share):
                expected.append(m.expected)
                cases[m.case] += 1
                yield m.topic, m.key, m.value

        started = time.monotonic()
        ends = produce(bootstrap, settings, records())
        produce_s = time.monotonic() - started
        bad_expected = sum(1 for e in expected if e is not None)
        valid = len(expected) - bad_expected
        daemon, rss, seconds, _ = _run_daemon(bootstrap, folder, "hostile", ends, settings, timeout_s)
        try:
            metrics = scrape(daemon)
            letters, strays = read_dead_letters(bootstrap, settings.topics.deadletter, bad_expected, timeout_s)
        finally:
            alive_until_stop = daemon.running
            code = daemon.stop()
            rss.stop()
    # Compare message by message.
    mismatch: Counter[tuple[str, str]] = Counter()
    lost = duplicated = valid_rejected = 0
    got_reasons: Counter[str] = Counter()
    for index, want in enumerate(expected):
        got = letters.get(index, [])
        got_reasons.update(got)
        if len(got) > 1:
            duplicated += len(got) - 1
        if want is None:
            if got:
                valid_rejected += 1
                mismatch[("valid", got[0])] += 1
            continue
        if not got:
            lost += 1
            mismatch[(want, "none")] += 1
        elif got[0] != want:
            mismatch[(want, got[0])] += 1
    events = int(_total(metrics, "model_monitor_events_total"))
    invalid = _total(metrics, "model_monitor_invalid_events_total", by="reason")
    want_reasons = Counter(e for e in expected if e is not None)
    problems = []
    if mismatch:
        problems.append("messages whose dead letter differs from the generator's reason: " + ", ".join(
            f"{w} -> {g}: {n}" for (w, g), n in mismatch.most_common()))
    if events != valid:
        problems.append(f"model_monitor_events_total is {events:,}; {valid:,} valid messages were sent")
    if dict(invalid) != dict(want_reasons):
        problems.append(f"model_monitor_invalid_events_total by reason differs: {dict(invalid)} != "
                        f"{dict(want_reasons)}")
    if strays:
        problems.append(f"{len(strays)} dead letters with a key that names no message")
    crashes = int(not alive_until_stop) + _crashes(daemon, code)
    if crashes:
        problems.append(f"the daemon did not stay up (exit code {code})")
    return VolumeResult("hostile", len(expected), bad_expected, lost + max(0, valid - events), duplicated, crashes,
                          rss.max_mb, seconds, facts={
                              "valid": valid, "bad": bad_expected, "events_total": events,
                              "dead_letters": sum(len(v) for v in letters.values()) + len(strays),
                              "valid_rejected": valid_rejected, "exit_code": code, "produce_s": produce_s,
                              "rss_quarters_mb": [round(rss.at_share(q), 1) for q in (0.25, 0.5, 0.75, 1.0)],
                              "reasons": dict(sorted(want_reasons.items())), "cases": dict(sorted(cases.items())),
                              "mismatch": {f"{w} -> {g}": n for (w, g), n in mismatch.items()},
                              "tracebacks": _tracebacks(daemon.log)},
                          problems=problems)


# -- label explosions -------------------------------------------------------------------------
def series_by_family(metrics: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, int]:
    return {name: len(rows) for name, rows in metrics.items() if name.startswith("model_monitor_")}


def bounds_of(settings: Settings) -> dict[str, int]:
    """Upper bounds on the distinct label values a stream can make, from the settings (the
    README's metrics and configuration tables): models (and the ``__other__`` model),
    model versions per model, features and prediction fields per version (each a track of
    at most ``max_features``, and the model-wide watches beside them), segment keys per model and values per key (and
    ``__other__``)."""
    d, sg = settings.detect, settings.segments
    return {"models": d.max_models + 1, "versions": (d.max_models + 1) * d.max_versions,
            "features_per_version": 2 * d.max_features + len(WATCHES), "segment_keys": (d.max_models + 1) * sg.max_keys,
            "segment_values_per_key": sg.max_values + 1}


def check_series(metrics: dict[str, list[tuple[dict[str, str], float]]], settings: Settings) -> tuple[
        dict[str, int], list[str]]:
    """Distinct label values per bounded dimension over every family, and what exceeds a bound."""
    bounds = bounds_of(settings)
    models: set[str] = set()
    versions: set[tuple[str, str]] = set()
    features: dict[tuple[str, str], set[str]] = defaultdict(set)
    keys: set[tuple[str, str]] = set()
    values: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for name, rows in metrics.items():
        if not name.startswith("model_monitor_"):
            continue
        for labels, _ in rows:
            if "model" in labels:
                models.add(labels["model"])
                if "model_version" in labels:
                    versions.add((labels["model"], labels["model_version"]))
                    if "feature" in labels:
                        features[(labels["model"], labels["model_version"])].add(labels["feature"])
                if "segment" in labels:
                    keys.add((labels["model"], labels["segment"]))
                    values[(name, labels["model"], labels["segment"])].add(labels["value"])
    seen = {"models": len(models), "versions": len(versions),
            "features_per_version": max(map(len, features.values()), default=0),
            "segment_keys": len(keys), "segment_values_per_key": max(map(len, values.values()), default=0)}
    problems = [f"{what}: {seen[what]:,} distinct, the bound is {bound:,}" for what, bound in bounds.items()
                if seen[what] > bound]
    return seen, problems


def expected_folds(events: int, settings: Settings) -> dict[str, int]:
    """What ``model_monitor_bound_overflow_total`` must count for ``explosion_events(events)``
    (see its docstring for the stream): the first ``max_models`` distinct models are
    tracked (``explode`` and the first new ones), every event of a later one is a fold;
    ``explode``'s version ``v0`` tracks ``max_features`` features (``price``, ``cat`` and
    the first new ones) and every later new feature is one dropped; ``explode`` watches
    ``max_keys`` segment keys (``region`` and the first new ones) and ``max_values``
    regions; each model counts ``max_slices`` segment combinations, the rest fold (the
    models past ``max_models`` share one ``__other__`` table)."""
    d, sg, slices = settings.detect, settings.segments, settings.badcases.max_slices
    new_models = len(range(0, events, 3))
    explode = events - new_models
    v0 = len(range(2, events, 3))
    tracked_new = min(new_models, d.max_models - (1 if explode else 0))
    other_models = new_models - tracked_new
    return {"models": other_models,
            "features": max(0, v0 - (d.max_features - 2)),
            "segment_keys": max(0, explode - (sg.max_keys - 1)),
            "segment_values": max(0, explode - sg.max_values),
            "traffic_slices": max(0, explode - slices) + max(0, other_models - slices)}


def explosion(bootstrap: str, folder: Path, events: int, timeout_s: float, seed: int = 0) -> VolumeResult:
    """``events`` predictions, every name new, through the daemon: series and memory bounded, folds counted."""
    with H.store_url("sqlite", folder) as url:
        settings = H.run_settings(bootstrap, folder, url, free_port())
        H.create_topics(bootstrap, settings)
        started = time.monotonic()
        ends = produce(bootstrap, settings, ((0, e["request_id"].encode(), orjson.dumps(e))
                                             for e in explosion_events(events, time.time(), seed)))
        produce_s = time.monotonic() - started
        daemon, rss, seconds, half = _run_daemon(bootstrap, folder, "explosion", ends, settings, timeout_s,
                                                 midway=lambda d: (scrape(d), RssSampler(d.proc.pid).read()))
        try:
            metrics = scrape(daemon)
        finally:
            alive_until_stop = daemon.running
            code = daemon.stop()
            rss.stop()
    seen, problems = check_series(metrics, settings)
    series = series_by_family(metrics)
    series_half = series_by_family(half[0])
    grew = {name: (series_half.get(name, 0), n) for name, n in series.items() if n > series_half.get(name, 0)}
    folds = {k: int(v) for k, v in _total(metrics, "model_monitor_bound_overflow_total", by="bound").items()}
    want = expected_folds(events, settings)
    for bound, n in want.items():
        if folds.get(bound, 0) != n:
            problems.append(f"bound_overflow_total{{bound={bound!r}}} is {folds.get(bound, 0):,}; the stream "
                            f"implies {n:,}")
    events_total = int(_total(metrics, "model_monitor_events_total"))
    crashes = int(not alive_until_stop) + _crashes(daemon, code)
    if crashes:
        problems.append(f"the daemon did not stay up (exit code {code})")
    return VolumeResult("explosion", events, events, max(0, events - events_total), max(0, events_total - events),
                        crashes, rss.max_mb, seconds, facts={
                            "distinct_label_values": seen, "bounds": bounds_of(settings), "folds": folds,
                            "folds_expected": want, "series_total": sum(series.values()),
                            "series_total_at_half": sum(series_half.values()), "series_grew": grew,
                            "series_by_family": series, "rss_at_half_mb": half[1], "exit_code": code,
                            "events_total": events_total, "produce_s": produce_s,
                            "rss_quarters_mb": [round(rss.at_share(q), 1) for q in (0.25, 0.5, 0.75, 1.0)],
                            "tracebacks": _tracebacks(daemon.log)},
                        problems=problems)
