"""The retraining loop's jobs: push flagged samples, and trigger retrains.

``RetrainJobs`` is what the scheduler calls: ``push`` on an interval, ``weekly`` on
the cron, ``severe`` as soon as a severe alert is durable. It reports through a
``Listener`` so that this package needs nothing of the daemon's metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any, Protocol

from collectors.contract import Alert
from retrain.publisher import Publisher
from retrain.store import SampleStore

log = logging.getLogger(__name__)


class Listener(Protocol):
    """What the jobs report; the daemon turns these into metrics."""

    def pushed(self, by_model: dict[str, int], pending: int) -> None: ...

    def triggered(self, model: str, reason: str) -> None: ...


class RetrainJobs:
    """Push, weekly trigger and severe-drift trigger, sharing one store and publisher."""

    def __init__(self, store: SampleStore, publisher: Publisher, listener: Listener,
                 batch_size: int = 500, cooldown_s: float = 3600.0, clock: Any = time.time) -> None:
        self.store = store
        self.publisher = publisher
        self.listener = listener
        self.batch_size = batch_size
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._last_severe: dict[str, float] = {}
        self._lock = threading.Lock()  # one push at a time, whoever asks

    def push(self, max_batches: int = 100) -> int:
        """Push unpushed samples, oldest first; return how many were acknowledged.

        Stops when a batch comes back short (nothing more is waiting) or after
        ``max_batches``, so one run cannot hold the scheduler thread forever. A
        ``PublishFailed`` or ``StoreUnavailable`` propagates: the samples stay
        unpushed and the next run tries again.
        """
        total = 0
        with self._lock:
            for _ in range(max_batches):
                with self.store.claim_unpushed(self.batch_size) as (rows, mark_pushed):
                    if not rows:
                        break
                    self.publisher.publish([r.message() for r in rows])
                    mark_pushed()
                total += len(rows)
                self.listener.pushed(dict(Counter(r.sample.model for r in rows)), self.store.pending_count())
                if len(rows) < self.batch_size:
                    break
        if total:
            log.info("pushed %d flagged samples to the retraining queue", total)
        return total

    def _trigger(self, model: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        # Push first, so the trigger follows every sample it is about.
        self.push()
        record = {"type": "retrain_trigger", "event_id": f"trigger-{model}-{reason}-{int(self.clock())}",
                  "model": model, "reason": reason, "ts": self.clock(), "detail": detail}
        self.publisher.publish([record])
        self.store.record_trigger(model, reason, None if detail is None else str(detail))
        self.listener.triggered(model, reason)
        log.warning("retrain trigger sent for model %s (%s)", model, reason)

    def weekly(self) -> list[str]:
        """Trigger a retrain of every model that has flagged samples."""
        models = self.store.models()
        for model in models:
            self._trigger(model, "weekly")
        return models

    def severe(self, alert: Alert) -> bool:
        """Trigger a retrain of the alert's model now, unless one was sent within the cooldown."""
        now = self.clock()
        with self._lock:
            last = self._last_severe.get(alert.model)
            if last is not None and now - last < self.cooldown_s:
                return False
            self._last_severe[alert.model] = now
        self._trigger(alert.model, "severe_drift", alert.to_dict())
        return True
