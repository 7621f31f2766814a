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


# -- the slices benchmark (benchmarks/slices/) ---------------------------------------------------------------

SLICE_SCALE = 0.25  # a quarter of the recorded size: 15,000-30,000 predictions a stream


@pytest.fixture(scope="module")
def slice_streams():
    from benchmarks.slices.streams import SCENARIOS  # noqa: PLC0415

    return {name: SCENARIOS[name](SLICE_SCALE) for name in
            ("decay_one_segment", "spike_new_users", "parity_gap", "canary_worse_latency")}


def test_slice_streams_are_events_of_the_contract_in_the_order_a_consumer_reads_them(slice_streams):
    from collectors.decode import Decoder, Limits  # noqa: PLC0415

    decoder = Decoder(Limits())
    for name, s in slice_streams.items():
        seen: dict[str, float] = {}
        last_ts = 0.0
        for e in s.events:
            assert e["ts"] >= last_ts, name
            last_ts = e["ts"]
            if e["type"] == "prediction":
                assert set(e["segment"]) == {"region", "device", "new_user", "gender"}, name
                seen[e["request_id"]] = e["ts"]
            else:  # feedback and business events come after their prediction
                assert e["request_id"] in seen and e["ts"] >= seen[e["request_id"]], (name, e)
            if e["type"] in ("impression", "click", "conversion"):
                assert set(e["segment"]) == {"region", "device", "new_user", "gender"}
        sample = s.events[:: max(1, len(s.events) // 500)]
        assert all(decoder.decode(orjson_dumps(e), now=2e9)[1] is None for e in sample), name
        assert {e["model"] for e in s.events} == ({"loans", "ranker"} if name == "parity_gap" else {"ranker", "fraud"})


def orjson_dumps(event):
    import orjson  # noqa: PLC0415

    return orjson.dumps(event)


def test_a_slice_stream_changes_where_it_declares_and_by_what_it_declares(slice_streams):
    from benchmarks.slices.streams import SCENARIOS, measure  # noqa: PLC0415

    for name, s in slice_streams.items():
        if s.change_at is not None and name != "canary_worse_latency":
            first = s.events[s.change_at]
            assert first["type"] == "prediction"
            index = int(first["request_id"].rsplit("-", 1)[1])
            assert all(int(e["request_id"].rsplit("-", 1)[1]) < index
                       for e in s.events[: s.change_at] if e["type"] == "prediction")
        for rate in s.declared:
            for declared, (got, n) in zip((rate.before, rate.after), measure(s, rate), strict=True):
                if declared is None:
                    continue
                tolerance = 4 * math.sqrt(declared * (1 - declared) / n) + 0.002
                assert abs(got - declared) <= tolerance, (name, rate, got, n)
    assert SCENARIOS["decay_one_segment"](SLICE_SCALE).events == slice_streams["decay_one_segment"].events  # seeded


def test_the_canary_and_stationary_streams_have_their_shape():
    from benchmarks.slices.streams import SCENARIOS  # noqa: PLC0415

    s = SCENARIOS["canary_as_good"](0.1)
    versions = {e["model_version"] for e in s.events if e["type"] == "prediction" and e["model"] == "ranker"}
    assert versions == {"v1", "v2"} and s.change_at is None and s.expect is None
    full = SCENARIOS["stationary_many_segments"]  # the recorded size has 200,000+ events
    small = full(0.05)
    values = {k: {e["segment"][k] for e in small.events if e["type"] == "prediction"} for k in ("region", "cohort")}
    assert len(values["region"]) >= 25 and len(values["cohort"]) >= 18
    assert len(small.events) * 20 >= 200_000


def test_the_slice_scorer_counts_detections_coarser_alerts_and_false_alarms():
    from benchmarks.slices.score import score, summarise  # noqa: PLC0415
    from benchmarks.slices.streams import ANY, Expect, SliceStream  # noqa: PLC0415

    stream = SliceStream("s", "", [{}] * 1000, 500, Expect("metric_decay", "m", {"region": "south"},
                                                           detector="error_rate"),
                         also=(Expect("metric_decay", "m", ANY, exclude_key="region"),))

    def alert(at, segment=None, kind="metric_decay", model="m", detector="error_rate"):
        return {"kind": kind, "model": model, "model_version": "v1", "feature": None, "detector": detector,
                "at_event": at, "segment": segment, "baseline_version": None}

    alerts = [alert(100, {"region": "south"}),  # before the change: false, though right
              alert(650, None),  # the whole model: also
              alert(700, {"device": "ios"}),  # another key's segment: also
              alert(720, {"region": "east"}),  # another region: false
              alert(800, {"region": "south"}),  # the detection
              alert(900, {"region": "south"}, detector="ctr"),  # the wrong detector: false
              alert(950, {"region": "south"}, model="other")]  # the other model: false
    r = score(stream, alerts, "slices")
    assert (r.detected, r.delay, r.correct, r.false_before, r.false_other) == (True, 300, 1, 1, 3)
    assert list(r.also.values()) == [150] and r.fa_per_million == 4000
    quiet = SliceStream("q", "", [{}] * 2000, None, None)
    q = score(quiet, [alert(10)], "slices")
    assert (q.detected, q.false_alarms, q.fa_per_million) == (False, 1, 500)
    s = summarise("slices", [r, q])
    assert (s.detected, s.changed, s.delays, s.stationary_false, s.stationary_events) == (1, 1, [300], 1, 2000)


def test_a_canary_alert_must_name_both_versions():
    from benchmarks.slices.streams import Expect  # noqa: PLC0415

    want = Expect("canary_regression", "ranker", None, detector="latency", model_version="v2",
                  baseline_version="v1")
    right = {"kind": "canary_regression", "model": "ranker", "model_version": "v2", "baseline_version": "v1",
             "detector": "latency", "feature": None, "segment": None}
    assert want.matches(right)
    assert not want.matches({**right, "baseline_version": None})
    assert not want.matches({**right, "model_version": "v1", "baseline_version": "v2"})
    assert not want.matches({**right, "segment": {"region": "east"}})


def test_the_fixed_window_check_flags_the_parity_gap_and_not_the_equal_groups(slice_streams):
    from benchmarks.slices import fixed_window  # noqa: PLC0415
    from benchmarks.slices.score import score  # noqa: PLC0415

    s = slice_streams["parity_gap"]
    r = score(s, fixed_window.alerts(s.events, ["gender"]), "fixed_window")
    assert r.detected and r.false_alarms == 0, r


@pytest.mark.slow
def test_the_slices_benchmark_command_runs_and_reports():
    result = subprocess.run([sys.executable, "-m", "benchmarks.slices", "--streams", "spike_new_users,canary_as_good",
                             "--scale", "0.2", "--no-write", "--jobs", "2"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| slices |" in result.stdout and "| whole |" in result.stdout
    assert "| spike_new_users |" in result.stdout and "| canary_as_good |" in result.stdout


# The end-to-end checks of the slice features: `monitor replay` of a stream must raise the
# alert the stream is built for. They fail until the features (issue 13) land; each is its own
# test so that which feature works shows by name. Skipped only if the alert record has no
# `segment` field at all.

def _needs_segment_field():
    from collectors.contract import Alert  # noqa: PLC0415

    if "segment" not in Alert.__dataclass_fields__:
        pytest.skip("collectors.contract.Alert has no segment field: the slice features are not there")


def _replayed(name, scale, tmp_path, config="slices"):
    from benchmarks.slices.__main__ import replay, write_stream  # noqa: PLC0415
    from benchmarks.slices.score import score  # noqa: PLC0415
    from benchmarks.slices.streams import SCENARIOS  # noqa: PLC0415

    stream = SCENARIOS[name](scale)
    path = tmp_path / f"{name}.jsonl"
    write_stream(stream, path)
    alerts, _, _ = replay(path, config, tmp_path)
    return score(stream, alerts, config), alerts


@pytest.mark.slow
@pytest.mark.parametrize(("name", "scale"), [
    # The others (decay in a segment, canaries, a parity gap, the estimate, a canary as good as
    # its baseline) are in tests/test_slices.py, in process and shorter; a conversion drop in one
    # segment needs 90,000 events (benchmarks/run slices).
    ("spike_new_users", 0.5)])
def test_replay_raises_the_slice_alert(name, scale, tmp_path):
    _needs_segment_field()
    result, alerts = _replayed(name, scale, tmp_path)
    raised = [(a["kind"], a["model"], a.get("model_version"), a["detector"], a.get("segment"), a["at_event"])
              for a in alerts]
    assert result.detected, f"{name}: no alert of the expected identity after the change; it raised {raised[:10]}"
    assert result.false_alarms == 0, result.false_examples

