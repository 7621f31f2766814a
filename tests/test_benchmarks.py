"""The detection benchmark's rules and its command: scores that mean what RESULTS.md says."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import pytest

from benchmarks.detection.score import score_stream, summarise
from benchmarks.detection.streams import CHANGE_AT, catalog


def stream(change_at, kinds=("data_drift",), features=("x",), events=1000, name="s"):
    return SimpleNamespace(name=name, family="feature", change_at=change_at, expect_kinds=frozenset(kinds),
                           expect_features=frozenset(features), events=[{}] * events)


def test_the_first_alert_of_an_expected_kind_after_the_change_is_the_detection():
    alerts = [(100, "data_drift", "x", "ks"), (600, "slo_burn", None, "b"), (650, "data_drift", "y", "ks"),
              (700, "data_drift", "x", "ks")]
    score = score_stream(stream(500), alerts, 1.0)
    assert (score.detected, score.delay, score.false_alarms, score.h0_events) == (True, 150, 1, 500)
    assert (score.correct_alerts, score.attributed) == (2, 1)


def test_alerts_on_a_stream_without_change_are_all_false_alarms():
    score = score_stream(stream(None), [(10, "data_drift", "x", "ks"), (900, "slo_burn", None, "b")], 0.0)
    assert (score.detected, score.false_alarms, score.h0_events) == (False, 2, 1000)


def test_a_pseudo_detector_counts_as_any_kind_and_the_summary_follows_the_definitions():
    scores = [score_stream(stream(500, name="a"), [(400, "*", None, "p"), (800, "*", None, "p")], 0.0),
              score_stream(stream(None, name="b"), [(300, "*", None, "p")], 0.0),
              score_stream(stream(500, name="c"), [], 0.0)]
    s = summarise("p", scores, {"a": True, "c": True})
    assert (s.changed, s.detected, s.false_alarms, s.h0_events) == (2, 1, 2, 2000)
    assert s.fa_per_million == 1000
    assert (s.mtfa, s.mtd, s.missed_rate) == (1000, 300, 0.5)
    assert s.mtr == pytest.approx(1000 / 300 * 0.5)
    assert math.isinf(summarise("q", [scores[2]], {}).mtfa)


def test_the_catalogue_has_the_streams_the_issue_asks_for():
    names = [n for n, _ in catalog()]
    steady = [n for n in names if n.startswith("steady")]
    assert len(names) - len(steady) >= 40
    assert len(steady) >= 10
    for family in ("sea", "agrawal", "hyperplane", "friedman", "stagger", "rbf"):
        assert any(n.startswith(family) for n in names), family


def test_a_stream_marks_its_change_where_it_begins():
    s = dict(catalog())["mean_shift_1sd"]()
    predictions = [e for e in s.events[: s.change_at] if e["type"] == "prediction"]
    assert len(predictions) == CHANGE_AT
    assert s.events[s.change_at]["type"] == "prediction"


@pytest.mark.slow
def test_the_benchmark_command_runs_and_reports():
    result = subprocess.run([sys.executable, "-m", "benchmarks.detection",
                             "--detectors", "ours,ours_sample_0.5,periodic",
                             "--streams", "mean_shift_1sd,steady_normal", "--no-write", "--jobs", "2"],
                            capture_output=True, timeout=300, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "| ours | 1/1 |" in out
    assert "| periodic | 1/1 |" in out
    assert "| ours_sample_0.5 | 1/1 |" in out
    assert "Every injected change detected: met" in out


def test_the_throughput_workload_is_valid_events_with_the_shares_the_issue_names():
    from benchmarks.throughput.workload import MODELS, events  # noqa: PLC0415
    from collectors.decode import Decoder, Limits  # noqa: PLC0415

    decoder = Decoder(Limits())
    decoded = [decoder.decode(line, now=2e9) for line in events(5000, seed=3)]
    assert all(reason is None for _, reason, _ in decoded)
    predictions = [e for e, _, _ in decoded if e["type"] == "prediction"]
    assert 0.01 < 1 - len(predictions) / len(decoded) < 0.03  # 2% feedback
    assert {e["model"] for e in predictions} == set(MODELS)
    assert all(len(e["features"]) == 12 for e in predictions)


def test_drift_every_shifts_x0_on_and_off():
    import orjson  # noqa: PLC0415

    from benchmarks.throughput.workload import events  # noqa: PLC0415

    rows = [orjson.loads(line) for line in events(4000, seed=1, drift_every=1000)]

    def mean_x0(lo: int, hi: int) -> float:
        xs = [r["features"]["x0"] for r in rows[lo:hi] if r["type"] == "prediction"]
        return sum(xs) / len(xs)

    assert abs(mean_x0(0, 1000)) < 0.15 and abs(mean_x0(2000, 3000)) < 0.15
    assert 0.85 < mean_x0(1000, 2000) < 1.15 and 0.85 < mean_x0(3000, 4000) < 1.15


@pytest.mark.slow
@pytest.mark.kafka
def test_the_throughput_benchmark_runs_end_to_end():
    out = subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--events", "20000", "--skip",
                          "faust,two,evidently,memory,latency", "--no-write"], check=False, capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("bare aiokafka", "bare kafka-python", "monitor run, 1 worker", "monitor replay (no Kafka)"):
        assert f"| {name} | 20,000 |" in out.stdout
    assert "| decode |" in out.stdout


def test_the_budget_benchmark_prints_the_floors_and_the_stages():
    out = subprocess.run([sys.executable, "-m", "benchmarks.throughput.budget", "--events", "6000", "--rounds", "1"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for row in ("| orjson.loads |", "| the contract in C (msgspec) |", "| the detectors, fed columns |",
                "| **floors: the contract in C, a dict, the detectors** |", "| Pipeline.process: detect |",
                "| **Pipeline.process, all of it** |"):
        assert row in out.stdout, out.stdout


def test_pipeline_cpu_runs_each_settings_variant_and_refuses_a_bad_one():
    command = [sys.executable, "-m", "benchmarks.throughput.pipeline_cpu", "--events", "3000", "--numeric", "3"]
    out = subprocess.run([*command, "--set", "detect.sample_rate=1", "--set", "detect.sample_rate=0.25"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout
    assert "3 numeric features, detect.sample_rate=1: " in lines[0]
    assert "3 numeric features, detect.sample_rate=0.25: " in lines[1]
    assert all("us of CPU per event (decode" in line for line in lines)
    bad = subprocess.run([*command, "--set", "detect.sample_rate=0"], check=False, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2
    assert "detect.sample_rate must be >= 0.001" in bad.stderr


def test_a_settings_variant_becomes_the_daemons_environment():
    from benchmarks.throughput import variants  # noqa: PLC0415

    assert variants.environ("detect.sample_rate=0.25,kafka.max_batch_records=1000") == {
        "MONITOR_DETECT_SAMPLE_RATE": "0.25", "MONITOR_KAFKA_MAX_BATCH_RECORDS": "1000"}
    assert variants.environ("") == {}
    for bad, message in (("detect.sample_rate", "SECTION.KEY=VALUE"), ("detect.nope=1", "unknown key detect.nope")):
        with pytest.raises(ValueError, match=message):
            variants.environ(bad)


def test_the_pii_corpus_marks_its_values_and_is_seeded():
    from benchmarks.pii.corpus import KINDS, LOOKALIKES, corpus  # noqa: PLC0415

    texts = corpus(600, seed=5)
    assert corpus(600, seed=5) == texts
    assert corpus(600, seed=6) != texts
    for t in texts:
        for span in (*t.values, *t.lookalikes):
            assert t.text[span.start:span.end] == span.value
    assert {v.kind for t in texts for v in t.values} == set(KINDS)
    assert {lk.kind for t in texts for lk in t.lookalikes} == set(LOOKALIKES)


def test_pii_redaction_meets_its_targets_on_a_short_corpus():
    """The PII benchmark, short: recall >= 99.5% for every kind, >= 98% of look-alikes kept."""
    from benchmarks.pii.__main__ import score  # noqa: PLC0415
    from benchmarks.pii.corpus import KINDS, corpus  # noqa: PLC0415
    from benchmarks.pii.peers import ours  # noqa: PLC0415

    result = score(ours(), corpus(2200, seed=31))
    for kind in KINDS:
        assert result.values[kind] >= 150
        assert result.caught[kind] / result.values[kind] >= 0.995, (kind, result.misses)
    assert sum(result.kept.values()) / sum(result.looks.values()) >= 0.98, result.damaged


def test_the_pii_benchmark_command_prints_its_table():
    out = subprocess.run([sys.executable, "-m", "benchmarks.pii", "--texts", "300", "--peers", "ours", "--no-write"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| kind | values | ours recall |" in out.stdout
    assert "| phone_cn_fixed |" in out.stdout
    assert "| **all look-alikes** |" in out.stdout
    assert "| ours |" in out.stdout
