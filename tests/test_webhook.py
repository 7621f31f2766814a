"""Webhook delivery a receiver can trust: signatures, retries, idempotency keys, and the secret kept secret."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from helpers import make_settings, produce, wait_for

from collectors.contract import FlaggedSample
from common.errors import ConfigError, PublishFailed
from monitor.config import load_settings, render_toml
from monitor.exit_codes import EXIT_CONFIG
from monitor.service import Service, open_store
from retrain.jobs import RetrainJobs
from retrain.publisher import WebhookPublisher
from retrain.store import SampleStore
from retrain.webhook import SignatureError, idempotency_key, sign, signed_headers, verify_signature

SECRET = "s3cret-never-to-be-seen"
NOW = 1_790_000_000


def sample(i: int) -> FlaggedSample:
    return FlaggedSample(f"e-{i}", "m", "v1", "thumbs_down", "irrelevant", 1_790_000_000.0 + i, {"i": i})


# -- the signature ----------------------------------------------------------------------------------------


def test_the_signature_matches_the_standard_webhooks_test_vector():
    secret, msg_id = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek"
    body = '{"test": 2432232314}'
    headers = {"webhook-id": msg_id, "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    assert sign(secret, msg_id, 1614265330, body.encode()) == headers["webhook-signature"]
    verify_signature(secret, headers, body, now=1614265330)
    with pytest.raises(SignatureError):
        verify_signature(secret, headers, body.replace("4", "5"), now=1614265330)


def test_verify_accepts_the_genuine_request_and_refuses_every_alteration():
    body = b'{"event_id": "e-1"}\n'
    headers = signed_headers(SECRET, "msg_1", NOW, body)
    assert headers["Idempotency-Key"] == headers["webhook-id"] == "msg_1"
    verify_signature(SECRET, headers, body, now=NOW)
    verify_signature(SECRET, httpx.Headers({k.upper(): v for k, v in headers.items()}), body, now=NOW)
    refused = {
        "tampered body": (SECRET, headers, body.replace(b"e-1", b"e-2")),
        "wrong secret": ("other", headers, body),
        "another id": (SECRET, {**headers, "webhook-id": "msg_2"}, body),
        "another timestamp": (SECRET, {**headers, "webhook-timestamp": str(NOW + 1)}, body),
        "garbled signature": (SECRET, {**headers, "webhook-signature": "v1,AAAA"}, body),
        "only another scheme": (SECRET, {**headers, "webhook-signature": headers["webhook-signature"]
                                         .replace("v1,", "v1a,")}, body),
    }
    for secret, hdrs, b in refused.values():
        with pytest.raises(SignatureError, match="no webhook-signature entry matches"):
            verify_signature(secret, hdrs, b, now=NOW)
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        with pytest.raises(SignatureError, match=f"missing header {header}"):
            verify_signature(SECRET, {k: v for k, v in headers.items() if k != header}, body, now=NOW)
    with pytest.raises(SignatureError, match="not epoch seconds"):
        verify_signature(SECRET, {**headers, "webhook-timestamp": "yesterday"}, body, now=NOW)
    assert issubclass(SignatureError, ValueError)


def test_a_timestamp_beyond_the_tolerance_either_way_is_refused():
    body = b"{}\n"
    headers = signed_headers(SECRET, "msg_1", NOW, body)
    verify_signature(SECRET, headers, body, now=NOW + 300)  # at the tolerance: accepted
    verify_signature(SECRET, headers, body, now=NOW - 300)
    with pytest.raises(SignatureError, match="301s old"):
        verify_signature(SECRET, headers, body, now=NOW + 301)
    with pytest.raises(SignatureError, match="301s in the future"):
        verify_signature(SECRET, headers, body, now=NOW - 301)
    verify_signature(SECRET, headers, body, now=NOW + 3000, tolerance_s=3600)
    with pytest.raises(SignatureError, match="old"):
        verify_signature(SECRET, headers, body, now=NOW + 11, tolerance_s=10)


def test_a_rotation_works_from_either_side():
    body = b"{}\n"
    old, new = "old-secret", "whsec_" + "bmV3LXNlY3JldC1ieXRlcw=="
    both = signed_headers([old, new], "msg_1", NOW, body)  # the sender signs with both during the rotation
    assert len(both["webhook-signature"].split()) == 2
    verify_signature(old, both, body, now=NOW)  # a receiver not yet moved on
    verify_signature(new, both, body, now=NOW)  # a receiver already moved on
    only_new = signed_headers(new, "msg_1", NOW, body)
    verify_signature([old, new], only_new, body, now=NOW)  # or the receiver accepts both for a while
    with pytest.raises(SignatureError):
        verify_signature(old, only_new, body, now=NOW)
    with pytest.raises(SignatureError):
        verify_signature("third", both, body, now=NOW)


def test_without_a_secret_nothing_is_signed_and_nothing_verifies():
    headers = signed_headers("", "msg_1", NOW, b"{}")
    assert set(headers) == {"webhook-id", "webhook-timestamp", "Idempotency-Key"}
    with pytest.raises(ValueError, match="needs at least one secret"):
        verify_signature("", {**headers, "webhook-signature": "v1,x"}, b"{}", now=NOW)


def test_the_idempotency_key_depends_on_the_records_alone():
    batch = [{"event_id": "e-1", "flagged_at": 1.0}, {"event_id": "e-2"}]
    assert idempotency_key(batch) == idempotency_key([{"event_id": "e-1", "flagged_at": 2.0}, {"event_id": "e-2"}])
    assert idempotency_key(batch) != idempotency_key(batch[:1])
    assert idempotency_key(batch) != idempotency_key(batch[::-1])
    assert idempotency_key([{"model": "a"}]) != idempotency_key([{"model": "b"}])


# -- a real receiver --------------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the receiver saw it."""

    key: str
    signed: bool
    status: int
    headers: dict[str, str]
    body: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.receiver.handle(self)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    receiver: Receiver


