"""Bad cases through the real daemon: two workers sharing one PostgreSQL store, personal
data that must not reach anything a person or a trainer reads, and /report in a browser."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from browser import load
from helpers import DaemonThread, make_settings, produce, read_topic, wait_for
from sqlalchemy import text
from test_report import Charted, sums

from monitor.badcases import Selection, load_cases
from monitor.simulator import Fault, TrafficSimulator
from retrain.store import SampleStore

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

START = 1_790_000_000.0


def cn_id(rng: random.Random) -> str:
    """A PRC resident identity number with a valid check character."""
    body = f"{rng.choice([110105, 310104, 440305, 510107])}{rng.randrange(1950, 2005)}" \
           f"{rng.randrange(1, 13):02d}{rng.randrange(1, 28):02d}{rng.randrange(1000):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def card(rng: random.Random) -> str:
    """A Luhn-valid bank card number, written in groups of four."""
    digits = [6, 2, 2, 2, *(rng.randrange(10) for _ in range(11))]
    total = sum(d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
    number = "".join(map(str, digits)) + str((10 - total % 10) % 10)
    return " ".join(number[i:i + 4] for i in range(0, 16, 4))


def personal_values(rng: random.Random) -> list[tuple[str, str]]:
    """(kind, value) as users write them, in Chinese and international forms."""
    return [
        ("email", f"{rng.choice(['zhang.wei', 'li_na88', 'john.doe+shop', 'wang-fang'])}{rng.randrange(100)}@"
                  f"{rng.choice(['163.com', 'qq.com', 'gmail.com', 'example.org'])}"),
        ("phone", f"1{rng.choice([3, 5, 8])}{rng.randrange(10)}{rng.randrange(10**8):08d}"),
        ("phone", f"+86 13{rng.randrange(10)}{rng.randrange(10**4):04d}{rng.randrange(10**4):04d}"),
        ("phone", f"+44 20 79{rng.randrange(10**2):02d} {rng.randrange(10**4):04d}"),
        ("phone", f"(021){rng.randrange(3, 7)}{rng.randrange(10**7):07d}"),
        ("phone", f"010-{rng.randrange(5, 9)}{rng.randrange(10**7):07d}"),
        ("phone", f"86139{rng.randrange(10**8):08d}"),
        ("cn_id", cn_id(rng)),
        ("bank_card", card(rng)),
        ("ipv4", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"),
    ]


TEMPLATES = ("请联系我 {v}，推荐的内容和我无关", "wrong answer again, reach me at {v}",
             "我的信息 {v} 被显示出来了，太慢了", "charged twice, {v}", "答非所问 {v}")


def stream(rng: random.Random) -> tuple[list[dict | bytes], list[dict], list[str]]:
    """Simulated traffic, plus thumbs-downs and complaints that carry personal data in their
    comment, and predictions that carry it in a free-text feature."""
    sim = TrafficSimulator(seed=11, start_ts=START, bad_input_rate=0.0,
                           faults=[Fault("latency_regression", "fraud", 10.0)])
    events: list[dict | bytes] = []
    for _ in range(25):
        events.extend(sim.advance(1.0, 120))
    secrets: list[str] = []
    predictions = [e for e in events if isinstance(e, dict) and e["type"] == "prediction"]
    extra: list[dict] = []
    for i, prediction in enumerate(rng.sample(predictions, 120)):
        _, value = rng.choice(personal_values(rng))
        secrets.append(value)
        if i % 3 == 0:
            prediction["features"]["query"] = f"find orders of {value}"
        extra.append({"event_id": f"pii-{i}", "type": "feedback", "ts": prediction["ts"] + 2.0,
                      "model": prediction["model"], "request_id": prediction["request_id"],
                      "kind": "complaint" if i % 4 == 0 else "thumbs_down",
                      "comment": rng.choice(TEMPLATES).format(v=value), "reason": None})
    tracking = [e for e in events if isinstance(e, bytes) or e["type"] != "feedback"]
    feedback = [e for e in events if isinstance(e, dict) and e["type"] == "feedback"] + extra
    return tracking, feedback, secrets


def leaks(blob: str, secrets: list[str]) -> list[str]:
    """The personal values found in ``blob`` (also with their spaces taken out)."""
    squeezed = blob.replace(" ", "")
    return [s for s in secrets if s in blob or s.replace(" ", "") in squeezed]


def monitor(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_daemons_on_one_postgresql_store_keep_one_redacted_bad_case_per_feedback(broker, pg_url, tmp_path: Path):
    rng = random.Random(3)
    tracking, feedback, secrets = stream(rng)
    settings = make_settings(broker, tmp_path, store={"url": pg_url},
                             kafka={"topic_partitions": 4},
                             detect={"reference_size": 300, "window_size": 200, "check_every": 50},
                             datasets={"dir": str(tmp_path / "datasets")})
    first = DaemonThread(settings).start()
    second = DaemonThread(settings).start()
    try:
        produce(broker, settings.topics.tracking, tracking)
        produce(broker, settings.topics.feedback, feedback)
        total = len(tracking) + len(feedback)
        wait_for(lambda: first.service.committed + second.service.committed >= total, 90,
                 f"{total} messages committed by the two workers")
        assert first.service.committed > 0 and second.service.committed > 0, "both workers took part"
        negative = {e["event_id"] for e in feedback if e["kind"] in ("thumbs_down", "complaint", "correction")}
        store = SampleStore(pg_url)
        wait_for(lambda: negative <= {c.event_id for c in load_cases(store, settings, Selection())}, 30,
                 "every negative feedback event stored as a bad case")

        # The page the daemon serves holds the numbers the store holds.
        cases = load_cases(store, settings, Selection())
        loaded = load(first.url + "/report")
        parsed = Charted()
        parsed.feed(loaded.dom)
        assert sums(parsed.chart("categories"), "data-category") == Counter((c.category,) for c in cases)
        assert loaded.ink_share() > 0.05
        assert not leaks(loaded.dom, secrets)
    finally:
        first.stop()
        second.stop()

    cases = load_cases(store, settings, Selection())
    ids = [c.event_id for c in cases]
    assert len(ids) == len(set(ids)), "one bad case per feedback event, though two daemons stored them"
    assert negative <= set(ids)
    assert {"slow", "irrelevant", "wrong_answer"} <= {c.category for c in cases}

    # Nothing a person or a trainer reads holds the personal data.
    with store.engine.connect() as db:
        # Each row whole, as JSON (a Row's repr cuts long values short).
        dump = "\n".join(orjson.dumps(dict(row._mapping), default=str).decode()
                         for table in ("mm_flagged_samples", "mm_traffic", "mm_alerts", "mm_datasets")
                         for row in db.execute(text(f"select * from {table}")))  # our own table names
    store.close()
    assert {p for p in ("[EMAIL]", "[PHONE]", "[CN_ID]", "[BANK_CARD]", "[IPV4]") if p not in dump} == set()
    assert not leaks(dump, secrets)
    url = ["--store", pg_url]
    for fmt in ("table", "jsonl", "csv", "markdown"):
        assert not leaks(monitor("badcases", *url, "--format", fmt), secrets), fmt
    report, markdown = tmp_path / "r.html", tmp_path / "r.md"
    monitor("report", *url, "--out", str(report), "--markdown", str(markdown))
    assert not leaks(report.read_text() + markdown.read_text(), secrets)
    for fmt in ("jsonl", "parquet"):
        folder = Path(monitor("dataset", "build", "--model", "recsys", *url, "--out", str(tmp_path / "ds"),
                              "--format", fmt, "--include-used").strip())
        files = "".join(json.dumps(pq.read_table(p).to_pylist(), ensure_ascii=False) if p.suffix == ".parquet"
                        else p.read_text() for p in folder.iterdir())
        assert "[EMAIL]" in files or "[PHONE]" in files
        assert not leaks(files, secrets), fmt
    queued = read_topic(broker, settings.topics.retrain, expect=len(negative))
    body = "\n".join(orjson.loads(r.value).__repr__() for r in queued)
    assert len({orjson.loads(r.value)["event_id"] for r in queued}) >= len(negative)
    assert not leaks(body, secrets)
