"""Prometheus metrics, updated once per batch and built fresh at scrape time.

The hot path must not pay a lock and a label lookup per event, so the pipeline
counts a batch in plain dicts and numpy arrays and folds it in here once, under one
lock. A scrape reads the same state under that lock through a custom collector on
our own ``CollectorRegistry`` (nothing global).

Each metric is a typed handle, one row of the table below: its name, labels and help
(and a histogram's buckets) are declared once, here. The handles are the contract
that dashboards and alert rules use: ``METRICS`` lists them, the README table is made
from it. Call sites name a handle, not a string, so a misspelt metric fails at import
(and in mypy, which also checks the number of labels where it can); a wrong number
of labels raises ``ValueError`` naming the metric when the handle is used:

>>> metrics = Metrics()
>>> with metrics.lock:
...     metrics.inc(EVENTS, ("recsys", "prediction"), 3)
...     metrics.inc_many(EVENTS, {("recsys", "click"): 1.0})
>>> metrics.total(EVENTS, model="recsys")
4.0
>>> with metrics.lock:
...     metrics.inc(EVENTS, ("recsys",))
Traceback (most recent call last):
ValueError: model_monitor_events_total takes labels ('model', 'type'), got ('recsys',)

A new metric is one more row: ``NAME = CounterSpec("model_monitor_..._total", ("label",),
"help")`` listed in ``METRICS``, then ``scripts/update_readme.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

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
#: Label values of one series: a handle's label names fix how many (``Mapping`` is invariant in its keys).
Labels = TypeVar("Labels", bound=tuple[str, ...])


@dataclass(frozen=True)
class Spec(Generic[Labels]):
    """A metric's name, labels and help: one row of the README's table, and the handle
    that call sites update it by (``CounterSpec``, ``GaugeSpec`` or ``HistogramSpec``)."""

    name: str
    labels: Labels
    help: str
    type: ClassVar[str]


@dataclass(frozen=True)
class CounterSpec(Spec[Labels]):
    """A counter: ``Metrics.inc``, ``Metrics.inc_many``."""

    type: ClassVar[str] = "counter"


@dataclass(frozen=True)
class GaugeSpec(Spec[Labels]):
    """A gauge: ``Metrics.set``, ``Metrics.replace``, ``Metrics.probe``."""

    type: ClassVar[str] = "gauge"


@dataclass(frozen=True)
class HistogramSpec(Spec[Labels]):
    """A histogram with its bucket edges: ``Metrics.observe_many``."""

    buckets: tuple[float, ...]
    type: ClassVar[str] = "histogram"


EVENTS = CounterSpec("model_monitor_events_total", ("model", "type"),
                 "Valid events read, by model and event type.")
INVALID_EVENTS = CounterSpec("model_monitor_invalid_events_total", ("reason",),
                         "Messages rejected as bad input and sent to the dead-letter topic, by reason.")
PREDICTIONS = CounterSpec("model_monitor_predictions_total", ("model", "model_version", "status"),
                      "Predictions by status (ok, error): the success-rate SLO.")
PREDICTION_LATENCY = HistogramSpec("model_monitor_prediction_latency_seconds", ("model", "model_version"),
                               "Prediction latency; a bucket edge at 0.1 s makes the 100 ms SLO exact.",
                               buckets=LATENCY_BUCKETS)
FEEDBACK = CounterSpec("model_monitor_feedback_total", ("model", "kind"),
                   "Feedback events by kind: the negative-feedback-rate SLO.")
JOIN = CounterSpec("model_monitor_join_total", ("outcome",),
               "Feedback-to-prediction join outcomes: matched, matched_waiting, expired, evicted, orphaned.")
ALERTS = CounterSpec("model_monitor_alerts_total", ("model", "kind", "detector"),
                 "Alerts raised, by alert kind and detector.")
DETECTOR_SCORE = GaugeSpec("model_monitor_detector_score", ("model", "model_version", "kind", "feature", "detector"),
                       "Each detector's latest statistic.")
DETECTOR_THRESHOLD = GaugeSpec("model_monitor_detector_threshold",
                           ("model", "model_version", "kind", "feature", "detector"),
                           "The value each detector's score must pass to fire.")
FLAGGED_SAMPLES = CounterSpec("model_monitor_flagged_samples_total", ("model", "reason"),
                          "Samples flagged for retraining, by reason.")
REDACTIONS = CounterSpec("model_monitor_redactions_total", ("kind",),
                     "Personal data replaced (or pseudonymised) before storage, by kind: email, phone, cn_id, "
                     "cn_passport, hk_id, bank_card, ipv4, ipv6, and the kinds a recogniser of redact.recognizer "
                     "reports.")
FEATURE_TYPE_MISMATCHES = CounterSpec(
    "model_monitor_feature_type_mismatches_total", ("model",),
    "Feature values whose type differs from the feature's first one (treated as missing).")
DRIFT_TESTED_PREDICTIONS = CounterSpec(
    "model_monitor_drift_tested_predictions_total", ("model",),
    "Predictions whose features and outputs went through the drift tests: all of them, or the sample "
    "of detect.sample_rate (compare model_monitor_predictions_total).")
BOUND_ENTRIES = GaugeSpec("model_monitor_bound_entries", ("bound",),
                      "Entries held in each bounded buffer or table.")
BOUND_CAPACITY = GaugeSpec("model_monitor_bound_capacity", ("bound",),
                       "Capacity of each bounded buffer or table.")
BOUND_OVERFLOW = CounterSpec("model_monitor_bound_overflow_total", ("bound",),
                         "Entries dropped, or lumped under __other__, because a bound was full: models, "
                         "model_versions, features, categories, join_predictions, join_feedback, traffic_slices, "
                         "segment_keys, segment_values.")
BATCHES = CounterSpec("model_monitor_batches_total", (), "Batches processed.")
CHECKPOINTS = CounterSpec(
    "model_monitor_checkpoints_total", ("outcome",),
    "Pipeline state checkpoints: saved; restored at start-up (for the same partitions); seeded (another "
    "member's detectors taken; the join comes by partition); or discarded (built with other settings, "
    "or by an older version).")
CHECKPOINT_BYTES = GaugeSpec("model_monitor_checkpoint_bytes", (), "Size of the last checkpoint saved.")
JOIN_MOVES = CounterSpec(
    "model_monitor_join_moves_total", ("outcome",),
    "Partitions whose join state moved through the store: saved (at a revocation), taken (by the member "
    "now reading the partition from the saved offset), stale (saved for another offset: not used), or "
    "failed (could not be saved, and the waiting feedback is flagged unjoined; or could not be read).")
STAGE_SECONDS = CounterSpec(
    "model_monitor_stage_seconds_total", ("stage",),
    "Time spent in each stage of the hot path: fetch, decode (parse and validate), route (join, "
    "feed), detect, metrics, store (durable effects), commit.")
BATCH_DURATION = HistogramSpec("model_monitor_batch_duration_seconds", (),
                           "Time to process one batch, from decode to durable effects.", buckets=BATCH_BUCKETS)
COMMITTED_MESSAGES = CounterSpec("model_monitor_committed_messages_total", (),
                             "Messages whose offsets were committed after their effects were durable.")
CONSUMER_LAG = GaugeSpec("model_monitor_consumer_lag_messages", ("topic", "partition"),
                     "Messages behind the end of each assigned partition.")
LAST_EVENT_TIMESTAMP = GaugeSpec("model_monitor_last_event_timestamp_seconds", ("model",),
                             "Event time of the newest event of each model.")
RETRAIN_PUSHED = CounterSpec("model_monitor_retrain_pushed_total", ("model", "sink"),
                         "Flagged samples a retraining sink (queue, webhook) acknowledged.")
RETRAIN_PENDING = GaugeSpec("model_monitor_retrain_pending_samples", ("sink",),
                        "Flagged samples stored but not yet delivered to a sink.")
RETRAIN_TRIGGERS = CounterSpec("model_monitor_retrain_triggers_total", ("model", "reason"),
                           "Retrain triggers sent: weekly, severe_drift, volume.")
ERRORS = CounterSpec("model_monitor_errors_total", ("stage", "transient"),
                 "Errors by pipeline stage; transient ones are retried.")
READY = GaugeSpec("model_monitor_ready", (), "1 when /readyz answers ready, else 0.")
BUILD_INFO = GaugeSpec("model_monitor_build_info", ("version",), "Always 1; the version running.")
BROKER_OUTAGES = CounterSpec(
    "model_monitor_broker_outages_total", (),
    "Times the broker stopped answering (an offset commit or a publish failed for it, or a metadata request while "
    "fetches came back empty); /readyz says not ready (broker: ...) until it answers again.")
SEGMENT_EVENTS = CounterSpec(
    "model_monitor_segment_events_total", ("model", "segment", "value", "event"),
    "Events per segment value (segment keys and values bounded by segments.max_keys and max_values): "
    "prediction, error, slow (over slo.latency_threshold_ms), negative_feedback, label, label_error, impression, "
    "click, conversion.")
BUSINESS_EVENTS = CounterSpec("model_monitor_business_events_total", ("model", "model_version", "type"),
                          "Impressions, clicks and conversions per model version (conversion rate beside CTR).")
FAIRNESS_RATIO = GaugeSpec(
    "model_monitor_fairness_ratio", ("model", "attribute", "group", "metric", "bound"),
    "A group's rate over the reference group's, per protected attribute and metric (demographic_parity, "
    "equal_opportunity, false_positive_rate): bound estimate, lower or upper (the confidence interval).")
CANARY_VERDICT = GaugeSpec(
    "model_monitor_canary_verdict", ("model", "model_version", "baseline_version", "verdict"),
    "1 for the verdict a canary version has against its baseline (pass, fail or inconclusive), 0 for the others.")
CANARY_DIFFERENCE = GaugeSpec(
    "model_monitor_canary_difference", ("model", "model_version", "baseline_version", "metric", "bound"),
    "Canary minus baseline per metric (estimate, lower and upper of the always-valid confidence interval).")
ESTIMATED_ERROR = GaugeSpec("model_monitor_estimated_error_rate", ("model", "model_version"),
                            "Error rate expected from the last batch's calibrated scores (no labels needed).")

#: Every metric, in the order of the README's table and of the exposition.
METRICS: tuple[Spec[Any], ...] = (
    EVENTS, INVALID_EVENTS, PREDICTIONS, PREDICTION_LATENCY, FEEDBACK, JOIN, ALERTS, DETECTOR_SCORE,
    DETECTOR_THRESHOLD, FLAGGED_SAMPLES, REDACTIONS, FEATURE_TYPE_MISMATCHES, DRIFT_TESTED_PREDICTIONS,
    BOUND_ENTRIES, BOUND_CAPACITY, BOUND_OVERFLOW, BATCHES, CHECKPOINTS, CHECKPOINT_BYTES, JOIN_MOVES,
    STAGE_SECONDS, BATCH_DURATION, COMMITTED_MESSAGES, CONSUMER_LAG, LAST_EVENT_TIMESTAMP, RETRAIN_PUSHED,
    RETRAIN_PENDING, RETRAIN_TRIGGERS, ERRORS, READY, BUILD_INFO, BROKER_OUTAGES, SEGMENT_EVENTS, BUSINESS_EVENTS,
    FAIRNESS_RATIO,
    CANARY_VERDICT, CANARY_DIFFERENCE, ESTIMATED_ERROR,
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

    def __init__(self, spec: Spec[Any]) -> None:
        self.spec = spec
        self.values: dict[tuple[str, ...], float] = {}


class _Histogram:
    def __init__(self, spec: HistogramSpec[Any]) -> None:
        self.spec = spec
        self.bounds = np.asarray(spec.buckets, dtype=np.float64)
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
        self._series: dict[str, _Series | _Histogram] = {
            spec.name: _Histogram(spec) if isinstance(spec, HistogramSpec) else _Series(spec) for spec in METRICS}
        self.set(BUILD_INFO, (version,), 1)
        self._probes: dict[GaugeSpec[tuple[()]], Callable[[], float]] = {}

    def registry(self) -> CollectorRegistry:
        """A fresh registry holding these metrics and the process's (and nothing global)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, process_start_time_seconds, ...
        return registry

    def probe(self, gauge: GaugeSpec[tuple[()]], read: Callable[[], float]) -> None:
        """Read a label-less gauge from ``read`` at each scrape (e.g. readiness)."""
        self._probes[gauge] = read

    # -- updates: call with self.lock held ------------------------------------------
    def _values(self, spec: Spec[Any], labels: tuple[str, ...]) -> dict[tuple[str, ...], Any]:
        series = self._series[spec.name]
        if len(labels) != len(spec.labels):
            raise ValueError(f"{spec.name} takes labels {spec.labels}, got {labels}")
        return series.values

    def inc(self, counter: CounterSpec[Labels], labels: Labels, amount: float = 1.0) -> None:
        """Add ``amount`` to one series of a counter."""
        values = self._values(counter, labels)
        values[labels] = values.get(labels, 0.0) + amount

    def inc_many(self, counter: CounterSpec[Labels], counts: Mapping[Labels, float]) -> None:
        """Add each of ``counts`` (a batch's, by labels) to a counter."""
        for labels, amount in counts.items():
            values = self._values(counter, labels)
            values[labels] = values.get(labels, 0.0) + amount

    def set(self, gauge: GaugeSpec[Labels], labels: Labels, value: float) -> None:
        """Set one series of a gauge."""
        self._values(gauge, labels)[labels] = value

    def replace(self, gauge: GaugeSpec[Labels], values: Mapping[Labels, float]) -> None:
        """Set a gauge's series to exactly ``values``, dropping the others (e.g. lost partitions)."""
        for labels in values:
            self._values(gauge, labels)
        self._series[gauge.name].values = dict(cast(Mapping[tuple[str, ...], float], values))

    def remove_where(self, specs: Iterable[Spec[Any]], **match: str) -> None:
        """Drop the series whose labels match, e.g. those of an evicted model version."""
        for spec in specs:
            series = self._series[spec.name]
            idx = {label: spec.labels.index(label) for label in match}
            for labels in [k for k in series.values if all(k[i] == match[lab] for lab, i in idx.items())]:
                del series.values[labels]

    def observe_many(self, histogram: HistogramSpec[Labels], labels: Labels, values: np.ndarray) -> None:
        """Count ``values`` into one series of a histogram."""
        self._values(histogram, labels)
        cast(_Histogram, self._series[histogram.name]).observe_many(labels, values)

    # -- reads ----------------------------------------------------------------------
    def value(self, spec: Spec[Any] | str, labels: tuple[str, ...] = ()) -> float:
        """Current value of a counter or gauge (0.0 if never set); for tests and the demo.
        A name works too: tests speak the exposition's names."""
        with self.lock:
            series = self._series[spec if isinstance(spec, str) else spec.name]
            return float(series.values.get(labels, 0.0)) if isinstance(series, _Series) else 0.0

    def total(self, spec: Spec[Any] | str, **match: str) -> float:
        """Sum of a counter over the series whose labels match (a name works too, as in ``value``)."""
        with self.lock:
            series = self._series[spec if isinstance(spec, str) else spec.name]
            idx = {label: series.spec.labels.index(label) for label in match}
            return float(sum(v for k, v in series.values.items()
                             if isinstance(v, float | int) and all(k[i] == match[lab] for lab, i in idx.items())))

    def collect(self) -> Iterator[Metric]:
        probed = {gauge: read() for gauge, read in self._probes.items()}
        # Copy under the lock, build the families outside it: a scrape of a large
        # exposition must not hold up the batch that waits to fold in its counts.
        with self.lock:
            for gauge, value in probed.items():
                self.set(gauge, (), value)
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
