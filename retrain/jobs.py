"""The retraining loop's jobs: push flagged samples and retrain triggers, keep the store small.

``RetrainJobs`` is what the scheduler calls: ``push`` on an interval (samples, then
triggers, to every sink), ``weekly`` on the cron and at start-up, ``severe`` as soon
as a severe alert is durable, ``volume`` on the push interval (enough new bad cases
since the model's last dataset), ``prune`` daily. Each trigger first builds a
dataset version of the model's bad cases (when a builder is given) and carries its
manifest in ``detail.dataset``; per-model ``TriggerPolicy`` says which triggers a
model gets. Triggers are rows in the store with a
unique key (the model, the reason and the period or cooldown window), so a trigger
whose send failed is sent at the next push, one that several daemons raise is sent
once, and a weekly trigger missed while the daemon was down is sent when it starts.
It reports through a ``Listener`` so that this package needs nothing of the daemon's
metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from collectors.contract import Alert
from retrain.badcases import BADCASE_KINDS
from retrain.publisher import Publisher
from retrain.store import SampleStore

log = logging.getLogger(__name__)
#: Samples per sink remembered as delivered while their mark cannot be stored (an ordered set).
MAX_DELIVERED_UNMARKED = 100_000


class Listener(Protocol):
    """What the jobs report; the daemon turns these into metrics."""

    def pushed(self, sink: str, by_model: dict[str, int], pending: int) -> None: ...

    def triggered(self, model: str, reason: str) -> None: ...


class Schedule(Protocol):
    """APScheduler's trigger interface, as far as ``weekly`` needs it."""

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None, now: dt.datetime) -> dt.datetime | None: ...


def last_fire_times(schedule: Schedule, now: dt.datetime, count: int = 2) -> list[dt.datetime]:
    """The ``count`` most recent fire times at or before ``now``, oldest first.

    >>> from apscheduler.triggers.cron import CronTrigger
    >>> weekly = CronTrigger.from_crontab("0 3 * * mon", timezone="UTC")
    >>> now = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)  # a Sunday
    >>> [t.isoformat() for t in last_fire_times(weekly, now)]
    ['2026-11-09T03:00:00+00:00', '2026-11-16T03:00:00+00:00']
    """
    start = now - dt.timedelta(days=8 * count)
    times: list[dt.datetime] = []
    fire = schedule.get_next_fire_time(None, start)
    while fire is not None and fire <= now:
        times.append(fire)
        fire = schedule.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
    return times[-count:]


@dataclass(frozen=True)
class TriggerPolicy:
    """Which retrain triggers a model gets (``[retrain]`` settings, overridden per model)."""

    weekly: bool = True
    severe: bool = True
    severe_factor: float = 2.0
    severe_cooldown_s: float = 3600.0
    #: New bad cases since the model's last dataset that trigger a retrain; 0 for never.
    volume: int = 0


#: Builds a dataset version of a model for a trigger (reason, key, ...); returns its
#: manifest, or None when there was nothing to put in one.
DatasetBuilder = Callable[[str, Mapping[str, Any]], "dict[str, Any] | None"]


