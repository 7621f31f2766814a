"""Prometheus metrics, updated once per batch and built fresh at scrape time.

The hot path must not pay a lock and a label lookup per event, so the pipeline
counts a batch in plain dicts and numpy arrays and folds it in here once, under one
lock. A scrape reads the same state under that lock through a custom collector on
our own ``CollectorRegistry`` (nothing global). The names below are the contract
that dashboards and alert rules use: ``METRICS`` lists them, the README table is
made from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

#: Request latency buckets, in seconds. 0.1 is an edge, so the 100 ms SLO is exact.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
OTHER = "__other__"
#: Label values of one series (any tuple of strings: ``Mapping`` is invariant in its keys).
Labels = TypeVar("Labels", bound=tuple[str, ...])


@dataclass(frozen=True)
class Spec:
    """A metric's name, type, labels and help: one row of the README's table."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


METRICS = (
    Spec("model_monitor_events_total", "counter", ("model", "type"),
         "Valid events read, by model and event type."),
    Spec("model_monitor_invalid_events_total", "counter", ("reason",),
         "Messages rejected as bad input and sent to the dead-letter topic, by reason."),
    Spec("model_monitor_predictions_total", "counter", ("model", "model_version", "status"),
         "Predictions by status (ok, error): the success-rate SLO."),
    Spec("model_monitor_prediction_latency_seconds", "histogram", ("model", "model_version"),
         "Prediction latency; a bucket edge at 0.1 s makes the 100 ms SLO exact."),
    Spec("model_monitor_feedback_total", "counter", ("model", "kind"),
         "Feedback events by kind: the negative-feedback-rate SLO."),
    Spec("model_monitor_join_total", "counter", ("outcome",),
         "Feedback-to-prediction join outcomes: matched, matched_waiting, expired, evicted, orphaned."),
    Spec("model_monitor_alerts_total", "counter", ("model", "kind", "detector"),
         "Alerts raised, by alert kind and detector."),
    Spec("model_monitor_detector_score", "gauge", ("model", "model_version", "kind", "feature", "detector"),
         "Each detector's latest statistic."),
    Spec("model_monitor_detector_threshold", "gauge", ("model", "model_version", "kind", "feature", "detector"),
         "The value each detector's score must pass to fire."),
    Spec("model_monitor_flagged_samples_total", "counter", ("model", "reason"),
         "Samples flagged for retraining, by reason."),
    Spec("model_monitor_redactions_total", "counter", ("kind",),
         "Personal data replaced (or pseudonymised) before storage, by kind: email, phone, cn_id, cn_passport, "
         "hk_id, bank_card, ipv4, ipv6, and the kinds a recogniser of redact.recognizer reports."),
    Spec("model_monitor_feature_type_mismatches_total", "counter", ("model",),
         "Feature values whose type differs from the feature's first one (treated as missing)."),
    Spec("model_monitor_drift_tested_predictions_total", "counter", ("model",),
         "Predictions whose features and outputs went through the drift tests: all of them, or the sample "
         "of detect.sample_rate (compare model_monitor_predictions_total)."),
    Spec("model_monitor_bound_entries", "gauge", ("bound",),
         "Entries held in each bounded buffer or table."),
    Spec("model_monitor_bound_capacity", "gauge", ("bound",),
         "Capacity of each bounded buffer or table."),
    Spec("model_monitor_bound_overflow_total", "counter", ("bound",),
         "Entries dropped, or lumped under __other__, because a bound was full."),
    Spec("model_monitor_batches_total", "counter", (), "Batches processed."),
    Spec("model_monitor_checkpoints_total", "counter", ("outcome",),
         "Pipeline state checkpoints: saved; restored at start-up (for the same partitions); seeded (another "
         "member's detectors taken; the join comes by partition); or discarded (built with other settings, "
         "or by an older version)."),
    Spec("model_monitor_checkpoint_bytes", "gauge", (), "Size of the last checkpoint saved."),
    Spec("model_monitor_join_moves_total", "counter", ("outcome",),
         "Partitions whose join state moved through the store: saved (at a revocation), taken (by the member "
         "now reading the partition from the saved offset), stale (saved for another offset: not used), or "
         "failed (could not be saved, and the waiting feedback is flagged unjoined; or could not be read)."),
    Spec("model_monitor_stage_seconds_total", "counter", ("stage",),
         "Time spent in each stage of the hot path: fetch, decode (parse and validate), route (join, "
         "feed), detect, metrics, store (durable effects), commit."),
    Spec("model_monitor_batch_duration_seconds", "histogram", (),
         "Time to process one batch, from decode to durable effects."),
    Spec("model_monitor_committed_messages_total", "counter", (),
         "Messages whose offsets were committed after their effects were durable."),
    Spec("model_monitor_consumer_lag_messages", "gauge", ("topic", "partition"),
         "Messages behind the end of each assigned partition."),
    Spec("model_monitor_last_event_timestamp_seconds", "gauge", ("model",),
         "Event time of the newest event of each model."),
    Spec("model_monitor_retrain_pushed_total", "counter", ("model", "sink"),
         "Flagged samples a retraining sink (queue, webhook) acknowledged."),
    Spec("model_monitor_retrain_pending_samples", "gauge", ("sink",),
         "Flagged samples stored but not yet delivered to a sink."),
    Spec("model_monitor_retrain_triggers_total", "counter", ("model", "reason"),
         "Retrain triggers sent: weekly, severe_drift, volume."),
    Spec("model_monitor_errors_total", "counter", ("stage", "transient"),
         "Errors by pipeline stage; transient ones are retried."),
    Spec("model_monitor_ready", "gauge", (), "1 when /readyz answers ready, else 0."),
    Spec("model_monitor_build_info", "gauge", ("version",), "Always 1; the version running."),
)
SPECS = {s.name: s for s in METRICS}


