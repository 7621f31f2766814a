"""The `monitor` command as a user runs it: a real process, real files, the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import read_topic

from monitor.broker import free_port
from monitor.simulator import Fault, TrafficSimulator
from retrain.store import SampleStore

START = 1_790_000_000.0


def monitor(*args: str, timeout: float = 120, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, timeout=timeout,
                          input=stdin, env={**clean, **(env or {})}, check=False)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    sim = TrafficSimulator(seed=2, start_ts=START, faults=[Fault("feature_drift", "recsys", 40.0, feature="price"),
                                                          Fault("latency_regression", "fraud", 50.0)])
    lines = [e if isinstance(e, bytes) else orjson.dumps(e) for _ in range(70) for e in sim.advance(1.0, 300)]
    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("command", ["demo", "run", "replay", "produce", "config"])
def test_every_command_has_help(command):
    result = monitor(command, "--help")
    assert result.returncode == 0
    assert b"usage: monitor " + command.encode() in result.stdout


def test_no_command_prints_help_and_fails():
    result = monitor()
    assert result.returncode == 2
    assert b"monitor demo" in result.stdout


def test_replay_writes_contract_alerts_with_line_indexes(events_file, tmp_path):
    out, db = tmp_path / "alerts.jsonl", tmp_path / "replay.db"
    result = monitor("replay", str(events_file), "--alerts-out", str(out), "--store", f"sqlite:///{db}",
                     "--metrics-out", str(tmp_path / "metrics.prom"))
    assert result.returncode == 0, result.stderr.decode()
    alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {a["kind"] for a in alerts} >= {"data_drift", "slo_burn"}
    lines = events_file.read_bytes().splitlines()
    for alert in alerts:
        assert orjson.loads(lines[alert["at_event"]])["event_id"] == alert["event_id"]
    assert b"alerts:" in result.stderr
    assert b"bad input by reason" in result.stderr
    store = SampleStore(f"sqlite:///{db}")
    try:
        assert store.counts()["alerts"] == len(alerts)
        assert store.counts()["samples"] > 0
    finally:
        store.close()
    assert b"model_monitor_alerts_total" in (tmp_path / "metrics.prom").read_bytes()


def test_replay_reads_stdin_and_batches_do_not_change_alerts(events_file):
    a = monitor("replay", "-", "--batch-size", "333", stdin=events_file.read_bytes())
    b = monitor("replay", str(events_file), "--batch-size", "50000")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
    assert a.stdout.count(b"\n") >= 2


@pytest.mark.parametrize("command", ["replay", "baseline", "produce"])
def test_a_missing_input_file_is_a_clear_error_not_a_configuration_error(tmp_path, command):
    missing = tmp_path / "nope.jsonl"
    extra = {"replay": ["--store", f"sqlite:///{tmp_path / 'x.db'}"],
             "baseline": ["--store", f"sqlite:///{tmp_path / 'x.db'}"],
             # Nothing listens there: the file is looked at before the broker is waited for.
             "produce": ["--topic", "t", "--bootstrap-servers", f"127.0.0.1:{free_port()}"]}[command]
    result = monitor(command, str(missing), *extra, timeout=30)
    assert result.returncode == 2, result.stderr.decode()
    assert result.stderr.decode() == f"monitor: cannot read {missing}: No such file or directory\n"
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("option", ["--alerts-out", "--metrics-out"])
def test_replay_checks_its_outputs_before_any_work(events_file, tmp_path, option):
    db = tmp_path / "replay.db"
    result = monitor("replay", str(events_file), option, str(tmp_path / "missing" / "out"), "--store",
                     f"sqlite:///{db}")
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert f"{option} {tmp_path / 'missing' / 'out'}: the folder {tmp_path / 'missing'} does not exist".encode() \
        in result.stderr
    assert not db.exists(), "nothing may be done before the outputs are known to be writable"


@pytest.mark.parametrize("args", [("config", "--markdown"), ("config", "--defaults"), ("replay", "EVENTS"),
                                  ("--help",)])
def test_a_reader_that_goes_away_ends_the_command_quietly(events_file, args):
    """`monitor config --markdown | head -3`: no traceback when the pipe closes."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    argv = [str(events_file) if a == "EVENTS" else a for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "monitor", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == (0 if args == ("--help",) else 141)  # argparse ignores the error itself
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr and b"Exception ignored" not in stderr


