"""Arrow IPC batches beside JSON: the encoding, the pipeline's rows, replay, convert, the daemon."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from helpers import make_settings, read_topic, wait_for

from collectors.arrow import (
    ARROW,
    MAX_ROWS,
    EventBatcher,
    decode_stream,
    encode_batch,
    encode_events,
    encoding_of,
)
from collectors.contract import RawMessage
from collectors.decode import Limits
from collectors.kafka import dead_letter_record
from monitor.config import load_settings
from monitor.convert import convert
from monitor.metrics import Metrics
from monitor.pipeline import Pipeline
from monitor.produce import ArrowProducer
from monitor.replay import replay
from monitor.simulator import Fault, TrafficSimulator
from retrain.store import SampleStore

START = 1_790_000_000.0
NOW = START + 10**6


def simulate(seconds: int, rate: float, faults=(), seed: int = 1, bad: float = 0.002) -> list:
    sim = TrafficSimulator(seed=seed, start_ts=START, faults=list(faults), bad_input_rate=bad)
    return [e for _ in range(seconds) for e in sim.advance(1.0, rate)]


def objects(events: list) -> list[dict]:
    """The events that can be rows: dicts, and the bad lines that are JSON objects (they stay bad)."""
    out = []
    for item in events:
        e = item
        if isinstance(item, bytes):
            try:
                e = orjson.loads(item)
            except orjson.JSONDecodeError:
                continue
        if isinstance(e, dict):
            out.append(e)
    return out


FAULTS = [Fault("feature_drift", "recsys", 20.0, feature="price"), Fault("latency_regression", "fraud", 30.0),
          Fault("feedback_spike", "search", 40.0), Fault("quality_decay", "fraud", 50.0),
          Fault("segment_spike", "recsys", 25.0)]
DETECT = {"feedback_burn_in_s": 10.0}


@pytest.fixture(scope="module")
def stream() -> list[dict]:
    return objects(simulate(75, 400, FAULTS))


def pipeline() -> Pipeline:
    settings = load_settings(environ={}, overrides={"detect": DETECT})
    return Pipeline(settings, Metrics("test"), clock=lambda: NOW)


def json_messages(events: list[dict]) -> list[RawMessage]:
    return [RawMessage("t", 0, i, None, orjson.dumps(e)) for i, e in enumerate(events)]


def arrow_messages(events: list[dict], rows: int) -> list[RawMessage]:
    return [RawMessage("t", 0, i, None, encode_events(events[i:i + rows]), 0, ARROW)
            for i in range(0, len(events), rows)]


def alert_rows(alerts) -> list[tuple]:
    return [(a.kind, a.model, a.model_version, a.feature, a.detector, a.score, a.at_event, a.ts, a.event_id,
             tuple(sorted((a.segment or {}).items())), a.baseline_version) for a in alerts]


# -- the encoding ---------------------------------------------------------------------------------

def test_events_come_back_equal_floats_nulls_features_bool_segments_mixed_types():
    events = [
        {"event_id": "e-1", "type": "prediction", "ts": 1763800000.125, "model": "recsys", "model_version": "v1",
         "request_id": "r-1", "features": {"price": 12.5, "category": "shoes", "coupon": None, "n": 3},
         "prediction": {"score": 0.83, "label": True}, "latency_ms": 42.0, "status": "ok",
         "segment": {"region": "east", "new_user": True}},
        {"event_id": "e-2", "type": "prediction", "ts": "2025-11-22T08:00:00Z", "model": "fraud",
         "features": {"amount": 7, "country": "DE"}, "segment": {"new_user": False}},
        {"event_id": "f-1", "type": "feedback", "ts": 1763800005, "model": "recsys", "request_id": "r-1",
         "kind": "correction", "value": {"label": "boots"}, "comment": None},
        {"event_id": "f-2", "type": "feedback", "ts": 1763800006.0, "model": "recsys", "request_id": "r-1",
         "kind": "label", "value": True, "extra": [1, 2]},
    ]
    rows, reason, detail = decode_stream(encode_events(events), Limits())
    assert reason is None, detail
    assert rows == events


def test_map_columns_and_timestamp_columns_from_another_producer_are_read():
    batch = pa.RecordBatch.from_pydict({
        "event_id": ["e-1", "e-2"], "type": ["prediction", "prediction"],
        "ts": pa.array([1_763_800_000_000, 1_763_800_001_500], type=pa.timestamp("ms", tz="UTC")),
        "model": ["m", "m"],
        "features": pa.array([[("a", 1.0), ("b", None)], [("a", 2.0)]], type=pa.map_(pa.string(), pa.float64())),
    })
    rows, reason, _ = decode_stream(encode_batch(batch), Limits())
    assert reason is None
    assert rows == [{"event_id": "e-1", "type": "prediction", "ts": 1763800000.0, "model": "m",
                     "features": {"a": 1.0, "b": None}},
                    {"event_id": "e-2", "type": "prediction", "ts": 1763800001.5, "model": "m",
                     "features": {"a": 2.0}}]


@pytest.mark.parametrize(("value", "limits", "reason"), [
    (b"\xff\xff\xff\xffgarbage that is not an arrow stream", Limits(), "not_arrow"),
    (b'{"event_id": "e-1"}', Limits(), "not_arrow"),
    (b"", Limits(), "empty"),
    (encode_events([{"event_id": f"e-{i}", "type": "click", "ts": START, "model": "m"} for i in range(300)]),
     Limits(max_message_bytes=1000), "oversized"),
    (encode_batch(pa.RecordBatch.from_pydict({"event_id": ["e"], "blob": pa.array([b"x"], pa.binary())})),
     Limits(), "wrong_type"),
])
def test_a_message_that_cannot_be_rows_is_bad_whole(value, limits, reason):
    rows, got, detail = decode_stream(value, limits)
    assert rows is None and got == reason, detail


def test_more_rows_than_the_bound_is_too_large():
    events = [{"event_id": f"e-{i}", "type": "click", "ts": START, "model": "m"} for i in range(MAX_ROWS + 1)]
    rows, reason, detail = decode_stream(encode_events(events), Limits(max_message_bytes=10**8))
    assert (rows, reason) == (None, "too_large"), detail


def test_the_header_tells_arrow_from_json():
    assert encoding_of([("Content-Type", b"application/vnd.apache.arrow.stream; charset=binary")]) == ARROW
    assert encoding_of([("content-type", b"application/json")]) == "json"


def test_the_batcher_flushes_on_rows_age_and_size():
    now = [0.0]
    event = {"event_id": "e", "type": "click", "ts": START, "model": "m", "request_id": "r" * 50}
    limit = len(encode_events([event] * 10)) - 1
    batcher = EventBatcher(max_rows=10, max_age_s=1.0, max_bytes=limit, clock=lambda: now[0])
    assert batcher.add(event) == []
    assert batcher.poll() == []
    now[0] = 1.5
    assert len(batcher.poll()) == 1 and len(batcher) == 0
    out = [m for _ in range(10) for m in batcher.add(event)]
    assert len(out) >= 2, "10 rows over max_bytes go in halves"
    assert all(len(m) <= limit for m in out)
    assert sum(len(decode_stream(m, Limits())[0] or []) for m in out) == 10


# -- the pipeline -------------------------------------------------------------------------------------

def test_arrow_batches_give_the_alerts_json_gives_and_positions_count_rows(stream):
    a, b = pipeline(), pipeline()
    json_alerts, arrow_alerts, dead_json, dead_arrow = [], [], [], []
    msgs = json_messages(stream)
    for i in range(0, len(msgs), 2000):
        result = a.process(msgs[i:i + 2000])
        json_alerts += result.alerts
        dead_json += [d.reason for d in result.dead_letters]
    arrow = arrow_messages(stream, 500)
    for i in range(0, len(arrow), 4):
        result = b.process(arrow[i:i + 4])
        assert result.rows == sum(len(decode_stream(m.value, Limits())[0] or []) for m in arrow[i:i + 4])
        arrow_alerts += result.alerts
        dead_arrow += [d.reason for d in result.dead_letters]
    assert a.position == b.position == len(stream)
    assert {x.kind for x in json_alerts} >= {"data_drift", "slo_burn", "feedback_spike", "metric_decay"}
    assert alert_rows(arrow_alerts) == alert_rows(json_alerts)
    assert dead_arrow == dead_json and dead_json, "the bad objects of the stream are bad rows too"
    assert a.metrics.total("model_monitor_events_total") == b.metrics.total("model_monitor_events_total")
    assert a.joiner.counts == b.joiner.counts


def test_a_bad_row_is_dead_lettered_alone_with_its_source_and_the_others_are_processed():
    good = [{"event_id": f"e-{i}", "type": "prediction", "ts": START + i, "model": "m", "request_id": f"r-{i}",
             "latency_ms": 10.0} for i in range(5)]
    bad = dict(good[2], latency_ms=-1.0, event_id="e-bad")
    rows = [*good[:2], bad, *good[2:]]
    p = pipeline()
    first = RawMessage("t", 0, 0, None, orjson.dumps(good[0]))
    garbage = RawMessage("t", 3, 41, b"k", b"\xff\xff\xff\xff not arrow", 0, ARROW)
    result = p.process([first, RawMessage("t", 3, 42, b"k", encode_events(rows), 0, ARROW), garbage])
    assert result.rows == 1 + len(rows) + 1 and p.position == 8
    assert result.events == 1 + len(good)
    assert [(d.reason, d.message.row) for d in result.dead_letters] == [("bad_value", 2), ("not_arrow", -1)]
    assert p.metrics.total("model_monitor_events_total", model="m") == 1 + len(good)
    _, value, headers = dead_letter_record(result.dead_letters[0])
    assert orjson.loads(value or b"") == bad
    found = dict(headers)
    assert (found["monitor.reason"], found["monitor.source.partition"], found["monitor.source.offset"],
            found["monitor.source.row"]) == (b"bad_value", b"3", b"42", b"2")
    _, value, headers = dead_letter_record(result.dead_letters[1])
    assert value == garbage.value and dict(headers)["content-type"] == b"application/vnd.apache.arrow.stream"


def test_a_nan_cell_is_a_bad_row():
    rows = [{"event_id": "e-1", "type": "prediction", "ts": START, "model": "m", "features": {"x": float("nan")}},
            {"event_id": "e-2", "type": "prediction", "ts": START, "model": "m", "features": {"x": 1.0}}]
    result = pipeline().process([RawMessage("t", 0, 0, None, encode_events(rows), 0, ARROW)])
    assert [d.reason for d in result.dead_letters] == ["non_finite_number"] and result.events == 1


def test_feedback_joins_a_prediction_sent_in_an_arrow_batch():
    pred = {"event_id": "e-1", "type": "prediction", "ts": START, "model": "m", "request_id": "r-1",
            "prediction": {"score": 0.9}}
    fb = {"event_id": "f-1", "type": "feedback", "ts": START + 1, "model": "m", "request_id": "r-1",
          "kind": "thumbs_down", "comment": "mail me at a@example.com"}
    p = pipeline()
    p.process([RawMessage("t", 0, 0, None, encode_events([pred]), 0, ARROW)])
    result = p.process([RawMessage("t", 0, 1, None, encode_events([fb]), 0, ARROW)])
    assert p.joiner.counts["matched"] == 1
    assert [s.payload["joined"] for s in result.samples] == [True]


# -- replay, convert ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory, stream) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("arrow")
    jsonl, arrow = folder / "events.jsonl", folder / "events.arrow"
    jsonl.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in stream))
    summary = convert(str(jsonl), str(arrow), progress=None)
    assert summary.events == len(stream) and not summary.skipped
    return jsonl, arrow


def test_replay_of_the_jsonl_and_the_arrow_file_gives_identical_alerts(files):
    settings = load_settings(environ={}, overrides={"detect": DETECT})
    outs = []
    for path in files:
        out = io.BytesIO()
        summary = replay(str(path), settings, out, batch_size=3000, progress=None)
        assert summary.lines == summary.events + sum(summary.dead_letters.values())
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
    kinds = {orjson.loads(line)["kind"] for line in outs[0].splitlines()}
    assert kinds >= {"data_drift", "slo_burn", "feedback_spike", "metric_decay"}


def test_convert_round_trip_and_skipped_lines(tmp_path, files):
    jsonl, arrow = files
    back = tmp_path / "back.jsonl"
    convert(str(arrow), str(back), progress=None)
    assert [orjson.loads(line) for line in back.read_bytes().splitlines()] == \
           [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]
    messy = tmp_path / "messy.jsonl"
    messy.write_bytes(b'{"event_id": "e", "type": "click", "ts": 1.0, "model": "m"}\nnot json\n[1]\n\n')
    summary = convert(str(messy), str(tmp_path / "messy.arrow"), progress=None)
    assert summary.events == 1 and summary.skipped == {"not JSON": 1, "not a JSON object": 1, "blank": 1}


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize(("make", "message"), [
    (lambda t: ("convert", str(t / "a.txt"), str(t / "b.arrow")), "the extension must be .jsonl"),
    (lambda t: ("convert", str(t / "missing.jsonl"), str(t / "b.arrow")), "cannot read"),
    (lambda t: ("convert", str(t / "ok.jsonl"), str(t / "nope" / "b.arrow")), "does not exist"),
    (lambda t: ("convert", str(t / "ok.jsonl"), str(t / "b.jsonl")), "both .jsonl"),
    (lambda t: ("convert", str(t / "fake.arrow"), str(t / "b.jsonl")), "is not an Arrow IPC stream file"),
    (lambda t: ("replay", str(t / "fake.arrow")), "is not an Arrow IPC stream file"),
])
def test_convert_and_replay_say_what_is_wrong_without_a_traceback(tmp_path, make, message):
    (tmp_path / "ok.jsonl").write_bytes(b'{"event_id": "e"}\n')
    (tmp_path / "fake.arrow").write_bytes(b"this is not arrow")
    result = cli(*make(tmp_path))
    assert result.returncode == 2, result.stderr.decode()
    assert message.encode() in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "b.arrow").exists() and not (tmp_path / "b.jsonl").exists()


def test_the_cli_converts_and_says_what_it_skipped(tmp_path, files):
    jsonl, _ = files
    messy = tmp_path / "in.jsonl"
    messy.write_bytes(jsonl.read_bytes()[:20000].rsplit(b"\n", 1)[0] + b"\nnot json\n")
    result = cli("convert", str(messy), str(tmp_path / "out.arrow"))
    assert result.returncode == 0, result.stderr.decode()
    assert b"skipped 1 lines that cannot be Arrow rows (not JSON 1)" in result.stderr


# -- the daemon --------------------------------------------------------------------------------------

@pytest.mark.kafka
def test_the_daemon_on_arrow_batches_from_the_helper_raises_replays_alerts(broker, daemon, tmp_path: Path):
    """One partition: the daemon reading the helper's Arrow messages raises the alerts replay
    raises on the JSON file of the same events; a garbage message with the header is dead-lettered whole."""
    faults = [Fault("feature_drift", "recsys", 15.0, feature="price"), Fault("latency_regression", "fraud", 20.0),
              Fault("segment_spike", "recsys", 20.0)]
    events = objects(simulate(45, 200, faults, seed=4))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    settings = make_settings(broker, tmp_path, kafka={"topic_partitions": 1},
                             detect={"reference_size": 300, "window_size": 200, "check_every": 50,
                                     "rate_warmup": 300, "feedback_burn_in_s": 5.0})
    out = io.BytesIO()
    replay(str(path), settings, out, batch_size=777, progress=None)
    expected = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert {a["kind"] for a in expected} >= {"data_drift", "slo_burn"}

    d = daemon(settings)

    async def send() -> int:
        producer = ArrowProducer(broker, settings.topics.tracking, max_rows=700, max_age_s=0.5)
        await producer.start(10)
        for event in events:
            await producer.send(event)
        await producer.flush()
        await producer.sink.send_partitioned(settings.topics.tracking,
                                             [(0, None, b"\xff\xff\xff\xffnot arrow", [("content-type",
                                               b"application/vnd.apache.arrow.stream")])])
        messages = producer.messages + 1
        await producer.stop()
        return messages

    messages = asyncio.run(send())
    assert messages > 2
    wait_for(lambda: d.service.committed >= messages, 60, "all messages committed")
    store = SampleStore(settings.store.url)
    try:
        got = store.alerts()
    finally:
        store.close()
    fields = ("kind", "model", "model_version", "feature", "detector", "score", "threshold", "at_event", "ts",
              "event_id", "segment", "baseline_version")
    assert [tuple(a[f] for f in fields) for a in got] == [tuple(a[f] for f in fields) for a in expected]
    bad_rows = sum(1 for e in events if not (isinstance(e.get("model"), str) and e.get("type") != "teleport"))
    letters = read_topic(broker, settings.topics.deadletter, bad_rows + 1)
    reasons = sorted(dict(r.headers)["monitor.reason"].decode() for r in letters)
    assert "not_arrow" in reasons and len(letters) == bad_rows + 1


@pytest.mark.kafka
def test_monitor_produce_encoding_arrow_sends_batches_of_batch_rows(broker, files, tmp_path):
    jsonl, _ = files
    small = tmp_path / "small.jsonl"
    lines = jsonl.read_bytes().splitlines()[:1000]
    small.write_bytes(b"\n".join(lines) + b"\nnot json\n")
    topic = f"arrow-{tmp_path.name}"
    result = cli("produce", str(small), "--topic", topic, "--bootstrap-servers", broker, "--create-partitions", "1",
                 "--encoding", "arrow", "--batch-rows", "300")
    assert result.returncode == 0, result.stderr.decode()
    assert b"sent 1,000 events in Arrow batches" in result.stderr and b"not JSON 1" in result.stderr
    records = read_topic(broker, topic, 4)
    assert len(records) == 4
    assert all(dict(r.headers)["content-type"] == b"application/vnd.apache.arrow.stream" for r in records)
    rows = [row for r in records for row in decode_stream(r.value, Limits())[0] or []]
    assert rows == [orjson.loads(line) for line in lines]
