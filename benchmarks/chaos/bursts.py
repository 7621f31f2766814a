"""Bursts: the real daemon on a stream produced at a nominal rate, then ``factor`` times
that for ``burst_s`` seconds, then at the nominal rate again.

Every second the harness samples the daemon's ``/metrics`` (the consumer lag,
``model_monitor_consumer_lag_messages`` summed over the partitions; the bounded buffers'
``model_monitor_bound_entries``, ``_capacity`` and ``_overflow_total`` by bound; the join's
outcomes), its resident memory (``/proc/PID/status`` VmRSS) and the group's committed
offsets. The run's outcome is compared with a clean run of the same stream (produced at one
constant rate, same settings) as kill9 and db_down are.

What is checked (``BurstResult.problems``; a non-empty list fails the run):

- the lag grows during the burst (its maximum in the burst is above the lag seen at the
  nominal rate before it) and comes back near zero after it: at most one second of
  nominal traffic (*time to drain*: from the burst's last message sent to the first
  sample at or under that); at the end the group committed the whole stream;
- resident memory: the burst's and what follows it stay under ``rss_factor`` (1.5) times
  what the same stream takes without a burst (the clean run's largest sample; or the
  nominal rate's before the burst, if larger): the join fills as a run goes on, burst or
  not, so the nominal rate before the burst alone is too low a mark for a long run;
- nothing lost: the store and the retraining queue hold the clean run's samples (lost,
  extra, duplicated: none), except that while a join bound overflows, which labels meet
  their prediction depends on how the topics interleave in a batch, so wrong-label samples
  (flagged only when joined) may differ and are reported, not failed on; alerts that
  depend on how the two topics interleave in a batch (``feedback_spike``,
  ``metric_decay``: the control run shows two clean runs differ in them) are reported,
  not failed on; any other alert difference fails;
- nothing dropped silently: the daemon sheds no input by design (a burst is read more
  slowly: backpressure), so every message sent is either an event
  (``model_monitor_events_total``) or a dead letter (``model_monitor_invalid_events_total``,
  and the dead-letter topic holds exactly that many records). What a burst can shed is
  the bounded buffers' content: each bound's entries never exceed its capacity, an
  evicted prediction is counted on both ``model_monitor_bound_overflow_total{bound=
  "join_predictions"}`` and ``model_monitor_join_total{outcome="evicted"}``, evicted waiting
  feedback (``bound="join_feedback"``) is orphaned (``join_total{outcome="orphaned"}``) and
  its bad cases stored unjoined (they count as kept in the comparison).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer

from benchmarks.chaos import harness as H
from benchmarks.chaos import volume as V
from monitor.broker import free_port
from monitor.config import Settings
from retrain.store import SampleStore

#: Alerts whose firing depends on how the tracking and feedback topics interleave in the
#: daemon's batches (the feedback-rate and error-rate tests): reported, not failed on.
INTERLEAVING_ALERTS = ("feedback_spike", "metric_decay")
#: The largest RSS of the last clean run on each store (the same stream without a burst), for the notes.
CLEAN_RSS_MB: dict[str, float] = {}


@dataclass
class Schedule:
    """``lead_s`` seconds at ``nominal`` events a second, ``burst_s`` at ``factor`` times
    that, ``tail_s`` at ``nominal`` again."""

    nominal: float = 1_000.0
    factor: float = 10.0
    burst_s: float = 60.0
    lead_s: float = 10.0
    tail_s: float = 20.0

    @property
    def burst_rate(self) -> float:
        return self.nominal * self.factor

    @property
    def burst_from(self) -> int:  # messages sent before the burst
        return int(self.nominal * self.lead_s)

    @property
    def burst_to(self) -> int:  # messages sent by the burst's end
        return self.burst_from + int(self.burst_rate * self.burst_s)

    @property
    def events(self) -> int:
        return self.burst_to + int(self.nominal * self.tail_s)

    def due(self, sent: int) -> float:
        """Seconds after the start at which message number ``sent`` is due."""
        if sent <= self.burst_from:
            return sent / self.nominal
        if sent <= self.burst_to:
            return self.lead_s + (sent - self.burst_from) / self.burst_rate
        return self.lead_s + self.burst_s + (sent - self.burst_to) / self.nominal

    def describe(self) -> str:
        return (f"{self.lead_s:g} s at {self.nominal:,.0f} events/s, {self.burst_s:g} s at {self.burst_rate:,.0f} "
                f"({self.factor:g}x), {self.tail_s:g} s at {self.nominal:,.0f}")


class ScheduledProducer(H.Producer):
    """The harness's producer, paced by a ``Schedule`` (every 100 messages), noting when the
    burst began and ended (the moments its first and last message were handed to the client)."""

    def __init__(self, bootstrap: str, settings: Settings, stream: H.Stream, schedule: Schedule) -> None:
        super().__init__(bootstrap, settings, stream, rate=schedule.nominal)
        self.schedule = schedule
        self.started: float | None = None
        self.burst_began: float | None = None
        self.burst_ended: float | None = None
        self.finished: float | None = None

    def acked(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self.ends)

    pace_every = 100

    def _client(self) -> KafkaProducer:
        # Larger batches than the harness's producer: at linger_ms=5 it sent about 3,000 a second here.
        return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20, batch_size=1 << 20)

    def _due(self, sent: int) -> float:
        return self.schedule.due(sent)

    def _before_send(self) -> None:
        s = self.schedule
        if self.started is None:
            self.started = time.monotonic()
        if self.sent == s.burst_from:
            self.burst_began = time.monotonic()
        if self.sent == s.burst_to:
            self.burst_ended = time.monotonic()

    def _finished(self) -> None:
        self.burst_ended = self.burst_ended or time.monotonic()
        self.finished = time.monotonic()


@dataclass
class Sample:
    """One second of the run, as the harness saw it."""

    t: float  # monotonic
    sent: int
    lag: float | None  # model_monitor_consumer_lag_messages, summed; None: /metrics did not answer
    uncommitted: int  # acknowledged by the broker, not yet committed by the group
    rss_mb: float | None
    entries: dict[str, float] = field(default_factory=dict)
    capacity: dict[str, float] = field(default_factory=dict)
    overflow: dict[str, float] = field(default_factory=dict)
    join: dict[str, float] = field(default_factory=dict)


def _by(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, label: str) -> dict[str, float]:
    return {labels[label]: value for labels, value in metrics.get(name, [])}


class Watcher:
    """Samples the daemon every ``every_s`` seconds from a thread of its own (with a client
    for the committed offsets of its own: a Kafka client is not shared between threads)."""

    def __init__(self, daemon: H.Daemon, producer: ScheduledProducer, bootstrap: str, settings: Settings,
                 every_s: float = 1.0) -> None:
        assert daemon.proc is not None
        self.daemon, self.producer, self.every_s = daemon, producer, every_s
        self.rss = V.RssSampler(daemon.proc.pid)
        self.offsets = H.Offsets(bootstrap, settings.kafka.group_id,
                                 [settings.topics.tracking, settings.topics.feedback])
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bursts-watch", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def sample(self) -> Sample:
        now, sent = time.monotonic(), self.producer.sent
        try:
            metrics = V.scrape(self.daemon)
        except H.ChaosError:
            metrics = None
        committed = self.offsets.committed()
        acked = self.producer.acked()
        uncommitted = sum(max(0, n - committed.get(tp, 0)) for tp, n in acked.items())
        if metrics is None:
            return Sample(now, sent, None, uncommitted, self.rss.read())
        return Sample(now, sent, sum(v for _, v in metrics.get("model_monitor_consumer_lag_messages", [])),
                      uncommitted, self.rss.read(),
                      _by(metrics, "model_monitor_bound_entries", "bound"),
                      _by(metrics, "model_monitor_bound_capacity", "bound"),
                      _by(metrics, "model_monitor_bound_overflow_total", "bound"),
                      _by(metrics, "model_monitor_join_total", "outcome"))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.samples.append(self.sample())
            self._stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.offsets.close()


def apply_overrides(settings: Settings, join_max_predictions: int = 0, join_max_pending: int = -1) -> Settings:
    """Smaller join bounds (for both runs), so that a burst has something to shed; 0 / -1: the defaults."""
    if join_max_predictions:
        settings.join.max_predictions = join_max_predictions
    if join_max_pending >= 0:
        settings.join.max_pending = join_max_pending
    return settings


@contextlib.contextmanager
def _run(bootstrap: str, kind: str, folder: Path, name: str, overrides: dict[str, int]) -> Iterator[
        tuple[Settings, H.Daemon, H.Offsets]]:
    with H.store_url(kind, folder) as url:
        settings = apply_overrides(H.run_settings(bootstrap, folder, url, free_port()), **overrides)
        H.create_topics(bootstrap, settings)
        daemon = H.daemon_for(settings, folder, name)
        offsets = H.Offsets(bootstrap, settings.kafka.group_id, [settings.topics.tracking, settings.topics.feedback])
        try:
            yield settings, daemon, offsets
        finally:
            daemon.kill9()
            offsets.close()


def reasons(settings: Settings) -> dict[str, str]:
    """Each stored sample's reason, by event_id."""
    store = SampleStore(settings.store.url, create=False)
    try:
        return {r["event_id"]: r["reason"] for r in store.samples(limit=10_000_000)}
    finally:
        store.close()