@pytest.mark.parametrize(("text", "message"), [
    ('[retrain]\ntrigger_cron = "not a cron"', b"retrain.trigger_cron 'not a cron' is not a crontab expression"),
    ("[collect]\nmax_future_skew_s = nan", b"collect.max_future_skew_s must be a finite number"),
    ('[retrain]\nwebhook_url = "ftp:/x"', b"retrain.webhook_url 'ftp:/x' must be an http:// or https:// URL"),
    ('[http]\nhost = "999.1.1.1"', b"http.host '999.1.1.1' is neither an IP address nor a host name"),
])
def test_config_check_rejects_what_run_rejects(tmp_path, text, message):
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    for command in (("config", "--check"), ("run",)):
        result = monitor(*command, "-c", str(path), timeout=30)
        assert result.returncode == 2, result.stderr.decode()
        assert message in result.stderr and b"Traceback" not in result.stderr


def test_produce_to_an_unreachable_broker_says_so_once_and_closes_cleanly(events_file):
    bootstrap = f"127.0.0.1:{free_port()}"
    result = monitor("produce", str(events_file), "--topic", "t", "--bootstrap-servers", bootstrap,
                     env={"MONITOR_KAFKA_CONNECT_TIMEOUT_S": "2"}, timeout=60)
    assert result.returncode == 3
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"monitor: could not connect the producer to Kafka at {bootstrap} within 2s "
                               "(kafka.connect_timeout_s)")


def test_config_prints_checks_and_names_bad_keys(tmp_path):
    defaults = monitor("config", "--defaults")
    assert defaults.returncode == 0
    path = tmp_path / "monitor.toml"
    path.write_bytes(defaults.stdout)
    assert monitor("config", "--check", "-c", str(path)).stdout == b""
    env = monitor("config", "-c", str(path), env={"MONITOR_KAFKA_GROUP_ID": "from-env"})
    assert b'group_id = "from-env"' in env.stdout
    path.write_text("[store]\nulr = 'sqlite://'\n")
    bad = monitor("config", "--check", "-c", str(path))
    assert bad.returncode == 2
    assert b"unknown key store.ulr (did you mean store.url?)" in bad.stderr


def test_run_with_an_unreachable_broker_exits_3_after_the_bounded_wait(tmp_path):
    port = free_port()
    path = tmp_path / "monitor.toml"
    path.write_text(f'[kafka]\nbootstrap_servers = "127.0.0.1:{port}"\nconnect_timeout_s = 2\n'
                    f'[store]\nurl = "sqlite:///{tmp_path / "x.db"}"\n[http]\nport = 0\n')
    started = time.monotonic()
    result = monitor("run", "-c", str(path), timeout=60)
    assert result.returncode == 3, result.stderr.decode()
    assert time.monotonic() - started < 30
    assert b"kafka.bootstrap_servers" in result.stderr


def test_run_with_a_bad_config_exits_2(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text("[kafka]\nmax_batch_records = -1\n")
    result = monitor("run", "-c", str(path))
    assert result.returncode == 2
    assert b"kafka.max_batch_records must be >= 1" in result.stderr


@pytest.mark.kafka
def test_produce_sends_every_line_keyed_by_request_id(broker, events_file):
    topic = f"produce-{os.getpid()}-{time.monotonic_ns()}"
    result = monitor("produce", str(events_file), "--topic", topic, "--bootstrap-servers", broker,
                     "--create-partitions", "3")
    assert result.returncode == 0, result.stderr.decode()
    lines = [line for line in events_file.read_bytes().splitlines() if line]
    assert f"sent {len(lines):,} messages".encode() in result.stderr
    records = read_topic(broker, topic, len(lines))
    assert sorted(r.value for r in records) == sorted(lines)
    for record in records[:200]:
        try:
            event = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            assert record.key is None
            continue
        if isinstance(event, dict) and event.get("request_id"):
            assert record.key == event["request_id"].encode()
