"""No secret reaches the store, a log line, /status, an error message, a report or a dataset.

Every secret setting is set (the SASL password, the webhook secret from a file, the
/report token, a password in the store's URL) and a daemon runs on the real broker and
PostgreSQL with them: checkpoints saved, samples pushed to a signing webhook, bad cases
stored. Then everything it and the commands wrote is searched for each secret.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import DaemonThread, make_settings, produce, wait_for
from sqlalchemy import create_engine, inspect, select, text
from test_rollback import canary_alert, inject
from test_webhook import Receiver

from common.errors import MonitorError
from monitor.broker import free_port
from monitor.config import load_settings
from monitor.service import Service
from retrain.store import SampleStore

SASL = "sasl-S3CRET-0a1b"
WEBHOOK = "webhook-S3CRET-2c3d"
TOKEN = "token-S3CRET-4e5f"
DB = "dbpw-S3CRET-6a7b"
REDACT = "redact-S3CRET-8c9d"  # the key of the pseudonyms
ROLLBACK = "rollback-S3CRET-0e1f"  # signs canary rollback requests
SECRETS = (SASL, WEBHOOK, TOKEN, DB, REDACT, ROLLBACK)
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def with_password(url: str) -> str:
    """The test database's URL with a password (trust authentication ignores it)."""
    assert url.startswith("postgresql+psycopg://postgres@")
    return url.replace("postgresql+psycopg://postgres@", f"postgresql+psycopg://postgres:{DB}@", 1)


def assert_no_secret(where: str, data: str | bytes) -> None:
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{where} holds the secret {secret}"


def dump_store(url: str) -> bytes:
    """Every value of every table of the store, as bytes (pickled checkpoints as they are)."""
    engine = create_engine(url)
    out: list[bytes] = []
    try:
        with engine.connect() as conn:
            for name in inspect(conn).get_table_names():
                rows = conn.execute(select(text("*")).select_from(text(name))).all()
                for row in rows:
                    out += [v if isinstance(v, bytes | memoryview) else str(v).encode() for v in row]
                out.append(f"[{name}: {len(rows)} rows]".encode())
    finally:
        engine.dispose()
    return b"\n".join(bytes(v) for v in out)


