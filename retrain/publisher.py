"""Publishers of the retraining queue: a Kafka topic, and optionally a webhook.

A publisher either has every record acknowledged or raises ``PublishFailed``; the
caller marks samples pushed only after it returned. Records are keyed by
``event_id`` so a consumer can drop the duplicates that at-least-once delivery may
bring (a push that was acknowledged but not yet marked when the process died).

These run in the scheduler's thread, away from the consumer loop, so they are
plain synchronous code: kafka-python's producer and httpx's client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import httpx
import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from collectors.errors import PublishFailed


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


class WebhookPublisher:
    """POST records as JSON lines to a URL; any answer but 2xx is a failure."""

    def __init__(self, url: str, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), transport=transport)

    def publish(self, records: Sequence[dict[str, Any]]) -> None:
        body = b"".join(orjson.dumps(r) + b"\n" for r in records)
        try:
            response = self._client.post(self.url, content=body,
                                         headers={"content-type": "application/x-ndjson"})
        except httpx.HTTPError as exc:
            raise PublishFailed(f"webhook {self.url} failed: {exc}") from exc
        if not response.is_success:
            raise PublishFailed(f"webhook {self.url} answered {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self._client.close()
