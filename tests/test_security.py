"""Security: Kafka SASL and TLS reach every client; /report needs a token beyond the loopback interface."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from collectors.kafka import KafkaSink, KafkaSource
from common.errors import ConfigError
from monitor.config import load_settings
from monitor.http import Health, StatusServer
from monitor.service import kafka_client_config, retrain_producer_config
from retrain.publisher import KafkaPublisher

PASSWORD = "sasl-pw-never-shown"
TOKEN = "report-token-never-shown"


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (also used as the CA file)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=model-monitor-test"], check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_and_tls_settings_reach_every_kafka_client(tmp_path, client_cert, mechanism):
    cert, key = client_cert
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    settings = load_settings(environ={}, overrides={"kafka": {
        "bootstrap_servers": "127.0.0.1:9", "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
        "sasl_username": "monitor", "sasl_password_file": str(password), "ssl_cafile": str(cert),
        "ssl_certfile": str(cert), "ssl_keyfile": str(key)}})
    config = kafka_client_config(settings)
    assert set(config) == {"security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
                           "sasl_plain_password"}
    assert (config["security_protocol"], config["sasl_mechanism"], config["sasl_plain_username"],
            config["sasl_plain_password"]) == ("SASL_SSL", mechanism, "monitor", PASSWORD)
    context = config["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "model-monitor-test"),),)]

    async def aiokafka_clients() -> list[object]:
        # The daemon's consumer, its producer and the admin client of ensure_topics (none connects here).
        source = KafkaSource(["t"], "127.0.0.1:9", "g", max_records=10, fetch_timeout_ms=10, **config)
        sink = KafkaSink("127.0.0.1:9", **config)
        admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9", **config)
        clients = [source._consumer._client, sink._producer.client, admin._client]
        await admin.close()
        return clients

    for client in asyncio.run(aiokafka_clients()):
        assert client._security_protocol == "SASL_SSL"
        assert client._ssl_context is context
        assert (client._sasl_mechanism, client._sasl_plain_username, client._sasl_plain_password) == (
            mechanism, "monitor", PASSWORD)
    # kafka-python's producer of the retraining queue takes the same keywords (api_version given:
    # it would otherwise ask the broker for it while being built).
    publisher = KafkaPublisher("rt", timeout_s=1.0, api_version=(2, 5), **retrain_producer_config(settings, config))
    try:
        produced = publisher._producer.config
        assert (produced["security_protocol"], produced["sasl_mechanism"], produced["sasl_plain_username"],
                produced["sasl_plain_password"], produced["ssl_context"]) == (
            "SASL_SSL", mechanism, "monitor", PASSWORD, context)
        assert produced["bootstrap_servers"] == ["127.0.0.1:9"]
    finally:
        publisher.close()


def test_plaintext_gives_the_clients_no_security_keywords():
    assert kafka_client_config(load_settings(environ={"MONITOR_KAFKA_SASL_PASSWORD": PASSWORD})) == {}
    tls = kafka_client_config(load_settings(environ={"MONITOR_KAFKA_SECURITY_PROTOCOL": "SSL"}))
    assert set(tls) == {"security_protocol", "ssl_context"}


def test_a_file_that_is_not_a_certificate_is_a_config_error_naming_the_key(tmp_path):
    bogus = tmp_path / "cert.pem"
    bogus.write_text("not a certificate " + PASSWORD)
    with pytest.raises(ConfigError, match=f"kafka.ssl_certfile {bogus} and kafka.ssl_keyfile") as failed:
        load_settings(environ={"MONITOR_KAFKA_SECURITY_PROTOCOL": "SSL", "MONITOR_KAFKA_SSL_CERTFILE": str(bogus)})
    assert PASSWORD not in str(failed.value)


# -- /report: what users wrote, behind a token beyond the loopback interface -------------------------


def page() -> tuple[bytes, str]:
    return b"<html>what users wrote</html>", "text/html"


def serve(host: str, token: str = "") -> StatusServer:
    server = StatusServer(host, 0, CollectorRegistry(), Health(60.0), pages={"/report": page}, token=token)
    server.start()
    return server


def test_report_on_loopback_without_a_token_is_open():
    server = serve("127.0.0.1")
    try:
        assert httpx.get(server.url + "/report", timeout=10).status_code == 200
    finally:
        server.stop()


def test_report_beyond_loopback_without_a_token_is_refused_saying_how_to_set_one(caplog):
    caplog.set_level(logging.INFO, logger="monitor.http")
    server = serve("0.0.0.0")
    try:
        url = f"http://127.0.0.1:{server.port}"
        refused = httpx.get(url + "/report", timeout=10)
        assert refused.status_code == 403
        assert "MONITOR_HTTP_TOKEN" in refused.text and "http.token_file" in refused.text
        # The metrics and the probes stay open.
        for path in ("/metrics", "/healthz", "/status"):
            assert httpx.get(url + path, timeout=10).status_code == 200
    finally:
        server.stop()
    assert "/report from 127.0.0.1 refused" in caplog.text


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_with_a_token_report_needs_the_bearer_header(host, caplog):
    caplog.set_level(logging.INFO, logger="monitor.http")
    server = serve(host, token=TOKEN)
    try:
        url = f"http://127.0.0.1:{server.port}/report"
        bare = httpx.get(url, timeout=10)
        assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Bearer")
        for wrong in ("Bearer nope", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN):
            assert httpx.get(url, headers={"Authorization": wrong}, timeout=10).status_code == 401
        allowed = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert allowed.status_code == 200 and allowed.text == "<html>what users wrote</html>"
        assert httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).status_code == 200
    finally:
        server.stop()
    assert caplog.text.count("/report from 127.0.0.1 refused") == 5
    assert caplog.text.count("/report from 127.0.0.1 allowed") == 1
    assert TOKEN not in caplog.text


def test_nothing_served_changes_state():
    server = serve("127.0.0.1")
    try:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/report", "/metrics", "/status"):
                assert httpx.request(method, server.url + path, timeout=10).status_code == 501
    finally:
        server.stop()


@pytest.mark.kafka
def test_the_daemon_warns_when_report_is_refused_beyond_loopback(daemon, caplog):
    caplog.set_level(logging.WARNING, logger="monitor.service")
    d = daemon(http={"host": "0.0.0.0", "port": 0})
    assert "/report (what users wrote) answers 403 on 0.0.0.0" in caplog.text
    assert httpx.get(f"http://127.0.0.1:{d.service.http.port}/report", timeout=10).status_code == 403


@pytest.mark.kafka
def test_the_daemon_serves_report_with_its_token(daemon, tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    d = daemon(http={"host": "0.0.0.0", "port": 0, "token_file": str(path)})
    url = f"http://127.0.0.1:{d.service.http.port}/report"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).status_code == 200
