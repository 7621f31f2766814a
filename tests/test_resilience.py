"""What happens when things go wrong: rebalances mid-batch, a dying broker, huge or odd input,
idle HTTP clients, a taken port, an early Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import ClassVar

import httpx
import orjson
import pytest
from helpers import (
    committed_offsets,
    make_settings,
    messages,
    produce,
    read_topic,
    wait_for,
    waiting_in_saved_join,
)

from collectors.errors import StartupError
from monitor.broker import EmbeddedBroker, free_port
from monitor.config import load_settings, render_toml
from monitor.http import Health, StatusServer
from monitor.metrics import OTHER, Metrics
from monitor.pipeline import Pipeline
from monitor.simulator import TrafficSimulator
from retrain.store import SampleStore

START = 1_790_000_000.0
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}


def traffic(seconds: int, rate: float, seed: int = 3) -> list[dict]:
    sim = TrafficSimulator(seed=seed, start_ts=START, bad_input_rate=0.0)
    return [e for _ in range(seconds) for e in sim.advance(1.0, rate) if isinstance(e, dict)]


@pytest.mark.kafka
def test_a_member_joining_while_a_slow_batch_is_in_hand_waits_for_its_commit(broker, daemon, tmp_path):
    events = traffic(30, 300)
    settings = make_settings(broker, tmp_path, kafka={"max_batch_records": 500})
    first = daemon(settings)
    store_put = first.service.store.put
    slow = {"calls": 0}

    def slow_put(samples, alerts=(), traffic=None):
        slow["calls"] += 1
        if slow["calls"] == 2:
            time.sleep(3)  # the second member joins while this batch is in hand
        store_put(samples, alerts, traffic)

    first.service.store.put = slow_put
    s = settings
    produce(broker, s.topics.tracking, [e for e in events if e["type"] != "feedback"])
    produce(broker, s.topics.feedback, [e for e in events if e["type"] == "feedback"])
    wait_for(lambda: slow["calls"] >= 2, 30, "the slow batch")
    second = daemon(settings)  # same group: a rebalance starts now
    tracking = sum(1 for e in events if e["type"] != "feedback")
    ends = {s.topics.tracking: tracking, s.topics.feedback: len(events) - tracking}
    wait_for(lambda: {t: sum(n for (topic, _), n in committed_offsets(broker, s.kafka.group_id, [t]).items())
                      for t in ends} == ends, 60, "every message committed by one member or the other")
    assert first.exit_code is None, "the first member survived the rebalance"
    assert second.exit_code is None
    # Every bad case is stored, or saved with the join's state at the stop, still waiting
    # for its prediction (the next member to read its partition takes it over).
    assert (second.stop(), first.stop()) == (0, 0)
    expected = {e["event_id"] for e in events if e.get("kind") in ("thumbs_down", "complaint", "correction")}
    store = SampleStore(s.store.url)
    try:
        assert expected <= {r["event_id"] for r in store.samples(limit=100_000)} | waiting_in_saved_join(store)
    finally:
        store.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_a_dead_broker_does_not_keep_the_daemon_from_stopping_in_time(tmp_path):
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as own:
        port = free_port()
        settings = make_settings(own.bootstrap, tmp_path, http={"port": port}, service={"shutdown_timeout_s": 5.0},
                                 kafka={"request_timeout_s": 2.0})
        config = tmp_path / "monitor.toml"
        config.write_text(render_toml(settings))
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "-c", str(config)], env=CLEAN_ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: _ready(port), 30, "the daemon to be ready")
            produce(own.bootstrap, settings.topics.tracking, traffic(5, 200))
            wait_for(lambda: _status(port).get("messages_committed", 0) > 0, 30, "a first commit")
            own.stop()  # the broker dies
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            took = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
    assert took < 5.0 + 5.0, f"stopped {took:.1f}s after SIGTERM with shutdown_timeout_s = 5\n{out.decode()[-2000:]}"


def _status(port: int) -> dict:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/status", timeout=2).json()
    except httpx.HTTPError:
        return {}


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.kafka
def test_a_message_too_large_for_the_dead_letter_topic_is_cut_and_the_daemon_goes_on(broker, daemon):
    from kafka import KafkaProducer  # noqa: PLC0415 - a producer that may send 2 MB

    d = daemon()
    s = d.settings
    huge = b'{"comment": "' + b"x" * 1_500_000 + b'"}'
    producer = KafkaProducer(bootstrap_servers=broker, acks="all", max_request_size=4_000_000)
    producer.send(s.topics.tracking, value=huge)
    ok = {"event_id": "after", "type": "prediction", "ts": START, "model": "m", "request_id": "r"}
    producer.send(s.topics.tracking, value=orjson.dumps(ok))
    producer.flush(30)
    producer.close()
    wait_for(lambda: d.service.committed >= 2, 30, "both messages committed")
    letter = read_topic(broker, s.topics.deadletter, 1)[0]
    headers = dict(letter.headers)
    assert headers["monitor.reason"] == b"oversized"
    assert headers["monitor.truncated"] == str(len(huge)).encode()
    assert letter.value == huge[:900_000]
    assert d.service.metrics.total("model_monitor_events_total", model="m") == 1


def test_idle_http_clients_cannot_exhaust_the_server():
    health = Health(60)
    server = StatusServer("127.0.0.1", 0, Metrics().registry(), health)
    server.start()
    idle = []
    try:
        for _ in range(16):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never finish the request
            idle.append(sock)
        time.sleep(0.2)
        refused = httpx.get(server.url + "/healthz", timeout=5)
        assert refused.status_code == 503, "past 16 requests in hand, the rest are refused at once"
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: httpx.get(server.url + "/healthz", timeout=5).status_code == 200, 15, "the slots to free up")
    server.stop()


def test_a_taken_port_is_a_start_up_error_that_names_the_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=r"set http\.port"):
            StatusServer("127.0.0.1", port, Metrics().registry(), Health(60))
        config = tmp_path / "monitor.toml"
        config.write_text(f'[http]\nhost = "127.0.0.1"\nport = {port}\n[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
        result = subprocess.run([sys.executable, "-m", "monitor", "run", "-c", str(config)], env=CLEAN_ENV,
                                capture_output=True, timeout=60, check=False)
    assert result.returncode == 3, result.stderr.decode()[-2000:]
    assert b"set http.port" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.kafka
def test_ctrl_c_before_the_demo_is_ready_ends_it_promptly():
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "demo", "--metrics-port", "0"], env=CLEAN_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"model-monitor demo")  # the broker is up; the group not joined
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 130), proc.stderr.read().decode()[-2000:]


def test_ensure_topics_reports_what_the_broker_refused(monkeypatch):
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    from collectors import kafka  # noqa: PLC0415

    class Response:
        topic_errors: ClassVar = [("a", 0, None), ("b", 36, "exists"), ("c", 38, "Replication factor: 3 larger than "
                                                                  "available brokers: 1.")]

    async def nothing(self, *args, **kwargs):
        return None

    async def no_topics(self):
        return []

    async def refuse(self, topics):
        return Response()

    monkeypatch.setattr(AIOKafkaAdminClient, "start", nothing)
    monkeypatch.setattr(AIOKafkaAdminClient, "close", nothing)
    monkeypatch.setattr(AIOKafkaAdminClient, "list_topics", no_topics)
    monkeypatch.setattr(AIOKafkaAdminClient, "create_topics", refuse)
    with pytest.raises(StartupError, match=r"c: error 38 Replication factor.*kafka.topic_replication") as caught:
        asyncio.run(kafka.ensure_topics("127.0.0.1:1", {"a": 1, "b": 1, "c": 1}, 1.0, replication=3))
    assert "b:" not in str(caught.value), "a topic that already exists is fine"


def test_counters_never_go_down_when_a_version_is_evicted():
    settings = load_settings(environ={}, overrides={"detect": {"max_versions": 1, "max_models": 1}})
    pipeline = Pipeline(settings, Metrics(), clock=lambda: START + 1e6)
    mismatched = [{"event_id": f"a-{i}", "type": "prediction", "ts": START + i, "model": "m", "model_version": "v1",
                   "features": {"x": 1.0 if i == 0 else "text"}} for i in range(5)]
    pipeline.process(messages(mismatched))
    before = pipeline.metrics.value("model_monitor_feature_type_mismatches_total", ("m",))
    pipeline.process(messages([{**mismatched[0], "event_id": "b", "model_version": "v2"}]))  # evicts v1
    assert pipeline.metrics.value("model_monitor_feature_type_mismatches_total", ("m",)) == before == 4
    others = [{"event_id": f"o-{i}", "type": "prediction", "ts": START, "model": f"other-{i}",
               "model_version": f"v{i}"} for i in range(50)]
    pipeline.process(messages(others))
    versions = {labels[1] for labels in pipeline.metrics._series["model_monitor_predictions_total"].values
                if labels[0] == OTHER}
    assert versions == {OTHER}, "untracked models must not grow a series per version"