class RetrainJobs:
    """Push, weekly, severe-drift and volume triggers, and pruning, sharing one store and the publishers."""

    def __init__(self, store: SampleStore, publishers: Mapping[str, Publisher], listener: Listener,
                 batch_size: int = 500, cooldown_s: float = 3600.0, weekly: Schedule | None = None,
                 retention_s: float | None = None, clock: Callable[[], float] = time.time,
                 policy: Callable[[str], TriggerPolicy] | None = None, datasets: DatasetBuilder | None = None) -> None:
        self.store = store
        self.publishers = dict(publishers)
        self.listener = listener
        self.batch_size = batch_size
        self.cooldown_s = cooldown_s
        self.schedule = weekly
        self.retention_s = retention_s
        self.clock = clock
        self.policy = policy or (lambda _model: TriggerPolicy(severe_cooldown_s=cooldown_s))
        self.datasets = datasets
        self._lock = threading.Lock()  # one push at a time, whoever asks
        self._trigger_lock = threading.Lock()  # one trigger (and its dataset) at a time in this process
        self._delivered: dict[str, dict[int, None]] = {}  # per sink: see _push_samples

    def push(self, max_batches: int = 100) -> int:
        """Deliver undelivered samples, then triggers, to every sink; return the samples delivered.

        Per sink, stops when a batch comes back short (nothing more is waiting) or after
        ``max_batches``, so one run cannot hold the scheduler thread forever. A sink's
        ``PublishFailed`` or a ``StoreUnavailable`` propagates after the other sinks had
        their turn: what was not acknowledged stays undelivered for the next run.
        """
        total, failure = 0, None
        with self._lock:
            for sink, publisher in self.publishers.items():
                try:
                    total += self._push_samples(sink, publisher, max_batches)
                    self._push_triggers(sink, publisher)
                except Exception as exc:  # the other sinks still get their turn; the first error is raised
                    failure = failure or exc
        if total:
            log.info("pushed %d flagged samples", total)
        if failure is not None:
            raise failure
        return total

    def _push_samples(self, sink: str, publisher: Publisher, max_batches: int) -> int:
        total = 0
        # Rows the sink acknowledged whose mark did not reach the store (it could not be written):
        # while it cannot, each push claims them again, and they are not sent again.
        delivered = self._delivered.setdefault(sink, {})
        for _ in range(max_batches):
            with self.store.claim_unpushed(self.batch_size, sink) as (rows, mark_pushed):
                if not rows:
                    break
                fresh = [r for r in rows if r.id not in delivered]
                if fresh:
                    publisher.publish([r.message() for r in fresh])
                    delivered.update(dict.fromkeys(r.id for r in fresh))
                    while len(delivered) > MAX_DELIVERED_UNMARKED:  # a bound, not a policy: the oldest may go twice
                        del delivered[next(iter(delivered))]
                mark_pushed()
            for r in rows:  # marked: the store says it now
                delivered.pop(r.id, None)
            total += len(rows)
            self.listener.pushed(sink, dict(Counter(r.sample.model for r in rows)), self.store.pending_count(sink))
            if len(rows) < self.batch_size:
                break
        return total

    def _push_triggers(self, sink: str, publisher: Publisher) -> None:
        with self.store.claim_triggers(sink) as (triggers, mark_pushed):
            if not triggers:
                return
            publisher.publish([t.message() for t in triggers])
            mark_pushed()
        for t in triggers:
            if sink == "queue":
                self.listener.triggered(t.model, t.reason)
            log.warning("retrain trigger %s sent to %s", t.key, sink)

    def _trigger(self, key: str, model: str, reason: str, detail: dict[str, Any] | None = None) -> bool:
        """Record a trigger once per key, with a new dataset version of the model first;
        False if it exists (this or another daemon made it)."""
        with self._trigger_lock:
            if self.store.has_trigger(key):
                return False
            detail = dict(detail or {})
            if self.datasets is not None:
                detail["dataset"] = self.datasets(model, {"reason": reason, "key": key, **detail})
            return self.store.add_trigger(key, model, reason, detail or None)

    def weekly(self) -> list[str]:
        """Make sure this period's trigger exists for every model with samples flagged in
        the period before it (between the last two fire times).

        Runs on the cron and at start-up: the key names the period, so a run that
        comes late (the daemon was down at the fire time) still sends it, once. A sample
        flagged after the period's fire time belongs to the next period, not this one.
        """
        if self.schedule is None:
            return []
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        times = last_fire_times(self.schedule, now)
        if not times:
            return []
        period = times[-1]
        since = times[0].timestamp() if len(times) > 1 else period.timestamp() - 7 * 86400
        added = [m for m in self.store.models_since(since, until=period.timestamp())
                 if self.policy(m).weekly
                 and self._trigger(f"{m}|weekly|{period:%Y-%m-%dT%H:%M}", m, "weekly")]
        if added:
            self.push()
        return added

    def is_severe(self, alert: Alert, kinds: Collection[str]) -> bool:
        """Whether an alert calls for a retrain at once under its model's policy."""
        policy = self.policy(alert.model)
        return policy.severe and alert.kind in kinds and alert.severity_ratio >= policy.severe_factor

    def severe(self, alert: Alert) -> bool:
        """Trigger a retrain of the alert's model now; one per model per cooldown window.

        The window is taken from the alert's own event time, so daemons that see the
        same drift on different partitions agree on the key.
        """
        cooldown = self.policy(alert.model).severe_cooldown_s
        window = math.floor(alert.ts / cooldown) if cooldown > 0 else alert.event_id
        added = self._trigger(f"{alert.model}|severe_drift|{window}", alert.model, "severe_drift", alert.to_dict())
        if added:
            self.push()
        return added

    def volume(self) -> list[str]:
        """Trigger a retrain of every model with at least its ``volume`` of bad cases
        flagged since its last dataset; once per dataset version."""
        added = []
        for model in self.store.models_since(0.0):
            needed = self.policy(model).volume
            if needed <= 0:
                continue
            new = self.store.badcases_since_dataset(model, BADCASE_KINDS)
            if new < needed:
                continue
            versions = self.store.dataset_versions(model)
            after = versions[-1]["version"] if versions else 0
            if self._trigger(f"{model}|volume|after-v{after}", model, "volume", {"new_badcases": new}):
                added.append(model)
        if added:
            self.push()
        return added

    def prune(self) -> dict[str, int]:
        """Delete delivered samples, alerts and triggers older than the retention."""
        if not self.retention_s:
            return {}
        deleted = self.store.prune(self.clock() - self.retention_s)
        if any(deleted.values()):
            log.info("pruned %s", ", ".join(f"{n} {table}" for table, n in deleted.items()))
        return deleted