def monitor(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    # Run from another folder (the files it writes land there): the checkout must stay importable.
    path = os.pathsep.join(p for p in (str(ROOT), clean.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, timeout=180,
                          env={**clean, "PYTHONPATH": path, **env}, cwd=cwd, check=False)


def traffic(n: int) -> tuple[list[dict], list[dict]]:
    ts = time.time() - 60
    predictions = [{"event_id": f"p-{i}", "type": "prediction", "ts": ts + i * 0.01, "model": "recsys",
                    "model_version": "v1", "request_id": f"r-{i}", "features": {"price": 10.0 + i % 7, "cat": "a"},
                    "prediction": {"score": 0.9, "label": "click"}, "latency_ms": 20.0, "status": "ok",
                    "segment": {"region": "east"}} for i in range(n)]
    feedback = [{"event_id": f"f-{i}", "type": "feedback", "ts": ts + 1 + i * 0.01, "model": "recsys",
                 "request_id": f"r-{i}", "kind": "complaint" if i % 2 else "thumbs_down",
                 "reason": "irrelevant", "comment": f"not what I wanted, mail me at user{i}@example.com"}
                for i in range(0, n, 5)]
    return predictions, feedback


def test_no_secret_reaches_the_store_logs_status_errors_reports_or_datasets(broker, pg_url, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    store_url = with_password(pg_url)
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(WEBHOOK + "\n")
    rx = Receiver(WEBHOOK)
    rollback_rx = Receiver(ROLLBACK)
    rollback_rx.script.append(503)  # a retry is logged: with no secret in it
    settings = make_settings(
        broker, tmp_path, kafka={"sasl_username": "monitor", "sasl_password": SASL}, store={"url": store_url},
        retrain={"webhook_url": rx.url, "webhook_secret_file": str(secret_file), "push_interval_s": 0.2},
        http={"token": TOKEN}, service={"checkpoint_interval_s": 0.3},
        redact={"pseudonymise": ["phone", "email"], "secret": REDACT},
        datasets={"dir": str(tmp_path / "daemon-datasets")},
        canary={"rollback_webhook_url": rollback_rx.url, "rollback_webhook_secret": ROLLBACK})
    daemon = DaemonThread(settings).start()
    try:
        predictions, feedback = traffic(200)
        produce(broker, settings.topics.tracking, predictions)
        produce(broker, settings.topics.feedback, feedback)
        wanted = {f["event_id"] for f in feedback}
        wait_for(lambda: wanted <= set(rx.deliveries()), 60, "every bad case at the signing webhook")
        assert all(s.signed for s in rx.seen)
        inject(daemon, canary_alert())
        wait_for(rollback_rx.deliveries, 60, "the canary rollback request at its signing webhook")
        assert all(s.signed for s in rollback_rx.seen) and len(rollback_rx.seen) == 2
        status = httpx.get(daemon.url + "/status", timeout=10)
        report = httpx.get(daemon.url + "/report", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert status.status_code == report.status_code == 200
        assert status.json()["models"] == ["recsys"]
        assert "irrelevant" in report.text or "recsys" in report.text
    finally:
        daemon.stop()
        for receiver in (rx, rollback_rx):
            receiver.release.set()
            receiver.stop()
    assert daemon.exit_code == 0  # and its state was saved at the stop (and every 0.3 s while it ran)
    assert_no_secret("/status", status.content)
    assert_no_secret("/report", report.content)
    stored = dump_store(store_url)
    assert b"[mm_checkpoints: 1 rows]" in stored and b"[mm_flagged_samples: " in stored
    assert_no_secret("the store (mm_checkpoints included)", stored)
    assert_no_secret("the daemon's log", caplog.text)
    assert_no_secret("the daemon's log arguments", repr([(r.msg, r.args) for r in caplog.records]))

    # The commands, with every secret in the environment as an operator would set them.
    env = {"MONITOR_KAFKA_SASL_PASSWORD": SASL, "MONITOR_KAFKA_SASL_USERNAME": "monitor",
           "MONITOR_STORE_URL": store_url, "MONITOR_RETRAIN_WEBHOOK_SECRET": WEBHOOK, "MONITOR_HTTP_TOKEN": TOKEN,
           "MONITOR_REDACT_SECRET": REDACT, "MONITOR_REDACT_PSEUDONYMISE": "phone,email",
           "MONITOR_CANARY_ROLLBACK_WEBHOOK_SECRET": ROLLBACK}
    outputs = {
        "monitor config": monitor("config", env=env, cwd=tmp_path),
        "monitor report": monitor("report", "--out", "r.html", "--markdown", "r.md", env=env, cwd=tmp_path),
        "monitor badcases": monitor("badcases", "--format", "jsonl", "--explain", env=env, cwd=tmp_path),
        "monitor dataset build": monitor("dataset", "build", "--model", "recsys", "--out", "datasets", env=env,
                                         cwd=tmp_path),
        "monitor dataset list": monitor("dataset", "list", "--format", "jsonl", env=env, cwd=tmp_path),
    }
    for name, result in outputs.items():
        assert result.returncode == 0, (name, result.stderr.decode())
        assert_no_secret(f"{name} output", result.stdout + result.stderr)
    assert b'sasl_password = "<set>"' in outputs["monitor config"].stdout
    assert b'rollback_webhook_secret = "<set>"' in outputs["monitor config"].stdout
    assert b"postgres:***@" in outputs["monitor config"].stdout
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".html", ".md", ".jsonl", ".json",
                                                                               ".parquet")]
    assert {p.name for p in written} >= {"r.html", "r.md", "manifest.json"}
    assert any("daemon-datasets" in str(p) for p in written) or (tmp_path / "datasets").exists()
    for path in written:
        assert_no_secret(str(path), path.read_bytes())
    assert_no_secret("the store after the commands", dump_store(store_url))


def test_no_secret_in_the_messages_of_failed_start_ups(pg_url, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    dead_store = f"postgresql+psycopg://postgres:{DB}@127.0.0.1:{free_port()}/test"
    env = {"MONITOR_KAFKA_SASL_PASSWORD": SASL, "MONITOR_RETRAIN_WEBHOOK_SECRET": WEBHOOK,
           "MONITOR_CANARY_ROLLBACK_WEBHOOK_SECRET": ROLLBACK, "MONITOR_HTTP_TOKEN": TOKEN,
           "MONITOR_KAFKA_CONNECT_TIMEOUT_S": "1", "MONITOR_HTTP_PORT": "0",
           "MONITOR_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    failures = {
        "broker unreachable": monitor("run", env={**env, "MONITOR_STORE_URL": with_password(pg_url)}, cwd=tmp_path),
        "store unreachable": monitor("run", env={**env, "MONITOR_STORE_URL": dead_store}, cwd=tmp_path),
        "report, store unreachable": monitor("report", "--out", "r.html", env={**env, "MONITOR_STORE_URL": dead_store},
                                             cwd=tmp_path),
        "SASL without a user": monitor("config", "--check", env={
            **env, "MONITOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, cwd=tmp_path),
        "two webhook secrets": monitor("config", "--check", env={
            **env, "MONITOR_RETRAIN_WEBHOOK_SECRET_FILE": str(tmp_path)}, cwd=tmp_path),
        "two rollback webhook secrets": monitor("config", "--check", env={
            **env, "MONITOR_CANARY_ROLLBACK_WEBHOOK_SECRET_FILE": str(tmp_path)}, cwd=tmp_path),
    }
    for name, result in failures.items():
        assert result.returncode in (1, 2, 3), (name, result.returncode, result.stderr.decode())
        assert result.stderr, name
        assert_no_secret(f"{name}: {result.stderr.decode()}", result.stdout + result.stderr)
        assert b"Traceback" not in result.stderr, name

    # The same in-process: the exception of each failed start-up and what was logged.
    settings = load_settings(environ={}, overrides={
        "kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}", "connect_timeout_s": 1.0, "sasl_password": SASL},
        "store": {"url": dead_store}, "http": {"host": "127.0.0.1", "port": 0, "token": TOKEN},
        "retrain": {"webhook_secret": WEBHOOK},
        "canary": {"rollback_webhook_url": "http://127.0.0.1:9/rollback", "rollback_webhook_secret": ROLLBACK}})
    assert asyncio.run(Service(settings).run()) == 3
    for url in (dead_store, "postgresql+psycopg://postgres:" + DB + "@127.0.0.1:1/test?sslmode=nonsense"):
        with pytest.raises(MonitorError) as failed:
            SampleStore(url)  # it cannot connect: nothing to close
        assert_no_secret("a store's error", f"{failed.value} {failed.value.__cause__} {failed.value!r}")
    assert_no_secret("the log of failed start-ups", caplog.text)
