"""Publishers of the retraining queue: a Kafka topic, and optionally a webhook.

A publisher either has every record acknowledged or raises ``PublishFailed``; the
caller marks samples pushed only after it returned. Records are keyed by
``event_id`` so a consumer can drop the duplicates that at-least-once delivery may
bring (a push that was acknowledged but not yet marked when the process died).

These run in the scheduler's thread, away from the consumer loop, so they are
plain synchronous code: kafka-python's producer and httpx's client.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx
import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from common.errors import PublishFailed
from retrain.webhook import hide_url_secrets, idempotency_key, signed_headers

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Sends retraining-queue records; returns only when all are acknowledged."""

    def publish(self, records: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def _key(record: dict[str, Any]) -> bytes:
    return str(record.get("event_id") or record.get("model") or "").encode()


class KafkaPublisher:
    """Produce records to a topic with ``acks="all"`` and wait for every acknowledgement."""

    def __init__(self, topic: str, timeout_s: float = 30.0, **kafka_config: Any) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        try:
            self._producer = KafkaProducer(
                acks="all", linger_ms=5, retries=5, max_block_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000), **kafka_config)
        except KafkaError as exc:
            raise PublishFailed(f"cannot connect the retraining-queue producer: {exc}") from exc

    def publish(self, records: Sequence[dict[str, Any]]) -> None:
        try:
            futures = [self._producer.send(self.topic, key=_key(r), value=orjson.dumps(r)) for r in records]
            self._producer.flush(timeout=self.timeout_s)
            for future in futures:
                future.get(timeout=self.timeout_s)
        except KafkaError as exc:
            raise PublishFailed(f"topic {self.topic} did not acknowledge {len(records)} records: {exc}") from exc

    def close(self) -> None:
        self._producer.close(timeout=self.timeout_s)


#: Answers below 500 worth another try (the receiver timed out or is busy); every 5xx is too.
RETRY_STATUSES = frozenset({408, 429})
#: Answers whose Retry-After header sets the least wait before the next try.
RETRY_AFTER_STATUSES = frozenset({429, 503})


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None.

    >>> retry_after_s("7", 0.0), retry_after_s("Thu, 01 Jan 1970 00:00:30 GMT", 10.0), retry_after_s("soon", 0.0)
    (7.0, 20.0, None)
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class WebhookClient:
    """POST one body to a URL, signed when there is a secret, retrying transient failures.

    Every request carries ``webhook-id`` and ``Idempotency-Key`` (the same value, chosen
    by the caller so that a retry, in this call or a later one, carries the same key),
    ``webhook-timestamp`` and, with a secret, ``webhook-signature`` (see
    ``retrain.webhook``). A transport error (refused, reset, timed out) or an answer of
    408, 429 or 5xx is tried again, at most ``retries`` times, after a random wait of
    up to ``backoff_s * 2**n`` seconds (full jitter; never more than ``max_delay_s``);
    a ``Retry-After`` on 429 or 503 is waited at least, up to ``max_delay_s``. Any other
    answer but 2xx fails at once. Failing, ``post`` raises ``PublishFailed``.

    ``WebhookPublisher`` (the retraining queue) and the canary rollback requests
    (``retrain.rollback``) both send through it.
    """

    def __init__(self, url: str, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None, *,
                 secret: str | Sequence[str] = "", retries: int = 4, backoff_s: float = 0.5,
                 max_delay_s: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random,
                 name: str = "webhook") -> None:
        """``secret``: one, or several during a rotation (each signs). ``name`` starts its
        errors and log lines. ``sleep``, ``clock`` and ``jitter`` (uniform in [0, 1)) are
        there for tests."""
        self.url = url
        self.shown_url = hide_url_secrets(url)  # its user and query may hold a token: never in a log or error
        self.name = name
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_delay_s = max_delay_s
        signed_headers(secret, "", 0, b"")  # a malformed secret raises ValueError here, not at the first send
        self._secret = secret  # never logged, never in a message
        self._sleep, self._clock, self._jitter = sleep, clock, jitter
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), transport=transport)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown_url!r}, signed={bool(self._secret)}, retries={self.retries})"

    def post(self, body: bytes, msg_id: str, content_type: str = "application/json") -> None:
        """Deliver ``body`` under the delivery id ``msg_id``; return once a 2xx answered it."""
        where = f"{self.name} {self.shown_url}"
        failure, cause = "", None
        for attempt in range(self.retries + 1):
            # Signed anew each try: the timestamp must be fresh for the receiver's tolerance.
            headers = {"content-type": content_type, **signed_headers(self._secret, msg_id, int(self._clock()), body)}
            response: httpx.Response | None = None
            try:
                response = self._client.post(self.url, content=body, headers=headers)
            except httpx.UnsupportedProtocol as exc:
                raise PublishFailed(f"{where} cannot be reached: {exc}") from exc
            except httpx.TransportError as exc:  # refused, reset, timed out: worth another try
                failure, cause = f"{where} failed: {type(exc).__name__}: {exc}", exc
            except httpx.HTTPError as exc:
                raise PublishFailed(f"{where} failed: {type(exc).__name__}: {exc}") from exc
            else:
                if response.is_success:
                    return
                failure = f"{where} answered {response.status_code}: {response.text[:200]}"
                cause = None
                if response.status_code < 500 and response.status_code not in RETRY_STATUSES:
                    raise PublishFailed(failure)
            if attempt == self.retries:
                break
            delay = self._delay(attempt, response)
            log.warning("%s; retry %d of %d in %.2fs", failure, attempt + 1, self.retries, delay)
            self._sleep(delay)
        tries = self.retries + 1
        raise PublishFailed(f"{failure} (after {tries} {'try' if tries == 1 else 'tries'})") from cause

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        # Full jitter spreads the retries of several daemons instead of synchronising them.
        delay = self._jitter() * min(self.max_delay_s, self.backoff_s * 2 ** attempt)
        if response is not None and response.status_code in RETRY_AFTER_STATUSES:
            asked = retry_after_s(response.headers.get("retry-after"), self._clock())
            if asked is not None:
                delay = max(delay, min(asked, self.max_delay_s))
        return float(delay)

    def close(self) -> None:
        self._client.close()


class WebhookPublisher(WebhookClient):
    """The retraining queue's webhook: records as JSON lines, one request per batch.

    The delivery id is a function of the records (``retrain.webhook.idempotency_key``):
    every try of a batch, in this push or the next, carries the same key.
    """

    def publish(self, records: Sequence[dict[str, Any]]) -> None:
        body = b"".join(orjson.dumps(r) + b"\n" for r in records)
        self.post(body, idempotency_key(records), "application/x-ndjson")
