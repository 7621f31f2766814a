"""Bad cases: categories, groups, priorities, `monitor badcases`, datasets and the triggers that build them."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from collections import deque
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from helpers import messages

from collectors.contract import Alert
from common.errors import ConfigError
from monitor.badcases import Selection, load_cases, recategorise
from monitor.config import load_settings
from monitor.metrics import Metrics
from monitor.pipeline import Pipeline, _Batch
from monitor.replay import replay
from monitor.service import dataset_builder, trigger_policy
from monitor.simulator import Fault, TrafficSimulator
from retrain.badcases import DEFAULT_RULES, Facts, RuleSet
from retrain.datasets import DatasetOptions, build
from retrain.jobs import RetrainJobs, TriggerPolicy
from retrain.store import SampleStore, dataset_samples_table

START = 1_790_000_000.0
SETTINGS = {"detect": {"reference_size": 300, "window_size": 200, "check_every": 50, "feedback_burn_in_s": 10.0}}


def events(seconds: int = 60, rate: float = 200, seed: int = 5) -> list[dict | bytes]:
    sim = TrafficSimulator(seed=seed, start_ts=START, bad_input_rate=0.0, faults=[
        Fault("feature_drift", "recsys", 20.0, feature="price"),
        Fault("latency_regression", "fraud", 30.0)])
    out: list[dict | bytes] = []
    for _ in range(seconds):
        out.extend(sim.advance(1.0, rate))
    return out


def write_events(path: Path, evs: list[dict | bytes]) -> Path:
    path.write_bytes(b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in evs))
    return path


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    return write_events(tmp_path_factory.mktemp("stream") / "events.jsonl", events())


def settings(**extra):
    return load_settings(environ={}, overrides={**SETTINGS, **extra})


def replay_into(path: Path, url: str, s=None) -> None:
    replay(str(path), s or settings(), io.BytesIO(), store_url=url, progress=None)


def monitor(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120,
                            check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


# -- rules ----------------------------------------------------------------------------------
def test_default_rules_sort_feedback_in_english_and_chinese():
    rules = RuleSet.compile(DEFAULT_RULES, latency_threshold_ms=100.0)
    cases = {
        ("thumbs_down", None, "this result is offensive"): "harmful",
        ("complaint", None, "内容低俗，令人冒犯"): "harmful",
        ("thumbs_down", "offensive", None): "harmful",
        ("complaint", None, "页面白屏，打不开"): "failure",
        ("thumbs_down", None, "加载太慢了"): "slow",
        ("thumbs_down", "slow", "ok"): "slow",
        ("thumbs_down", None, "商品已下架"): "stale",
        ("correction", None, None): "wrong_answer",
        ("thumbs_down", None, "价格显示错了"): "wrong_answer",
        ("thumbs_down", None, "答非所问"): "irrelevant",
        ("thumbs_down", "irrelevant", None): "irrelevant",
        ("thumbs_down", None, "meh"): "uncategorised",
    }
    got = {k: rules.categorise(Facts(*k)) for k in cases}
    assert got == cases
    assert rules.categorise(Facts("thumbs_down", None, "meh", status="error")) == "failure"
    assert rules.categorise(Facts("thumbs_down", None, "meh", latency_ms=100.0)) == "uncategorised", "not over"
    assert rules.categorise(Facts("thumbs_down", None, "meh", latency_ms=100.5)) == "slow"
    assert rules.categorise(Facts("thumbs_down", None, "meh", alert_kinds=frozenset({"slo_burn"}))) == "uncategorised"
    assert rules.categories()[-1] == "uncategorised"
    assert rules.severity("harmful") == 2.0 and rules.severity("uncategorised") == 1.0


def test_a_rule_with_all_its_conditions_and_a_segment():
    rules = RuleSet.compile([{"category": "new_users_slow", "latency_over_ms": 50, "segment": {"new_user": True}},
                             {"category": "east", "segment": {"region": "east"}, "kinds": ["complaint"]}], 100.0)
    assert rules.categorise(Facts("thumbs_down", latency_ms=60.0, segment={"new_user": "true"})) == "new_users_slow"
    assert rules.categorise(Facts("thumbs_down", latency_ms=60.0, segment={"new_user": "false"})) == "uncategorised"
    assert rules.categorise(Facts("complaint", segment={"region": "east"})) == "east"
    assert rules.categorise(Facts("thumbs_down", segment={"region": "east"})) == "uncategorised"


@pytest.mark.parametrize(("table", "message"), [
    ({"category": "x"}, "has no condition"),
    ({"category": "x", "coment": "a"}, "unknown key 'coment'"),
    ({"category": "x", "comment": "(unclosed"}, "not a valid regular expression"),
    ({"category": "Bad Name", "comment": "a"}, "category must be a short lower-case name"),
    ({"category": "x", "kinds": ["thumbs_sideways"]}, "unknown kinds"),
    ({"category": "x", "comment": "a", "match": "some"}, "match must be"),
    ({"category": "x", "latency_over_ms": -1}, "milliseconds >= 0"),
    ({"category": "x", "segment": "east"}, "table of segment key = value"),
])
def test_bad_rules_are_configuration_errors_that_name_the_rule(table, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        RuleSet.compile([table], 100.0)
    with pytest.raises(ConfigError, match=r"badcases\.rules\[0\]"):
        load_settings(environ={}, overrides={"badcases": {"rules": [table]}})


def test_rules_come_from_the_config_file_and_not_the_environment(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[[badcases.rules]]\ncategory = "pricing"\ncomment = "(?i)price|价格"\n')
    s = load_settings(path, environ={})
    assert [r["category"] for r in s.badcases.rules] == ["pricing"]
    with pytest.raises(ConfigError, match="list of tables"):
        load_settings(environ={"MONITOR_BADCASES_RULES": "x"})


# -- the pipeline ------------------------------------------------------------------------------
def test_bad_cases_are_categorised_alike_in_batches_of_any_size():
    evs = events(50, 150)
    results = []
    for size in (97, 20_000):
        pipeline = Pipeline(settings(), Metrics("test"))
        msgs = messages(evs)
        samples = []
        for i in range(0, len(msgs), size):
            samples.extend(pipeline.process(msgs[i:i + size]).samples)
        samples.extend(pipeline.drain().samples)
        results.append({s.event_id: (s.category, [a["kind"] for a in s.payload.get("active_alerts", [])])
                        for s in samples if s.category is not None})
    assert results[0] == results[1]
    categories = {c for c, _ in results[0].values()}
    assert {"slow", "irrelevant", "wrong_answer", "drifted_input"} <= categories, categories
    drifted = [alerts for c, alerts in results[0].values() if c == "drifted_input"]
    assert drifted and all({"data_drift", "prediction_drift"} & set(a) for a in drifted)


def test_an_alert_counts_for_bad_cases_after_it_and_within_its_window():
    s = settings(badcases={"active_alert_window_s": 30.0})
    pipeline = Pipeline(s, Metrics("test"))
    pipeline._alert_log["m"] = deque([(10, START, "data_drift", "ks", "price")])
    batch = []

    def case(eid: str, ts: float, position: int):
        pred = {"event_id": f"p-{eid}", "type": "prediction", "ts": ts, "model": "m", "request_id": eid}
        fb = {"event_id": eid, "type": "feedback", "ts": ts, "model": "m", "request_id": eid, "kind": "thumbs_down"}
        b = _Batch()
        pipeline._flag_feedback(fb, pred, "thumbs_down", position, b)
        pipeline._categorise(b)
        batch.extend(b.samples)

    case("before-the-alert", START + 1, 5)
    case("inside", START + 10, 20)
    case("after-the-window", START + 31, 30)
    assert [x.category for x in batch] == ["uncategorised", "drifted_input", "uncategorised"]


# -- the store and the command ---------------------------------------------------------------------
def test_replaying_twice_gives_the_same_bad_cases_one_per_feedback_event(stream, store_url):
    replay_into(stream, store_url)
    first = load_cases(SampleStore(store_url), settings(), Selection())
    replay_into(stream, store_url)
    store = SampleStore(store_url)
    second = load_cases(store, settings(), Selection())
    store.close()
    assert [c.record() for c in first] == [c.record() for c in second]
    flagged = [e for e in map(orjson.loads, stream.read_bytes().splitlines())
               if e["type"] == "feedback" and e["kind"] in ("thumbs_down", "complaint", "correction")]
    ids = [c.event_id for c in second]
    assert len(ids) == len(set(ids)), "one line per feedback event"
    assert {e["event_id"] for e in flagged} <= set(ids)
    assert {c.kind for c in second} == {"thumbs_down", "complaint", "wrong_label"}
    assert [c.score for c in second] == sorted((c.score for c in second), reverse=True)
    assert {c.priority for c in second} <= {"P0", "P1", "P2", "P3"}
    groups = {c.group_id: c.group_size for c in second}
    assert max(groups.values()) > 1, "repeated comments group together"
    assert all(sum(1 for c in second if c.group_id == g) == n for g, n in groups.items())


def test_the_command_filters_formats_and_explains(stream, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    replay_into(stream, url)
    rows = [json.loads(line) for line in monitor("badcases", "--store", url, "--format", "jsonl").stdout.splitlines()]
    keys = {"event_id", "model", "model_version", "kind", "reason", "comment", "value", "category", "priority",
            "score", "segment", "event_ts", "latency_ms", "status", "active_alerts", "group_id", "group_size",
            "features", "prediction", "joined"}
    assert rows and all(set(r) == keys for r in rows)
    fraud_slow = [r for r in rows if r["model"] == "fraud" and r["category"] == "slow"]
    out = monitor("badcases", "--store", url, "--format", "jsonl", "--model", "fraud", "--category", "slow").stdout
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == [r["event_id"] for r in fraud_slow]
    east = monitor("badcases", "--store", url, "--format", "jsonl", "--segment", "region=east").stdout.splitlines()
    assert east and all(json.loads(line)["segment"]["region"] == "east" for line in east)
    since = START + 40
    late = monitor("badcases", "--store", url, "--format", "jsonl", "--since", str(since)).stdout.splitlines()
    assert len(late) == sum(r["event_ts"] >= since for r in rows)
    table = monitor("badcases", "--store", url, "--limit", "5")
    assert len(table.stdout.splitlines()) == 6 and table.stdout.startswith("prio")
    assert "bad cases in" in table.stderr and "5 shown" in table.stderr
    parsed = list(csv.DictReader(io.StringIO(monitor("badcases", "--store", url, "--format", "csv").stdout)))
    assert [r["event_id"] for r in parsed] == [r["event_id"] for r in rows]
    markdown = monitor("badcases", "--store", url, "--format", "markdown", "--limit", "3").stdout
    assert markdown.startswith("| prio |") and markdown.count("\n") == 5
    grouped = monitor("badcases", "--store", url, "--format", "jsonl", "--grouped").stdout.splitlines()
    assert len(grouped) == len({r["group_id"] for r in rows})
    explained = monitor("badcases", "--store", url, "--limit", "1", "--explain").stdout
    for part in ("severity", "frequency", "growth", "share", "score"):
        assert part in explained
    bad = monitor("badcases", "--store", url, "--since", "yesterday-ish", check=False)
    assert bad.returncode == 2 and "--since 'yesterday-ish' is not a time" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_recategorise_applies_changed_rules_to_the_store(stream, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    replay_into(stream, url)
    store = SampleStore(url)
    before = {c.event_id: c.category for c in load_cases(store, settings(), Selection())}
    changed = settings(badcases={"rules": [{"category": "anything_slow", "latency_over_ms": 60.0},
                                           {"category": "in_chinese", "comment": r"[\u4e00-\u9fff]"}]})
    moves = recategorise(store, changed)
    after = {c.event_id: c for c in load_cases(store, changed, Selection())}
    store.close()
    assert sum(moves.values()) > 0
    assert set(before) == set(after)
    assert {c.category for c in after.values()} == {"anything_slow", "in_chinese", "uncategorised"}
    assert all(c.category == "anything_slow" for c in after.values() if (c.latency_ms or 0) > 60)
    config = tmp_path / "m.toml"
    config.write_text('[[badcases.rules]]\ncategory = "everything"\nkinds = ["thumbs_down", "complaint", '
                      '"correction", "wrong_label"]\n')
    result = monitor("badcases", "--store", url, "-c", str(config), "--recategorise", "--format", "jsonl")
    assert "recategorised" in result.stderr
    assert {json.loads(line)["category"] for line in result.stdout.splitlines()} == {"everything"}


# -- datasets --------------------------------------------------------------------------------
def test_dataset_versions_hold_each_sample_once_with_a_true_manifest(stream, store_url, tmp_path):
    replay_into(stream, store_url)
    store = SampleStore(store_url)
    s = settings()
    rules = RuleSet.compile(s.badcases.rules, 100.0)
    options = DatasetOptions(out_dir=str(tmp_path / "ds"), max_per_category=20)
    first = build(store, "recsys", rules, s.badcases.weights(), 0.7, options, {"reason": "manual"})
    second = build(store, "recsys", rules, s.badcases.weights(), 0.7, options)
    again = build(store, "recsys", rules, s.badcases.weights(), 0.7,
                  DatasetOptions(out_dir=str(tmp_path / "ds"), max_per_category=20, include_used=True, fmt="parquet"))
    versions = store.dataset_versions("recsys")
    store.close()
    assert first is not None and second is not None and again is not None
    assert (first["version"], second["version"], again["version"]) == (1, 2, 3)
    assert (first["parent_version"], second["parent_version"]) == (None, 1)
    assert [v["dataset_id"] for v in versions] == ["recsys-v1", "recsys-v2", "recsys-v3"]
    for manifest in (first, second):
        folder = Path(manifest["path"])
        assert folder.name == f"v{manifest['version']}"
        for f in manifest["files"]:
            data = (folder / f["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
        assert json.loads((folder / "manifest.json").read_text())["files"] == manifest["files"]
        assert all(n <= 20 for n in manifest["counts"]["by_category"].values())
    ids = [{json.loads(line)["event_id"] for line in (Path(m["path"]) / f).read_text().splitlines()}
           for m in (first, second) for f in ("data.jsonl", "to_label.jsonl")]
    assert not (ids[0] | ids[1]) & (ids[2] | ids[3]), "a sample goes into one version only"
    assert first["counts"]["to_label"] > 0 and first["alerts"], "drifted windows want labels; alerts are named"
    records = [json.loads(line) for line in (Path(first["path"]) / "data.jsonl").read_text().splitlines()]
    assert sum(r["duplicates"] for r in records) == first["counts"]["cases"] >= len(records)
    table = pq.read_table(Path(again["path"]) / "data.parquet")
    assert table.num_rows == again["counts"]["records"] > 0
    assert first["rules_fingerprint"] == rules.fingerprint and first["trigger"] == {"reason": "manual"}


def test_dataset_commands(stream, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    replay_into(stream, url)
    out = tmp_path / "ds"
    built = monitor("dataset", "build", "--model", "fraud", "--store", url, "--out", str(out), "--format", "parquet")
    assert Path(built.stdout.strip()) == out / "fraud" / "v1"
    assert "dataset fraud-v1" in built.stderr
    listing = monitor("dataset", "list", "--store", url).stdout
    assert "fraud-v1" in listing
    missing = monitor("dataset", "build", "--model", "nope", "--store", url, "--out", str(out), check=False)
    assert missing.returncode == 1 and "no bad case of 'nope'" in missing.stderr
    unwritable = monitor("dataset", "build", "--model", "fraud", "--store", url, "--out", "/proc/nope", check=False)
    assert unwritable.returncode in (1, 2) and "Traceback" not in unwritable.stderr


# -- triggers ---------------------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.records = []

    def publish(self, records):
        self.records.extend(records)

    def close(self):
        pass


class Listener:
    def pushed(self, sink, by_model, pending):
        pass

    def triggered(self, model, reason):
        pass


def test_triggers_build_a_dataset_and_carry_its_manifest(stream, store_url, tmp_path):
    replay_into(stream, store_url)
    store = SampleStore(store_url)
    s = settings(datasets={"dir": str(tmp_path / "ds"), "volume_trigger": 50,
                           "overrides": [{"model": "search", "volume_trigger": 0},
                                         {"model": "fraud", "severe_factor": 100.0}]})
    queue = Recorder()
    jobs = RetrainJobs(store, {"queue": queue}, Listener(), policy=lambda m: trigger_policy(s, m),
                       datasets=dataset_builder(s, store))
    assert trigger_policy(s, "fraud") == TriggerPolicy(severe_factor=100.0, volume=50)
    added = jobs.volume()
    assert "search" not in added and "recsys" in added
    assert jobs.volume() == [], "once per dataset version"
    triggers = [r for r in queue.records if r["type"] == "retrain_trigger"]
    assert {t["reason"] for t in triggers} == {"volume"}
    for t in triggers:
        manifest = t["detail"]["dataset"]
        assert manifest["dataset_id"] == f"{t['model']}-v1" and manifest["trigger"]["reason"] == "volume"
        assert Path(manifest["path"], "manifest.json").exists()
    alert = store.alerts_of("recsys")[0]
    a = Alert(**alert)
    assert jobs.severe(a) is True
    severe = [r for r in queue.records if r["type"] == "retrain_trigger" and r["reason"] == "severe_drift"]
    assert severe[0]["detail"]["kind"] == a.kind and severe[0]["detail"]["dataset"]["dataset_id"] == "recsys-v2"
    assert not jobs.is_severe(Alert("data_drift", "fraud", "v3", "amount", "ks", 10.0, 0.2, 1, START), ["data_drift"])
    assert jobs.is_severe(Alert("data_drift", "recsys", "v12", "x", "ks", 10.0, 0.2, 1, START), ["data_drift"])
    store.close()


def test_a_builder_that_lost_the_race_chooses_again_and_no_sample_is_in_two_versions(stream, store_url, tmp_path):
    """Two builders of one model at once (two daemons' triggers, or a trigger and `monitor
    dataset build`): the second to record finds its samples taken and chooses again."""
    replay_into(stream, store_url)
    store = SampleStore(store_url)
    s = settings()
    rules = RuleSet.compile(s.badcases.rules, 100.0)
    options = DatasetOptions(out_dir=str(tmp_path / "ds"), max_per_category=20)
    record = store.add_dataset
    raced: list[dict] = []

    def add_dataset(*args, **kwargs):
        if not raced:  # the other builder records first, with the same samples chosen
            raced.append({})
            store.add_dataset = record
            raced[0] = build(store, "fraud", rules, s.badcases.weights(), 0.7, options)
        return record(*args, **kwargs)

    store.add_dataset = add_dataset
    first = build(store, "fraud", rules, s.badcases.weights(), 0.7, options)
    store.add_dataset = record
    with store.engine.connect() as db:
        rows = db.execute(dataset_samples_table.select().where(dataset_samples_table.c.model == "fraud")).all()
    store.close()
    assert raced[0] is not None and first is not None
    assert raced[0]["version"] < first["version"], "the loser records after the winner"
    ids = [r.event_id for r in rows]
    assert len(ids) == len(set(ids)), "no sample in two versions"
    assert {r.version for r in rows} == {raced[0]["version"], first["version"]}
    assert sorted(p.name for p in (tmp_path / "ds" / "fraud").iterdir()) == sorted(
        [f"v{raced[0]['version']}", f"v{first['version']}"]), "no folder left behind that the store does not name"