class Receiver:
    """A webhook receiver on a real port: verifies every signature with ``verify_signature``,
    drops a request whose Idempotency-Key it accepted before, and answers as scripted.

    ``script`` holds the answers to the next requests: a status, ``(status, headers)``,
    ``"lost"`` (accept the records, then answer 500 as if the answer was lost) or
    ``"hang"`` (answer nothing until the test ends); 200 when it is empty. ``stop()``
    closes the listening socket (connections are refused) and ``start()`` listens on
    the same port again.
    """

    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.script: deque[Any] = deque()
        self.seen: list[Seen] = []
        self.accepted: dict[str, list[str]] = {}  # idempotency key -> event ids, as first accepted
        self.duplicates = 0
        self.release = threading.Event()
        self.port = 0
        self._server: _Server | None = None
        self._lock = threading.Lock()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)  # HTTPServer sets SO_REUSEADDR: the same port binds
        server.receiver = self
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def deliveries(self) -> Counter[str]:
        """How many times each event id was accepted."""
        return Counter(e for ids in self.accepted.values() for e in ids)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers["Content-Length"]))
        headers = dict(request.headers.items())
        signed = True
        if self.secret is not None:
            try:
                verify_signature(self.secret, request.headers, body)
            except SignatureError:
                signed = False
        with self._lock:
            action = self.script.popleft() if self.script else 200
        key = request.headers["Idempotency-Key"]
        status, extra = (action, {}) if isinstance(action, int) else action if isinstance(action, tuple) else (0, {})
        if not signed:
            status = 401
        elif action == "hang":
            self.release.wait(30)
            status = 200
        elif action == "lost" or (200 <= status < 300):
            with self._lock:
                if key in self.accepted:
                    self.duplicates += 1
                else:
                    self.accepted[key] = [orjson.loads(line)["event_id"] for line in body.splitlines()]
            status = 500 if action == "lost" else status
        with self._lock:
            self.seen.append(Seen(key, signed, status, headers, body))
        request.send_response(status)
        for name, value in extra.items():
            request.send_header(name, value)
        request.end_headers()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(secret: str | None = SECRET) -> Receiver:
        made.append(Receiver(secret))
        return made[-1]

    yield make
    for r in made:
        r.release.set()
        r.stop()


