"""`monitor baseline`: drift measured against the training data from the first event."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import orjson

from monitor.baseline import build
from monitor.config import load_settings
from retrain.store import SampleStore

START = 1_790_000_000.0
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}


def events(n: int, mean: float, seed: int, version: str = "v1", prefix: str = "e") -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [orjson.dumps({"event_id": f"{prefix}-{i}", "type": "prediction", "ts": START + i / 100, "model": "m",
                          "model_version": version,
                          "features": {"x": float(rng.normal(mean, 1)), "c": str(rng.choice(["a", "b"]))}})
            for i in range(n)]


def monitor(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, env=ENV, timeout=120,
                          check=False)


def test_a_version_drifted_from_its_first_event_is_caught_only_with_a_baseline(tmp_path):
    training = tmp_path / "training.jsonl"
    training.write_bytes(b"\n".join(events(5000, 0.0, 1, prefix="t")) + b"\n")
    live = tmp_path / "live.jsonl"
    live.write_bytes(b"\n".join(events(6000, 0.5, 2)) + b"\n")  # shifted from the very start
    url = f"sqlite:///{tmp_path}/store.db"

    without = monitor("replay", str(live), "--store", url)
    assert without.returncode == 0, without.stderr.decode()
    assert b'"feature":"x"' not in without.stdout, "a warm-up learns the shifted data as normal"

    built = monitor("baseline", str(training), "--store", url)
    assert built.returncode == 0, built.stderr.decode()
    assert b"m v1: 2 fields" in built.stderr

    with_baseline = monitor("replay", str(live), "--store", url)
    alerts = [orjson.loads(line) for line in with_baseline.stdout.splitlines()]
    x = [a for a in alerts if a["feature"] == "x"]
    assert x, with_baseline.stderr.decode()
    assert x[0]["at_event"] < 1000, "caught within the first windows, not after a warm-up"
    assert not [a for a in alerts if a["feature"] == "c"], "the categorical feature did not move"


def test_the_sample_is_bounded_seeded_and_per_version(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([*events(3000, 0.0, 1), *events(100, 0.0, 2, version="v2", prefix="w"),
                                 b"not json"]) + b"\n")
    settings = load_settings(environ={}, overrides={"detect": {"reference_size": 500}})
    first, second = build(str(path), settings, progress=None), build(str(path), settings, progress=None)
    assert first.baselines == second.baselines
    seen, values = first.baselines[("m", "v1")]["x"]
    assert (seen, len(values)) == (3000, 500)
    assert first.baselines[("m", "v2")]["c"][0] == 100
    assert first.skipped == {"not_json": 1}
    store = SampleStore(f"sqlite:///{tmp_path}/b.db")
    try:
        store.put_baselines(first.baselines)
        store.put_baselines({("m", "v2"): first.baselines[("m", "v2")]})  # replaces v2 only
        loaded = store.baselines()
    finally:
        store.close()
    assert set(loaded) == {("m", "v1"), ("m", "v2")}
    assert loaded[("m", "v1")]["x"] == values
