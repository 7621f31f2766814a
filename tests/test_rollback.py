"""Canary rollback requests: a ``canary_regression`` alert through the effect chain makes one
signed POST per model and canary version, across replays, restarts and daemons sharing the
store; a failed send is retried later and never lost. Against a real HTTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from helpers import DaemonThread, make_settings, wait_for
from test_webhook import SECRET, Receiver

from collectors.contract import Alert
from common.errors import PublishFailed
from monitor.metrics import ERRORS
from monitor.pipeline import BatchResult
from monitor.sinks import RollbackRequests, Store, run_chain
from retrain.publisher import WebhookClient
from retrain.rollback import RollbackSender
from retrain.store import SampleStore
from retrain.webhook import idempotency_key, verify_signature


def canary_alert(version: str = "v13", at_event: int = 7, model: str = "recsys", detector: str = "error_rate",
                 kind: str = "canary_regression") -> Alert:
    return Alert(kind, model, version, None, detector, 0.031, 0.0, at_event, 1_790_000_000.0 + at_event,
                 event_id=f"e-{at_event}", baseline_version="v12" if kind == "canary_regression" else None)


@pytest.fixture
def receiver() -> Iterator[Callable[[], Receiver]]:
    """Real webhook receivers on free ports (``test_webhook.Receiver``) verifying SECRET."""
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver(SECRET))
        return made[-1]

    yield make
    for r in made:
        r.release.set()
        r.stop()


class Senders:
    """Stores and senders on one database, as several daemons would have; closed at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[tuple[SampleStore, RollbackSender]] = []

    def __call__(self, target: str, retries: int = 2) -> tuple[SampleStore, RollbackSender]:
        store = SampleStore(self.url)
        client = WebhookClient(target, 5.0, secret=SECRET, retries=retries, backoff_s=0.001, name="rollback webhook")
        sender = RollbackSender(store, client)
        self.made.append((store, sender))
        return store, sender


@pytest.fixture
def senders(store_url: str) -> Iterator[Senders]:
    made = Senders(store_url)
    yield made
    for store, sender in made.made:
        sender.close()
        store.close()


def chain(store: SampleStore, send: Callable[[], None]) -> list[Store | RollbackRequests]:
    """The daemon's durable sinks as far as alerts go: the store, then the rollback requests."""
    return [Store(store), RollbackRequests(store, send=send)]


def through(store: SampleStore, send: Callable[[], None], *alerts: Alert) -> None:
    asyncio.run(run_chain(chain(store, send), BatchResult(alerts=list(alerts))))


def test_a_canary_regression_makes_one_signed_request_across_replays_and_daemons(senders, receiver):
    rx = receiver()
    store, sender = senders(rx.url)
    alert = canary_alert()
    through(store, sender.send, alert)

    (seen,) = rx.seen
    assert seen.status == 200 and seen.signed
    verify_signature(SECRET, seen.headers, seen.body)  # what a receiver does
    body = orjson.loads(seen.body)
    assert body == {"type": "rollback", "event_id": "rollback|recsys|v13", "model": "recsys", "model_version": "v13",
                    "baseline_version": "v12", "alert": alert.to_dict()}
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == headers["webhook-id"] == idempotency_key([{"event_id": "rollback|recsys|v13"}])
    assert [r["alert"] for r in store.rollbacks()] == [alert.to_dict()]
    assert store.alerts()[0]["kind"] == "canary_regression", "the alert itself is stored too"

    # The same batch read again, then another alert about the same canary from another daemon.
    through(store, sender.send, alert)
    other_store, other_sender = senders(rx.url)
    through(other_store, other_sender.send, canary_alert(at_event=99, detector="latency"))
    assert len(rx.seen) == 1, "one request per model and canary version"
    assert len(store.rollbacks()) == 1

    # Other alerts send nothing; another canary (or model) has its own request.
    through(store, sender.send, canary_alert(kind="data_drift"), canary_alert(kind="slo_burn", version="v13"))
    assert len(rx.seen) == 1
    through(other_store, other_sender.send, canary_alert(version="v14"), canary_alert(model="search"))
    assert sorted(orjson.loads(s.body)["event_id"] for s in rx.seen) == [
        "rollback|recsys|v13", "rollback|recsys|v14", "rollback|search|v13"]
    assert all(s.signed for s in rx.seen)


def test_a_503_then_200_is_delivered_once_under_one_key(senders, receiver):
    rx = receiver()
    rx.script.append(503)
    store, sender = senders(rx.url)
    through(store, sender.send, canary_alert())
    assert [s.status for s in rx.seen] == [503, 200]
    assert len({s.key for s in rx.seen}) == 1, "the retry carries the same Idempotency-Key"
    assert store.rollbacks()[0]["sent_at"] is not None