class Listener:
    def pushed(self, sink: str, by_model: dict[str, int], pending: int) -> None:
        pass

    def triggered(self, model: str, reason: str) -> None:
        pass


def test_a_push_gets_through_503s_a_receiver_that_refuses_and_a_lost_answer_delivering_each_record_once(
        store_url, receiver):
    rx = receiver()
    store = SampleStore(store_url, webhook=True)
    store.put([sample(i) for i in range(10)])
    store.add_trigger("m|weekly|2026-11-30T03:00", "m", "weekly")
    rx.script.extend([200, 503, 503, "lost", 200, (429, {"Retry-After": "1"})])
    outage = {2: rx.stop, 4: rx.start}  # after the 2nd wait the receiver goes away; after the 4th it is back
    sleeps: list[float] = []

    def sleep(delay: float) -> None:
        # The publisher's wait between tries moves the receiver to its next state: no real waiting.
        sleeps.append(delay)
        outage.get(len(sleeps), lambda: None)()

    publisher = WebhookPublisher(rx.url, timeout_s=5, secret=SECRET, retries=3, backoff_s=0.001, sleep=sleep)
    jobs = RetrainJobs(store, {"webhook": publisher}, Listener(), batch_size=3)
    try:
        # 1st batch: 200. 2nd: 503, 503, then refused twice: the push gives up after 4 tries.
        with pytest.raises(PublishFailed, match=r"ConnectError.*after 4 tries") as failed:
            jobs.push()
        assert SECRET not in str(failed.value)
        assert store.pending_count("webhook") == 7
        assert not store.triggers()[0]["webhook_at"], "triggers wait behind the samples"
        # The next push: refused, then back up: accepted but the answer is lost, the retry is a
        # duplicate the receiver drops by its key; 3rd batch: 429 then 200; 4th batch; the trigger.
        assert jobs.push() == 7
    finally:
        publisher.close()
    assert store.pending_count("webhook") == 0
    assert store.triggers()[0]["webhook_at"]
    store.close()

    assert all(s.signed for s in rx.seen), "every request carried a valid signature"
    assert rx.deliveries() == Counter({f"e-{i}": 1 for i in range(10)} | {"m|weekly|2026-11-30T03:00": 1})
    assert rx.duplicates == 1
    assert [s.status for s in rx.seen] == [200, 503, 503, 500, 200, 429, 200, 200, 200]
    keys = [s.key for s in rx.seen]
    second = idempotency_key([{"event_id": f"e-{i}"} for i in (3, 4, 5)])
    assert keys[1:5] == [second] * 4, "every try of a batch, in one push or the next, carries the same key"
    assert len(set(keys)) == 5, "a key per batch"
    assert len(sleeps) == 6
    tries = [0, 1, 2, 0, 1]  # the retry number of each wait but the one after the 429
    assert all(0 <= d <= 0.001 * 2 ** n for d, n in zip(sleeps[:5], tries, strict=True)), sleeps
    assert sleeps[5] == 1.0, "a 429's Retry-After is waited"


def test_backoff_doubles_with_full_jitter_up_to_the_cap_and_retry_after_is_capped(receiver):
    rx = receiver()
    sleeps: list[float] = []
    rx.script.extend([503, 502, 500, 504, 408])
    publisher = WebhookPublisher(rx.url, timeout_s=5, secret=SECRET, retries=4, backoff_s=0.01, max_delay_s=0.05,
                                 sleep=sleeps.append, jitter=lambda: 1.0)
    with pytest.raises(PublishFailed, match=r"answered 408.*after 5 tries"):
        publisher.publish([{"event_id": "a"}])
    assert sleeps == [0.01, 0.02, 0.04, 0.05]
    sleeps.clear()
    rx.script.extend([(503, {"Retry-After": "3600"}), (429, {"Retry-After": "0"})])
    publisher = WebhookPublisher(rx.url, timeout_s=5, secret=SECRET, backoff_s=0.01, max_delay_s=0.05,
                                 sleep=sleeps.append, jitter=lambda: 0.0)
    publisher.publish([{"event_id": "a"}])
    assert sleeps == [0.05, 0.0], "Retry-After is honoured up to max_delay_s"
    assert [s.status for s in rx.seen][-3:] == [503, 429, 200]