def metrics_markdown() -> str:
    """The metrics table of the README, made from ``METRICS``."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for spec in METRICS:
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "-"
        rows.append(f"| `{spec.name}` | {spec.type} | {labels} | {spec.help} |")
    return "\n".join(rows)


class _Series:
    """Values of one metric by label tuple."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.values: dict[tuple[str, ...], float] = {}


class _Histogram:
    def __init__(self, spec: Spec, buckets: tuple[float, ...]) -> None:
        self.spec = spec
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.values: dict[tuple[str, ...], tuple[np.ndarray, float]] = {}

    def observe_many(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        counts, total = self.values.get(labels, (np.zeros(len(self.bounds) + 1, dtype=np.int64), 0.0))
        # side="left": a value equal to an edge belongs to that edge's bucket (le).
        counts = counts + np.bincount(np.searchsorted(self.bounds, values, side="left"),
                                      minlength=len(self.bounds) + 1)
        self.values[labels] = (counts, total + float(values.sum()))


class Metrics(Collector):
    """All of the daemon's metrics. Update under ``lock``, in batches."""

    def __init__(self, version: str = "") -> None:
        self.lock = threading.Lock()
        self._series: dict[str, _Series | _Histogram] = {}
        for spec in METRICS:
            if spec.type == "histogram":
                buckets = LATENCY_BUCKETS if "latency" in spec.name else BATCH_BUCKETS
                self._series[spec.name] = _Histogram(spec, buckets)
            else:
                self._series[spec.name] = _Series(spec)
        self.set("model_monitor_build_info", (version,), 1)
        self._probes: dict[str, Callable[[], float]] = {}

    def registry(self) -> CollectorRegistry:
        """A fresh registry holding these metrics and the process's (and nothing global)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, process_start_time_seconds, ...
        return registry

    def probe(self, name: str, read: Callable[[], float]) -> None:
        """Read a label-less gauge from ``read`` at each scrape (e.g. readiness)."""
        self._probes[name] = read

    # -- updates: call with self.lock held ------------------------------------------
    def _values(self, name: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], Any]:
        series = self._series[name]
        if len(labels) != len(series.spec.labels):
            raise ValueError(f"{name} takes labels {series.spec.labels}, got {labels}")
        return series.values

    def inc(self, name: str, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        values = self._values(name, labels)
        values[labels] = values.get(labels, 0.0) + amount

    def inc_many(self, name: str, counts: Mapping[Labels, float]) -> None:
        for labels, amount in counts.items():
            values = self._values(name, labels)
            values[labels] = values.get(labels, 0.0) + amount

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        self._values(name, labels)[labels] = value

    def replace(self, name: str, values: Mapping[Labels, float]) -> None:
        """Set a gauge's series to exactly ``values``, dropping the others (e.g. lost partitions)."""
        self._series[name].values = dict(cast(Mapping[tuple[str, ...], float], values))

    def remove_where(self, names: Iterable[str], **match: str) -> None:
        """Drop the series whose labels match, e.g. those of an evicted model version."""
        for name in names:
            series = self._series[name]
            idx = {label: series.spec.labels.index(label) for label in match}
            for labels in [k for k in series.values if all(k[i] == match[lab] for lab, i in idx.items())]:
                del series.values[labels]

    def observe_many(self, name: str, labels: tuple[str, ...], values: np.ndarray) -> None:
        series = self._series[name]
        if not isinstance(series, _Histogram):
            raise TypeError(f"{name} is not a histogram")
        self._values(name, labels)
        series.observe_many(labels, values)

    # -- reads ----------------------------------------------------------------------
    def value(self, name: str, labels: tuple[str, ...] = ()) -> float:
        """Current value of a counter or gauge (0.0 if never set); for tests and the demo."""
        with self.lock:
            series = self._series[name]
            return float(series.values.get(labels, 0.0)) if isinstance(series, _Series) else 0.0

    def total(self, name: str, **match: str) -> float:
        """Sum of a counter over the series whose labels match."""
        with self.lock:
            series = self._series[name]
            idx = {label: series.spec.labels.index(label) for label in match}
            return float(sum(v for k, v in series.values.items()
                             if isinstance(v, float | int) and all(k[i] == match[lab] for lab, i in idx.items())))

    def collect(self) -> Iterator[Metric]:
        probed = {name: read() for name, read in self._probes.items()}
        # Copy under the lock, build the families outside it: a scrape of a large
        # exposition must not hold up the batch that waits to fold in its counts.
        with self.lock:
            for name, value in probed.items():
                self.set(name, (), value)
            copies = [_copy(series) for series in self._series.values()]
        for series in copies:
            yield _family(series)


def _copy(series: _Series | _Histogram) -> _Series | _Histogram:
    copy = object.__new__(type(series))
    copy.__dict__.update(series.__dict__)
    copy.__dict__["values"] = dict(series.values)  # histogram arrays are replaced on update, never in place
    return copy


def _family(series: _Series | _Histogram) -> Metric:
    spec = series.spec
    labels = list(spec.labels)
    if isinstance(series, _Histogram):
        family: Any = HistogramMetricFamily(spec.name.removesuffix("_total"), spec.help, labels=labels)
        edges = [*(repr(float(b)) for b in series.bounds), "+Inf"]
        for key, (counts, total) in series.values.items():
            cumulative = np.cumsum(counts)
            family.add_metric(list(key), list(zip(edges, cumulative.tolist(), strict=True)), total)
        return cast(Metric, family)
    if spec.type == "counter":
        family = CounterMetricFamily(spec.name.removesuffix("_total"), spec.help, labels=labels)
    else:
        family = GaugeMetricFamily(spec.name, spec.help, labels=labels)
    for key, value in series.values.items():
        family.add_metric(list(key), value)
    return cast(Metric, family)


class LabelGuard:
    """Bounds the distinct values of a metric label; past the bound they become ``__other__``.

    >>> guard = LabelGuard(2)
    >>> [guard("a"), guard("b"), guard("c"), guard("a")], guard.overflowed
    (['a', 'b', '__other__', 'a'], 1)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: set[str] = set()
        self.overflowed = 0

    def __len__(self) -> int:
        return len(self._seen)

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self.capacity:
            self._seen.add(value)
            return value
        self.overflowed += 1
        return OTHER
