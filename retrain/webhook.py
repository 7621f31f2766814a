"""Signing of retraining-webhook deliveries, and their verification by a receiver.

The scheme is Standard Webhooks (https://www.standardwebhooks.com): each request
carries ``webhook-id`` (also sent as ``Idempotency-Key``), ``webhook-timestamp``
(epoch seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.
During a secret rotation the signature header holds several ``v1,`` entries
separated by spaces; one match is enough. A secret written ``whsec_<base64>`` (the
form Standard Webhooks' libraries generate) keys the HMAC with the decoded bytes; any
other secret with its UTF-8 bytes.

Pure functions: no I/O, and the clock only when ``now`` is not given.

>>> body = b'{"type": "sample", "event_id": "f-1"}\\n'
>>> headers = signed_headers("s3cret", idempotency_key([{"event_id": "f-1"}]), 1_790_000_000, body)
>>> sorted(headers)
['Idempotency-Key', 'webhook-id', 'webhook-signature', 'webhook-timestamp']
>>> verify_signature("s3cret", headers, body, now=1_790_000_010)
>>> verify_signature("s3cret", headers, body.replace(b"f-1", b"f-2"), now=1_790_000_010)
Traceback (most recent call last):
...
retrain.webhook.SignatureError: no webhook-signature entry matches the body and a known secret
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson

#: The prefix of secrets in Standard Webhooks' own format: base64 of the key follows.
SECRET_PREFIX = "whsec_"
#: How far a timestamp may be from the receiver's clock by default, in seconds.
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """A delivery's signature is missing or wrong, or its timestamp is outside the tolerance."""


class Headers(Protocol):
    """Anything with ``items()``: a dict, ``httpx.Headers``, ``http.server``'s message."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a secret (``whsec_`` and base64, or the text itself); ``ValueError``
    for a ``whsec_`` secret without a key, naming what is wrong and never the secret."""
    return _key(secret)


def _key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except binascii.Error:
            key = b""
        if not key:
            # Never echo the secret: say what is wrong with it, not what it is.
            raise ValueError(f"a webhook secret starting {SECRET_PREFIX} must have a key in base64 after it")
        return key
    return secret.encode()


def _secrets(secrets: str | Sequence[str]) -> list[str]:
    """The secrets given, without empty ones: an empty secret means none."""
    return [s for s in ([secrets] if isinstance(secrets, str) else secrets) if s]


def idempotency_key(records: Sequence[Mapping[str, Any]]) -> str:
    """The delivery id of a request holding ``records``: the same records, in the same
    order, always get the same key, so a receiver can drop a retried request.

    It is ``msg_`` and the SHA-256 of the JSON array of the records' ``event_id`` values
    (a record without one counts by its canonical JSON), so ids holding a newline cannot
    make two batches look alike.

    >>> batch = [{"event_id": "a"}, {"event_id": "b"}]
    >>> idempotency_key(batch) == idempotency_key([dict(r) for r in batch])
    True
    >>> idempotency_key([{"event_id": "a"}]) == idempotency_key([{"event_id": "b"}])
    False
    >>> idempotency_key([{"event_id": "a\\nb"}]) == idempotency_key([{"event_id": "a"}, {"event_id": "b"}])
    False
    """
    ids = [str(r["event_id"]) if r.get("event_id") else orjson.dumps(r, option=orjson.OPT_SORT_KEYS).decode()
           for r in records]
    return f"msg_{hashlib.sha256(orjson.dumps(ids)).hexdigest()}"


def sign(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,`` entry per secret, space-separated.

    >>> sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
    ...      b'{"test": 2432232314}')  # the test vector of the Standard Webhooks specification
    'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
    """
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(_key(s), signed, hashlib.sha256).digest()).decode()
                    for s in _secrets(secrets))


def signed_headers(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The delivery headers; without a secret, all but ``webhook-signature``."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "Idempotency-Key": msg_id}
    if _secrets(secrets):
        headers["webhook-signature"] = sign(secrets, msg_id, timestamp, body)
    return headers


def verify_signature(secret: str | Sequence[str], headers: Mapping[str, str] | Headers, body: bytes | str, *,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> None:
    """Check a delivery as its receiver; return nothing if it is genuine, else raise ``SignatureError``.

    ``secret`` is the shared secret, or several while rotating (any may match);
    ``headers`` the request's headers (names in any case); ``body`` the raw request
    body, exactly as received (verify before parsing it). The timestamp must be within
    ``tolerance_s`` of ``now`` (default: the clock) either way, so that a captured
    request cannot be replayed later. Comparison is in constant time.
    """
    keys = [_key(s) for s in _secrets(secret)]
    if not keys:
        raise ValueError("verify_signature needs at least one secret")
    found = {name.lower(): value for name, value in headers.items()}
    missing = [h for h in ("webhook-id", "webhook-timestamp", "webhook-signature") if not found.get(h)]
    if missing:
        raise SignatureError(f"missing header {', '.join(missing)}")
    try:
        timestamp = int(found["webhook-timestamp"])
    except ValueError:
        raise SignatureError(f"webhook-timestamp {found['webhook-timestamp'][:20]!r} is not epoch seconds") from None
    age = (time.time() if now is None else now) - timestamp
    if age > tolerance_s:
        raise SignatureError(f"webhook-timestamp is {age:.0f}s old, more than the tolerance of {tolerance_s:g}s")
    if -age > tolerance_s:
        raise SignatureError(f"webhook-timestamp is {-age:.0f}s in the future, more than the tolerance of "
                             f"{tolerance_s:g}s")
    signed = f"{found['webhook-id']}.{timestamp}.".encode() + (body.encode() if isinstance(body, str) else body)
    expected = [base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()) for k in keys]
    for entry in found["webhook-signature"].split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue  # another scheme (v1a: asymmetric) we do not sign with
        if any(hmac.compare_digest(value.encode(), e) for e in expected):
            return
    raise SignatureError("no webhook-signature entry matches the body and a known secret")


def hide_url_secrets(url: str) -> str:
    """``url`` with its user information and every query value replaced by ``***``.

    >>> hide_url_secrets("https://bot:hunter2@hooks.example.com/retrain?token=abc&team=ml")
    'https://***@hooks.example.com/retrain?token=***&team=***'
    >>> hide_url_secrets("http://127.0.0.1:8080/hook"), hide_url_secrets("ftp:/x")
    ('http://127.0.0.1:8080/hook', 'ftp:/x')
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that does not parse>"
    if "@" not in parts.netloc and not parts.query:
        return url  # nothing to hide: as written
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{pair.split('=', 1)[0]}=***" if "=" in pair else pair
                     for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