def test_a_client_error_is_not_retried(receiver):
    rx = receiver()
    sleeps: list[float] = []
    rx.script.extend([400, 200])
    publisher = WebhookPublisher(rx.url, timeout_s=5, secret=SECRET, sleep=sleeps.append)
    with pytest.raises(PublishFailed, match="answered 400"):
        publisher.publish([{"event_id": "a"}])
    assert (sleeps, len(rx.seen)) == ([], 1)
    rx.secret = "the receiver has another secret"
    with pytest.raises(PublishFailed, match="answered 401"):
        publisher.publish([{"event_id": "a"}])
    assert (sleeps, len(rx.seen)) == ([], 2)


def test_a_request_that_times_out_is_tried_again(receiver):
    rx = receiver()
    sleeps: list[float] = []
    rx.script.append("hang")
    publisher = WebhookPublisher(rx.url, timeout_s=0.3, secret=SECRET, sleep=sleeps.append)
    publisher.publish([{"event_id": "a"}])
    assert len(sleeps) == 1
    wait_for(lambda: rx.accepted, 5, "the retried request")
    assert list(rx.accepted.values()) == [["a"]]


def test_without_a_secret_requests_are_unsigned_but_keyed(receiver):
    rx = receiver(secret=None)
    publisher = WebhookPublisher(rx.url, timeout_s=5)
    publisher.publish([{"event_id": "a"}])
    headers = {k.lower(): v for k, v in rx.seen[0].headers.items()}
    assert "webhook-signature" not in headers
    assert headers["idempotency-key"] == headers["webhook-id"] == idempotency_key([{"event_id": "a"}])
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60


