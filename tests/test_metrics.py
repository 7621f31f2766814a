"""Metrics: a custom collector on our own registry, real HTTP endpoints on port 0."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor import metrics as metrics_module
from monitor.http import Health, StatusServer
from monitor.metrics import (
    BATCH_BUCKETS,
    BOUND_ENTRIES,
    EVENTS,
    LATENCY_BUCKETS,
    METRICS,
    PREDICTION_LATENCY,
    PREDICTIONS,
    CounterSpec,
    HistogramSpec,
    Metrics,
    Spec,
)


def test_every_metric_is_exposed_with_its_type_and_help():
    metrics = Metrics("1.2.3")
    families = {f.name: f for f in text_string_to_metric_families(
        __import__("prometheus_client").generate_latest(metrics.registry()).decode())}
    for spec in METRICS:
        name = spec.name.removesuffix("_total") if spec.type == "counter" else spec.name
        assert name in families, spec.name
        assert families[name].type == spec.type
        assert families[name].documentation == spec.help
    assert metrics.registry().get_sample_value("model_monitor_build_info", {"version": "1.2.3"}) == 1.0


def test_metric_names_follow_prometheus_conventions():
    for spec in METRICS:
        assert spec.name.startswith("model_monitor_")
        assert spec.name.endswith("_total") == (spec.type == "counter"), spec.name
        assert "_ms" not in spec.name
        assert "milliseconds" not in spec.name


def test_counters_gauges_and_histograms_fold_in_batches():
    metrics = Metrics()
    with metrics.lock:
        metrics.inc_many(EVENTS, {("a", "prediction"): 3, ("b", "click"): 1})
        metrics.inc(EVENTS, ("a", "prediction"), 2)
        metrics.set(BOUND_ENTRIES, ("models",), 7)
        metrics.observe_many(PREDICTION_LATENCY, ("a", "v1"),
                             np.array([0.05, 0.1, 0.2, 9.0]))
    registry = metrics.registry()
    assert registry.get_sample_value("model_monitor_events_total", {"model": "a", "type": "prediction"}) == 5
    assert registry.get_sample_value("model_monitor_bound_entries", {"bound": "models"}) == 7
    labels = {"model": "a", "model_version": "v1"}
    buckets = {le: registry.get_sample_value("model_monitor_prediction_latency_seconds_bucket", {**labels, "le": le})
               for le in ("0.05", "0.1", "5.0", "+Inf")}
    assert buckets == {"0.05": 1, "0.1": 2, "5.0": 3, "+Inf": 4}
    assert registry.get_sample_value("model_monitor_prediction_latency_seconds_sum",
                                     {"model": "a", "model_version": "v1"}) == \
        pytest.approx(9.35)
    assert 0.1 in LATENCY_BUCKETS


def test_label_arity_is_checked():
    metrics = Metrics()
    with metrics.lock, pytest.raises(ValueError, match="model_monitor_events_total takes labels"):
        metrics.inc(EVENTS, ("only-model",))


def test_every_handle_is_in_the_table_and_histograms_declare_their_buckets():
    handles = [v for k, v in vars(metrics_module).items() if k.isupper() and isinstance(v, Spec)]
    assert sorted(h.name for h in handles) == sorted(s.name for s in METRICS)
    assert len({s.name for s in METRICS}) == len(METRICS)
    buckets = {s.name: s.buckets for s in METRICS if isinstance(s, HistogramSpec)}
    assert buckets == {"model_monitor_prediction_latency_seconds": LATENCY_BUCKETS,
                       "model_monitor_batch_duration_seconds": BATCH_BUCKETS}


def test_a_handle_not_in_the_table_is_refused_and_reads_take_names_too():
    metrics = Metrics()
    stray = CounterSpec("model_monitor_stray_total", (), "not in METRICS")
    with metrics.lock, pytest.raises(KeyError):
        metrics.inc(stray, ())
    with metrics.lock:
        metrics.inc(EVENTS, ("a", "click"), 2)
    assert metrics.value(EVENTS, ("a", "click")) == metrics.value("model_monitor_events_total", ("a", "click")) == 2
    assert metrics.total(EVENTS) == metrics.total("model_monitor_events_total") == 2


def test_remove_where_drops_only_matching_series():
    metrics = Metrics()
    with metrics.lock:
        for v in ("v1", "v2"):
            metrics.inc(PREDICTIONS, ("m", v, "ok"))
        metrics.remove_where([PREDICTIONS], model="m", model_version="v1")
    assert metrics.total("model_monitor_predictions_total") == 1
    assert metrics.total("model_monitor_predictions_total", model_version="v2") == 1


def test_endpoints_serve_metrics_health_and_readiness():
    now = [0.0]
    metrics, health = Metrics(), Health(liveness_timeout_s=10, clock=lambda: now[0])
    server = StatusServer("127.0.0.1", 0, metrics.registry(), health, lambda: {"hello": "world"})
    server.start()
    try:
        get = lambda path, **kw: httpx.get(server.url + path, timeout=5, **kw)  # noqa: E731
        response = get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "model_monitor_build_info" in response.text
        assert get("/metrics", headers={"Accept": "application/openmetrics-text"}).text.endswith("# EOF\n")
        assert get("/healthz").status_code == 200
        assert (get("/readyz").status_code, get("/readyz").text) == (503, "startup: starting\n")
        health.problem("startup", None)
        assert get("/readyz").status_code == 200
        assert get("/status").json() == {"hello": "world"}
        assert get("/nope").status_code == 404
        now[0] = 11.0  # the loop stopped beating
        assert get("/healthz").status_code == 503
        assert get("/readyz").status_code == 503
        health.beat()
        assert get("/healthz").status_code == 200
    finally:
        server.stop()
