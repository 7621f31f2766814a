"""Rollback requests for failed canaries, POSTed to ``canary.rollback_webhook_url``.

A ``canary_regression`` alert says a model's canary version is worse than its baseline
with confidence. The daemon records it as a rollback request in the store before the
batch's offsets are committed (``SampleStore.add_rollbacks``, keyed by the model and the
canary version), then ``RollbackSender.send`` delivers the requests not yet sent, each
as one JSON request signed as the retraining webhook signs (``retrain.webhook``), with
the same retries (``retrain.publisher.WebhookClient``), and marks it sent once a 2xx
answered. So a canary is rolled back once: a second alert about it, the same batch read
again after a crash, a restart, or another daemon sharing the store find the request
recorded (and, on PostgreSQL, a request one daemon is sending is skipped by the others).
A request whose send failed stays unsent and is tried again at the next ``send``.

The body (``StoredRollback.message``)::

    {"type": "rollback", "event_id": "rollback|recsys|v13", "model": "recsys",
     "model_version": "v13", "baseline_version": "v12", "alert": {...the alert's record...}}

Its ``webhook-id`` and ``Idempotency-Key`` are ``idempotency_key`` of the body, a function
of ``event_id`` alone, so every try carries the same key.
"""

from __future__ import annotations

import logging
import threading

import orjson

from common.errors import MonitorError
from retrain.publisher import WebhookClient
from retrain.store import SampleStore, StoredRollback
from retrain.webhook import idempotency_key

log = logging.getLogger(__name__)


class RollbackSender:
    """Sends the store's unsent rollback requests to the rollback webhook, oldest first."""

    def __init__(self, store: SampleStore, client: WebhookClient) -> None:
        self.store = store
        self.client = client
        self._lock = threading.Lock()  # one send at a time in this process, whoever asks

    def send(self) -> int:
        """Deliver every unsent request; return how many the webhook acknowledged.

        Each request is tried once per call (with the client's own retries): one the
        receiver refuses does not hold back the others. The first failure
        (``PublishFailed``, ``StoreUnavailable``) is raised after the others had their
        turn; what was not acknowledged stays unsent for the next call.
        """
        sent, tried, failure = 0, set[int](), None
        with self._lock:
            while True:
                current: StoredRollback | None = None
                try:
                    with self.store.claim_rollback(exclude=tried) as (rollback, mark_sent):
                        if rollback is None:
                            break
                        current = rollback
                        tried.add(rollback.id)
                        message = rollback.message()
                        self.client.post(orjson.dumps(message), idempotency_key([message]))
                        mark_sent()
                except MonitorError as exc:  # the next request still gets its turn; the first error is raised
                    failure = failure or exc
                    if current is None:
                        break  # the claim itself failed (the store): nothing more to do now
                    continue
                sent += 1
                log.warning("rollback of %s %s (worse than %s on %s) requested from %s", current.model,
                            current.model_version, current.baseline_version, current.alert.get("detector"),
                            self.client.shown_url)
        if failure is not None:
            raise failure
        return sent

    def close(self) -> None:
        self.client.close()