def test_the_secret_is_in_no_log_message_or_error(receiver, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    rx = receiver()
    rx.script.extend([503, 503])
    publisher = WebhookPublisher(rx.url, timeout_s=5, secret=SECRET, retries=2, backoff_s=0.001,
                                 sleep=lambda _: rx.stop())
    with pytest.raises(PublishFailed) as failed:
        publisher.publish([{"event_id": "a"}])
    assert "retry 2 of 2" in caplog.text, "the retries are logged"
    assert SECRET not in caplog.text
    assert SECRET not in str(failed.value) and SECRET not in repr(publisher)
    with pytest.raises(ValueError, match="base64") as bad:
        WebhookPublisher(rx.url, secret="whsec_" + SECRET)
    assert SECRET not in str(bad.value)


# -- configuration ----------------------------------------------------------------------------------------


def test_the_secret_comes_from_the_environment_or_a_file_and_is_never_shown(tmp_path):
    settings = load_settings(environ={"MONITOR_RETRAIN_WEBHOOK_SECRET": SECRET})
    assert settings.retrain.webhook_secrets() == [SECRET]
    assert (settings.retrain.webhook_retries, settings.retrain.webhook_backoff_s) == (4, 0.5)
    assert 'webhook_secret = "<set>"' in render_toml(settings)
    assert SECRET not in render_toml(settings) and SECRET not in repr(settings)
    path = tmp_path / "secret"
    path.write_text(f"  {SECRET}\n")
    settings = load_settings(environ={}, overrides={"retrain": {"webhook_secret_file": str(path)}})
    assert settings.retrain.webhook_secrets() == [SECRET]
    assert load_settings(environ={}).retrain.webhook_secrets() == []
    with pytest.raises(ConfigError, match=r"webhook_secret or retrain\.webhook_secret_file, not both"):
        load_settings(environ={"MONITOR_RETRAIN_WEBHOOK_SECRET": SECRET},
                      overrides={"retrain": {"webhook_secret_file": str(path)}})


@pytest.mark.parametrize(("content", "error"), [(None, "cannot be read"), (b" \n", "is empty"),
                                                (b"\xff" + SECRET.encode(), "is not UTF-8")])
def test_an_unusable_secret_file_is_an_error_naming_the_key_not_the_content(tmp_path, content, error):
    path = tmp_path / "secret"
    if content is not None:
        path.write_bytes(content)
    # Found by validation (monitor config --check), before the daemon does anything.
    with pytest.raises(ConfigError, match=f"retrain.webhook_secret_file {path} {error}") as failed:
        load_settings(environ={}, overrides={"retrain": {"webhook_secret_file": str(path)}})
    assert SECRET not in str(failed.value)
    # A chained UnicodeDecodeError would print the file's bytes with the traceback.
    assert failed.value.__cause__ is None and (failed.value.__context__ is None or failed.value.__suppress_context__)


# -- the daemon -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("webhook", [True, False])
def test_the_daemons_store_keeps_samples_until_the_webhook_has_them(store_url, webhook):
    url = "http://127.0.0.1:9/hook" if webhook else ""
    store = open_store(load_settings(environ={}, overrides={"store": {"url": store_url},
                                                            "retrain": {"webhook_url": url}}))
    try:
        store.put([sample(1), sample(2)])
        with store.claim_unpushed(10, "queue") as (_, mark):
            mark()  # both reached the queue topic
        with store.claim_unpushed(1, "webhook") as (_, mark):
            mark()  # only e-1 reached the webhook
        deleted = store.prune(time.time() + 1)
        kept = [r["event_id"] for r in store.samples()]
    finally:
        store.close()
    if webhook:
        assert (deleted["samples"], kept) == (1, ["e-2"]), "e-2 has not reached the webhook yet"
    else:
        assert (deleted["samples"], kept) == (2, [])


@pytest.mark.kafka
def test_the_daemon_signs_what_it_pushes_to_the_webhook(broker, daemon, receiver, tmp_path):
    rx = receiver()
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    d = daemon(retrain={"push_interval_s": 0.2, "webhook_url": rx.url, "webhook_secret_file": str(path)})
    ts = time.time()
    produce(broker, d.settings.topics.tracking, [
        {"event_id": "p-1", "type": "prediction", "ts": ts, "model": "m", "model_version": "v1",
         "request_id": "r-1", "prediction": {"score": 0.9}, "latency_ms": 10.0, "status": "ok"}])
    produce(broker, d.settings.topics.feedback, [
        {"event_id": "f-1", "type": "feedback", "ts": ts + 1, "model": "m", "request_id": "r-1",
         "kind": "thumbs_down", "reason": "irrelevant"}])
    wait_for(lambda: rx.deliveries()["f-1"], 60, "the flagged sample at the webhook")
    assert all(s.signed for s in rx.seen)
    assert rx.deliveries()["f-1"] == 1


@pytest.mark.kafka
def test_the_daemon_does_not_start_with_an_unreadable_secret_file(broker, tmp_path, caplog):
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    settings = make_settings(broker, tmp_path, retrain={"webhook_url": "http://127.0.0.1:9/hook",
                                                        "webhook_secret_file": str(secret)})
    secret.unlink()
    secret.mkdir()  # unreadable after validation: the daemon still refuses to start
    assert asyncio.run(Service(settings).run()) == EXIT_CONFIG
    assert f"retrain.webhook_secret_file {secret} cannot be read" in caplog.text


def test_a_token_in_the_webhook_url_is_never_shown():
    """A receiver's token often rides in the URL's user or query: not in errors, reprs or `monitor config`."""
    url = "http://alice:hunter2@127.0.0.1:9/hook?token=SECRET123"
    publisher = WebhookPublisher(url, timeout_s=1, retries=0)
    try:
        with pytest.raises(PublishFailed) as failed:
            publisher.publish([{"event_id": "e-1"}])
    finally:
        publisher.close()
    shown = str(failed.value) + repr(publisher) + render_toml(load_settings(environ={}, overrides={
        "retrain": {"webhook_url": url}}))
    assert "hunter2" not in shown and "SECRET123" not in shown
    assert "token=***" in shown