def clean_run(bootstrap: str, stream: H.Stream, kind: str, folder: Path, rate: float, timeout_s: float,
              **overrides: int) -> tuple[H.Outcome, dict[str, str]]:
    """The stream at one constant ``rate`` through one daemon with the bursts run's settings:
    its outcome, and its samples' reasons."""
    with _run(bootstrap, kind, folder, f"bursts-clean-{kind}", overrides) as (settings, daemon, offsets):
        producer = H.Producer(bootstrap, settings, stream, rate)
        daemon.start()
        assert daemon.proc is not None
        rss = V.RssSampler(daemon.proc.pid, every_s=1.0).start()
        H.wait_until(lambda: daemon.alive() and H._ready(daemon)[0], timeout_s, "the daemon to be ready")
        producer.start().join()
        H._finish(daemon, bootstrap, settings, offsets, producer.ends, timeout_s)
        rss.stop()
        CLEAN_RSS_MB[kind] = rss.max_mb
        return H.outcome(bootstrap, settings), reasons(settings)


def _phase(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.t < end]


def _max(values: list[float | None]) -> float:
    return max((v for v in values if v is not None), default=0.0)


def bursts(bootstrap: str, stream: H.Stream, clean: tuple[H.Outcome, dict[str, str]], kind: str, folder: Path,
           schedule: Schedule, timeout_s: float, rss_factor: float = 1.5, **overrides: int) -> H.RunResult:
    """The stream produced by ``schedule`` through the real daemon, sampled every second;
    compared with ``clean`` (``clean_run`` of the same stream and settings)."""
    clean, clean_reasons = clean
    if stream.size < schedule.burst_to:
        raise H.ChaosError(f"a stream of {stream.size:,} events is shorter than the burst's end at "
                           f"{schedule.burst_to:,}")
    notes: list[str] = []
    problems: list[str] = []
    with _run(bootstrap, kind, folder, f"bursts-{kind}", overrides) as (settings, daemon, offsets):
        producer = ScheduledProducer(bootstrap, settings, stream, schedule)
        daemon.start()
        H.wait_until(lambda: daemon.alive() and H._ready(daemon)[0], timeout_s, "the daemon to be ready")
        watcher = Watcher(daemon, producer, bootstrap, settings).start()
        try:
            producer.start()
            producer.join(timeout_s + schedule.events / schedule.nominal)
            ends = producer.acked()
            # The whole stream committed; sampling goes on until then, so the drain is seen.
            H.wait_until(lambda: daemon.alive() and sum(offsets.committed().values()) >= sum(ends.values()),
                         timeout_s, "the stream to be consumed", poll_s=0.3)
            time.sleep(1.5)  # a last sample or two at rest
        finally:
            watcher.stop()
        metrics = V.scrape(daemon)  # the whole stream committed: every count final
        counted = V._total(metrics, "model_monitor_invalid_events_total")
        dead_letters = len(H.read_topic(bootstrap, settings.topics.deadletter, lambda r: len(r) >= counted))
        H._finish(daemon, bootstrap, settings, offsets, ends, timeout_s)
        result = H.outcome(bootstrap, settings)
        run_reasons = reasons(settings)
    comparison = H.compare(clean, result)
    samples = watcher.samples
    assert producer.started and producer.burst_began and producer.burst_ended and producer.finished
    lead = _phase(samples, producer.started, producer.burst_began)
    burst = _phase(samples, producer.burst_began, producer.burst_ended + 1.0)
    after = [s for s in samples if s.t >= producer.burst_ended]
    burst_s = producer.burst_ended - producer.burst_began
    achieved = (schedule.burst_to - schedule.burst_from) / burst_s if burst_s else 0.0

    # Lag: grows in the burst, back near zero after it.
    lag_lead = _max([s.lag for s in lead])
    lag_burst = _max([s.lag for s in burst])
    near_zero = schedule.nominal  # one second of nominal traffic
    drained_at = next((s.t for s in after if s.lag is not None and s.lag <= near_zero), None)
    drain_s = drained_at - producer.burst_ended if drained_at is not None else None
    zero_at = next((s.t for s in after if s.lag == 0), None)
    lag_final = samples[-1].lag if samples else None
    if lag_burst <= lag_lead:
        problems.append(f"the lag did not grow in the burst: {lag_burst:,.0f} at most, {lag_lead:,.0f} before it")
    if drain_s is None:
        problems.append(f"the lag did not come back under {near_zero:,.0f} after the burst")
    if lag_final != 0:
        problems.append(f"the lag at the end is {lag_final}, not 0")

    # RSS: the burst's and after within rss_factor of what the stream takes without a burst.
    warm = [s.rss_mb for s in lead[len(lead) // 2:] if s.rss_mb is not None]
    rss_nominal = max(warm) if warm else 0.0
    rss_reference = max(rss_nominal, CLEAN_RSS_MB.get(kind, 0.0))
    rss_burst = _max([s.rss_mb for s in burst])
    rss_after = _max([s.rss_mb for s in after])
    rss_bound = rss_factor * rss_reference
    if not rss_reference or max(rss_burst, rss_after) > rss_bound:
        problems.append(f"RSS {max(rss_burst, rss_after):,.0f} MB in and after the burst, over the bound "
                        f"{rss_bound:,.0f} MB ({rss_factor:g} x {rss_reference:,.0f} MB without the burst)")

    # Nothing lost. When a join bound overflows (in either run), which labels find their
    # prediction depends on the order the two topics' messages meet in a batch, so the
    # wrong-label samples (flagged only when joined) may differ; every other sample must not.
    c = comparison
    overflow = _by(metrics, "model_monitor_bound_overflow_total", "bound")
    join_shed = bool(overflow.get("join_predictions") or overflow.get("join_feedback"))
    lost = (set(clean.samples) | clean.waiting) - (set(result.samples) | result.waiting)
    extra = (set(result.samples) | result.waiting) - (set(clean.samples) | clean.waiting)
    differing = Counter([clean_reasons.get(e, "waiting") for e in lost] + [run_reasons.get(e, "waiting")
                                                                           for e in extra])
    unexplained = sum(n for r, n in differing.items() if not (join_shed and r == "wrong_label"))
    if unexplained or c.store_duplicates or c.queue_missing:
        problems.append(f"samples: {c.lost} lost, {c.extra} extra (by reason: {dict(differing)}), "
                        f"{c.store_duplicates} duplicated in the store, {c.queue_missing} never on the queue topic")
    elif differing:
        notes.append(f"samples differing from the clean run, all wrong labels while a join bound overflowed "
                     f"(which label meets its prediction depends on the batches' interleaving): {c.lost} lost, "
                     f"{c.extra} extra")
    if c.triggers_lost or c.triggers_extra:
        problems.append(f"retrain triggers: {c.triggers_lost} lost, {c.triggers_extra} extra")
    other_alerts = [a for a in c.detail["alerts_lost"] + c.detail["alerts_extra"]
                    if a.split()[0] not in INTERLEAVING_ALERTS]
    if other_alerts:
        problems.append(f"alerts that do not depend on interleaving differ: {other_alerts}")

    # Nothing dropped silently.
    events = V._total(metrics, "model_monitor_events_total")
    invalid = V._total(metrics, "model_monitor_invalid_events_total")
    if events + invalid != producer.sent:
        problems.append(f"{producer.sent:,} messages sent, {events:,.0f} events + {invalid:,.0f} dead-lettered "
                        "counted")
    if dead_letters != invalid:
        problems.append(f"{dead_letters:,} records on the dead-letter topic, {invalid:,.0f} counted")
    over_capacity = sorted({b for s in samples for b, n in s.entries.items() if n > s.capacity.get(b, n)})
    if over_capacity:
        problems.append(f"entries over capacity: {over_capacity}")
    join = _by(metrics, "model_monitor_join_total", "outcome")
    if overflow.get("join_predictions", 0) != join.get("evicted", 0):
        problems.append(f"join_predictions overflow {overflow.get('join_predictions', 0):,.0f}, join evicted "
                        f"{join.get('evicted', 0):,.0f}")
    if overflow.get("join_feedback", 0) > join.get("orphaned", 0):
        problems.append(f"join_feedback overflow {overflow.get('join_feedback', 0):,.0f} is more than the "
                        f"orphaned {join.get('orphaned', 0):,.0f}")

    before = lead[-1].overflow if lead else {}
    end_of_burst = burst[-1].overflow if burst else {}
    bounds = sorted(set(overflow) | set(before))
    capacity = samples[-1].capacity if samples else {}
    peak = {b: _max([s.entries.get(b) for s in samples]) for b in capacity}
    notes += [
        f"schedule: {schedule.describe()}; the burst's {schedule.burst_to - schedule.burst_from:,} messages were "
        f"sent in {burst_s:,.1f} s ({achieved:,.0f}/s); {producer.sent:,} messages in "
        f"{producer.finished - producer.started:,.1f} s",
        f"lag (`model_monitor_consumer_lag_messages`, summed, sampled each second): at most {lag_lead:,.0f} before "
        f"the burst, {lag_burst:,.0f} in it, back under {near_zero:,.0f} "
        + (f"{drain_s:,.1f} s after its last message" if drain_s is not None else "never")
        + (f", 0 after {zero_at - producer.burst_ended:,.1f} s" if zero_at is not None else "")
        + f"; uncommitted (acknowledged, not committed) at most "
          f"{max((s.uncommitted for s in burst + after), default=0):,}",
        f"RSS: {rss_nominal:,.0f} MB at the nominal rate (warm), {rss_burst:,.0f} MB at most in the burst, "
        f"{rss_after:,.0f} MB at most after it; the bound, {rss_factor:g}x without the burst: {rss_bound:,.0f} MB; the "
        f"clean run of the same stream (no burst) reached {CLEAN_RSS_MB.get(kind, 0):,.0f} MB",
        "bound overflow (`model_monitor_bound_overflow_total`) before the burst / at its end / at the end: "
        + (", ".join(f"{b} {before.get(b, 0):,.0f} / {end_of_burst.get(b, 0):,.0f} / {overflow.get(b, 0):,.0f}"
                     for b in bounds) or "none"),
        "bound entries at most / capacity: " + ", ".join(f"{b} {peak[b]:,.0f} / {capacity[b]:,.0f}"
                                                         for b in sorted(capacity)),
        f"join outcomes: {', '.join(f'{k} {v:,.0f}' for k, v in sorted(join.items()))}; messages: "
        f"{producer.sent:,} sent, {events:,.0f} events + {invalid:,.0f} dead-lettered counted, {dead_letters:,} on "
        "the dead-letter topic",
    ]
    notes += [f"**check failed**: {p}" for p in problems]
    facts = {"lag_lead": lag_lead, "lag_burst": lag_burst, "lag_final": lag_final, "drain_s": drain_s,
             "rss_nominal_mb": rss_nominal, "rss_burst_mb": rss_burst, "rss_after_mb": rss_after,
             "rss_bound_mb": rss_bound, "burst_rate_achieved": achieved, "sent": producer.sent, "events": events,
             "invalid": invalid, "dead_letters": dead_letters, "overflow_before": before,
             "overflow_end_of_burst": end_of_burst, "overflow": overflow, "join": join, "problems": problems,
             "samples": len(samples), "differing": dict(differing), "unexplained": unexplained,
             "lag_series": [s.lag for s in samples]}
    return H.RunResult("bursts", kind, stream.size, 1, 1, [drain_s] if drain_s is not None else [], comparison,
                       notes, facts)