def test_a_failed_send_is_kept_and_sent_later_and_does_not_hold_back_others(senders, receiver):
    rx = receiver()
    store, sender = senders(rx.url, retries=1)
    rx.stop()  # refused: the request is recorded, not sent
    asyncio.run(run_chain(chain(store, lambda: None), BatchResult(alerts=[canary_alert()])))
    with pytest.raises(PublishFailed, match=r"rollback webhook http://127\.0\.0\.1:\d+/hook failed: ConnectError"):
        sender.send()
    assert store.rollbacks()[0]["sent_at"] is None
    rx.start()
    assert sender.send() == 1
    assert sender.send() == 0
    assert rx.deliveries() == {"rollback|recsys|v13": 1}

    # A receiver that refuses one request (400: not retried) still gets the next.
    rx.script.append(400)
    asyncio.run(run_chain(chain(store, lambda: None), BatchResult(alerts=[canary_alert("v14"), canary_alert("v15")])))
    with pytest.raises(PublishFailed, match="answered 400"):
        sender.send()
    assert {r["model_version"]: r["sent_at"] is not None for r in store.rollbacks()} == {
        "v13": True, "v14": False, "v15": True}
    assert sender.send() == 1
    assert set(rx.deliveries()) == {"rollback|recsys|v13", "rollback|recsys|v14", "rollback|recsys|v15"}
    assert all(n == 1 for n in rx.deliveries().values())


# -- the daemon ------------------------------------------------------------------------------------------
def inject(daemon: DaemonThread, *alerts: Alert) -> None:
    """Pass alerts through the running daemon's effect chain, on its loop, as a batch's would."""
    loop = daemon._loop
    assert loop is not None
    service = daemon.service
    asyncio.run_coroutine_threadsafe(run_chain(service.chain, BatchResult(alerts=list(alerts)), retry=service._retry),
                                     loop).result(30)


@pytest.mark.kafka
def test_the_daemon_sends_each_rollback_once_across_restarts(broker, receiver, tmp_path: Path):
    rx = receiver()
    secret = tmp_path / "rollback-secret"
    secret.write_text(SECRET + "\n")
    settings = make_settings(broker, tmp_path, canary={"rollback_webhook_url": rx.url,
                                                       "rollback_webhook_secret_file": str(secret)},
                             retrain={"push_interval_s": 0.3, "trigger_cron": ""})
    # A request recorded before a restart but never sent (the daemon died first) goes at start-up.
    left = SampleStore(settings.store.url)
    left.add_rollbacks([canary_alert("v11")])
    left.close()

    daemon = DaemonThread(settings).start()
    try:
        kinds = [type(s).__name__ for s in daemon.service.chain]
        assert kinds[kinds.index("Store") + 1] == "RollbackRequests", kinds
        wait_for(lambda: "rollback|recsys|v11" in rx.deliveries(), 30, "the request left from before")
        rx.script.append(503)
        inject(daemon, canary_alert("v13"), canary_alert(kind="metric_decay"))
        wait_for(lambda: "rollback|recsys|v13" in rx.deliveries(), 30, "the rollback request")
        assert daemon.service.metrics.total(ERRORS) == 0, "a 503 then 200 is one delivery, no error"
    finally:
        assert daemon.stop() == 0
    again = DaemonThread(make_settings(broker, tmp_path, store={"url": settings.store.url},
                                       canary={"rollback_webhook_url": rx.url,
                                               "rollback_webhook_secret_file": str(secret)},
                                       retrain={"push_interval_s": 0.3, "trigger_cron": ""})).start()
    try:
        inject(again, canary_alert("v13", at_event=500))  # the same canary, seen again after the restart
        time.sleep(1.0)  # a few runs of the interval job
    finally:
        assert again.stop() == 0
    assert rx.deliveries() == {"rollback|recsys|v11": 1, "rollback|recsys|v13": 1}
    assert all(s.signed for s in rx.seen)


@pytest.mark.kafka
def test_the_daemon_keeps_running_while_the_rollback_webhook_is_down(broker, receiver, tmp_path: Path):
    rx = receiver()
    rx.stop()
    daemon = DaemonThread(make_settings(broker, tmp_path, canary={"rollback_webhook_url": rx.url,
                                                                  "rollback_webhook_secret": SECRET},
                                        retrain={"push_interval_s": 0.3, "trigger_cron": "",
                                                 "webhook_retries": 0})).start()
    try:
        inject(daemon, canary_alert())
        metrics = daemon.service.metrics
        wait_for(lambda: metrics.total(ERRORS, stage="canary_rollback") >= 2, 30, "failed sends, counted")
        assert "canary_rollback" in daemon.service.health.ready()[1]
        assert daemon.exit_code is None, "still running"
        rx.start()
        wait_for(rx.deliveries, 30, "the request once the webhook is back")
        wait_for(lambda: "canary_rollback" not in daemon.service.health.ready()[1], 10, "readiness back")
    finally:
        assert daemon.stop() == 0
    assert rx.deliveries() == {"rollback|recsys|v13": 1}
