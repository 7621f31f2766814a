"""Per-model and per-version detector state, fed in batches.

A ``ModelState`` holds what is watched for one model: its versions (each with its own
reference, as a new version is a new model) and the model-wide watches. What is
watched is declared once, in ``WATCHES`` (the SLO burn rates, the error rate from late
labels, the negative-feedback rate, click-through), plus a drift ``Track`` per feature
and prediction field; budgeting, flushing, gauges, checkpoints and alerts iterate
them. During a batch the pipeline tells a model what happened (``on_prediction``,
``on_signal``, ``on_label``); ``flush`` takes a version's predictions apart column by
column (one list comprehension per feature, not a Python call per value), hands the
columns to the detectors as numpy arrays and returns what fired.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal, NamedTuple
from zlib import crc32

import numpy as np

from collectors.contract import Alert
from detectors import (
    BurnRate,
    CalibratedError,
    ChiSquareDrift,
    Detector,
    DriftShare,
    Fire,
    NumericDrift,
    RateIncrease,
    RiverAdapter,
)
from monitor.config import CanarySettings, DetectSettings, FairnessSettings, SegmentSettings, Settings
from monitor.judges import Canary, Fairness, favorable, favorable_truth
from monitor.slices import OTHER_VALUE, Pairs, SegmentIndex

Event = dict[str, Any]
#: Reference values by (model, model_version) and feature, from ``monitor baseline``.
Baselines = dict[tuple[str, str], dict[str, list[Any]]]
#: (model_version, alert kind, feature, detector label, score, threshold)
GaugeRow = tuple[str, str, str, str, float, float]
_NUMBER_TYPES = frozenset({int, float})
_CATEGORY_TYPES = frozenset({str, bool})
_NO_FEATURES: dict[str, Any] = {}


class DetectorFactory:
    """Builds each role's detector from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.d = settings.detect
        self.slo = settings.slo
        self.estimate = settings.estimate

    # Thresholds are set afterwards, from the model's false-alarm budget (ModelState.rebudget).
    def numeric(self, reference: np.ndarray | None = None) -> Detector:
        d = self.d
        return NumericDrift(d.reference_size, d.window_size, d.check_every, long_window=d.long_window,
                            long_check_every=d.long_check_every, reference=reference)

    def categorical(self, reference: np.ndarray | None = None) -> Detector:
        d = self.d
        return ChiSquareDrift(d.reference_size, d.window_size, d.check_every, max_categories=d.max_categories,
                              long_window=d.long_window, long_check_every=d.long_check_every, reference=reference)

    def rate(self) -> Detector:
        d = self.d
        return RateIncrease(warmup=d.rate_warmup, odds_ratio=d.rate_odds_ratio)

    def adwin(self) -> Detector | None:
        """River's ADWIN on a numeric feature's values, if asked for; None otherwise."""
        if not self.d.adwin_delta:
            return None
        from river import drift  # noqa: PLC0415 - only when chosen: it takes a second to import

        return RiverAdapter(drift.ADWIN(delta=self.d.adwin_delta))

    def error_rate(self) -> Detector:
        choice = self.d.decay_detector
        if choice == "cusum":
            return self.rate()
        from river import drift  # noqa: PLC0415 - only when chosen: it takes a second to import

        # 1 is an error and decay is a rise (see detectors/river_adapter.py for who needs what).
        if choice == "adwin":
            return RiverAdapter(drift.ADWIN(), rising_only=True)
        if choice == "fhddm":
            return RiverAdapter(drift.binary.FHDDM(), invert=True)
        if choice == "ddm":
            return RiverAdapter(drift.binary.DDM())
        return RiverAdapter(drift.binary.HDDMA())

    def latency_slo(self) -> Detector:
        return self._burn(self.slo.latency_objective)

    def availability_slo(self) -> Detector:
        return self._burn(self.slo.availability_objective)

    def _burn(self, objective: float) -> Detector:
        s = self.slo
        return BurnRate(objective, s.long_window, s.short_window, s.burn_factor,
                        s.slow_long_window, s.slow_short_window, s.slow_burn_factor)


class Stream:
    """One detector and the values it gets this batch, each with its stream position.

    Values come one at a time (``add``) or as arrays (``add_many``), in stream order.
    """

    __slots__ = ("chunks", "detector", "feature", "kind", "label", "positions", "values")

    def __init__(self, detector: Detector, kind: str, feature: str | None, label: str) -> None:
        self.detector = detector
        self.kind = kind
        self.feature = feature
        self.label = label
        self.positions: list[int] = []
        self.values: list[float] = []
        self.chunks: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, position: int, value: float) -> None:
        self.positions.append(position)
        self.values.append(value)

    def add_many(self, positions: np.ndarray, values: np.ndarray) -> None:
        if len(positions) == 0:
            return
        self._seal()
        self.chunks.append((positions, values))

    def _seal(self) -> None:
        if self.values:
            self.chunks.append((np.asarray(self.positions, dtype=np.int64), np.asarray(self.values, dtype=np.float64)))
            self.positions, self.values = [], []

    def flush(self) -> Iterator[tuple[int, Fire]]:
        """Run the batch through the detector; yield (stream position, fire) per fire."""
        self._seal()
        chunks, self.chunks = self.chunks, []
        if not chunks:
            return
        if len(chunks) == 1:
            positions, values = chunks[0]
        else:
            positions = np.concatenate([c[0] for c in chunks])
            values = np.concatenate([c[1] for c in chunks])
        for fire in self.detector.update_many(values.astype(np.float64, copy=False)):
            yield int(positions[fire.index]), fire

    def gauge(self, version: str) -> GaugeRow:
        return (version, self.kind, self.feature or "", self.label,
                float(self.detector.score), float(self.detector.threshold))

    def detector_name(self, fire: Fire) -> str:
        """The alert's ``detector``: the test that fired for a numeric drift detector
        (``ks``, ``folded_ks``, ``binned_chi2``), else the stream's label, with the tier
        of a slow SLO burn (``latency_burn_rate_slow``)."""
        if not fire.test:
            return self.label
        return fire.test if self.label == "numeric" else f"{self.label}_{fire.test}"


class EventTimeRate:
    """Counts trials and events per bucket of event time, for a rate fed by two topics.

    Negative feedback arrives on another topic than the predictions it is a rate
    of, so in arrival order the two interleave in bursts (one partition's batch, then
    the other's). Counting both by their own timestamps, and handing a bucket to the
    detector only when the watermark is ``lateness_s`` past its end, makes the rate
    independent of how the topics were interleaved. A closed bucket becomes its
    0/1 values with the events spread evenly, all at the position of the event
    that closed it. Events older than every open bucket count in the oldest one.

    The first ``burn_in_s`` of event time is not handed on: when the stream itself
    starts (a new model, a topic read from its beginning) the feedback on the first
    predictions has not arrived yet, and the rate looks low until it has.
    """

    __slots__ = ("buckets", "burn_in_end", "burn_in_s", "lateness_s", "stream", "width_s")

    def __init__(self, stream: Stream, width_s: float, lateness_s: float, burn_in_s: float = 0.0) -> None:
        self.stream = stream
        self.width_s = width_s
        self.lateness_s = lateness_s
        self.burn_in_s = burn_in_s
        self.burn_in_end: float | None = None  # event time before which buckets are dropped
        self.buckets: dict[int, list[int]] = {}  # bucket index -> [trials, events]

    def add(self, ts: float, trials: int, events: int) -> None:
        """Count ``trials`` and ``events`` (which may be negative: a click takes an
        impression out of the unclicked) at event time ``ts``."""
        if self.burn_in_end is None:
            self.burn_in_end = ts + self.burn_in_s
        index = int(ts // self.width_s)
        counts = self.buckets.get(index)
        if counts is None:
            if self.buckets and index < (oldest := min(self.buckets)):
                counts = self.buckets[oldest]
            else:
                counts = self.buckets[index] = [0, 0]
        counts[0] += trials
        counts[1] += events

    def add_many(self, times: Sequence[float], trials: int, events: int) -> None:
        """``add`` for each of ``times`` in turn, at numpy speed: the oldest open bucket
        does not change while buckets are only added, so each time's bucket is known at once."""
        if not len(times):
            return
        if self.burn_in_end is None:
            self.burn_in_end = times[0] + self.burn_in_s
        index = np.floor_divide(np.asarray(times, dtype=np.float64), self.width_s).astype(np.int64)
        oldest = min(self.buckets) if self.buckets else int(index[0])
        values, counts = np.unique(np.maximum(index, oldest), return_counts=True)
        for i, n in zip(values.tolist(), counts.tolist(), strict=True):
            bucket = self.buckets.get(i)
            if bucket is None:
                bucket = self.buckets[i] = [0, 0]
            bucket[0] += trials * n
            bucket[1] += events * n

    def close(self, watermark: float, position: int) -> None:
        """Hand every bucket that ended ``lateness_s`` before ``watermark`` to the stream."""
        horizon = (watermark - self.lateness_s) // self.width_s
        for index in sorted(i for i in self.buckets if i < horizon):
            trials, events = self.buckets.pop(index)
            if self.burn_in_end is not None and (index + 1) * self.width_s <= self.burn_in_end:
                continue
            events = min(max(events, 0), trials)
            values = np.zeros(trials)
            if events:  # spread the 1s evenly among the 0s
                values[(np.arange(events) * (trials / events)).astype(np.int64)] = 1.0
            self.stream.add_many(np.full(trials, position, dtype=np.int64), values)


class Track:
    """A feature or a prediction field: its value drift and (for features) its missing rate.

    The value type is fixed by the first non-null value: a number makes a numeric
    track, a string or boolean a categorical one. A value of the other type later is
    counted as a mismatch and treated as missing.
    """

    __slots__ = ("baseline", "categorical", "changed", "codes", "factory", "feature", "folded", "kind",
                 "max_codes", "mean", "mismatches", "missing", "value")

    def __init__(self, feature: str, kind: str, factory: DetectorFactory, with_missing: bool,
                 changed: Callable[[], None], baseline: list[Any] | None = None) -> None:
        self.feature = feature
        self.kind = kind  # alert kind: data_drift or prediction_drift
        self.factory = factory
        self.changed = changed  # called when a detector is added
        self.baseline = baseline  # reference values from `monitor baseline`, if any
        self.value: Stream | None = None
        self.missing = Stream(factory.rate(), kind, feature, "missing_rate") if with_missing else None
        self.mean: Stream | None = None  # river's ADWIN, when detect.adwin_delta asks for it
        self.categorical = False  # decided by the first non-null value
        self.codes: dict[Any, int] = {}  # category -> code, for a categorical track
        self.max_codes = factory.d.max_categories - 1
        self.mismatches = 0
        self.folded = 0  # values of categories past detect.max_categories (they share one code)

    def add_column(self, positions: np.ndarray, column: Sequence[Any]) -> None:
        """Take in this batch's values (None where missing), one per stream position.

        A column of one type, the usual case, goes to numpy in one call; a mixed one
        (nulls, a value of the other type) is sorted out value by value.
        """
        types = set(map(type, column))
        if self.value is None:
            first = next((v for v in column if v is not None), None)
            if first is None:
                self._missing(positions, np.ones(len(column)))
                return
            self.value = self._start(first)
        if not self.categorical and types <= _NUMBER_TYPES:
            values = np.array(column, dtype=np.float64)
            self.value.add_many(positions, values)
            if self.mean is not None:
                self.mean.add_many(positions, values)
            self._missing(positions, np.zeros(len(column)))
            return
        if self.categorical and types <= _CATEGORY_TYPES:
            get = self.codes.get
            codes = [get(v, -1) for v in column]
            if -1 in codes:  # categories not seen before (or past max_categories)
                codes = [self._code(v) for v in column]
            self.value.add_many(positions, np.array(codes, dtype=np.float64))
            self._missing(positions, np.zeros(len(column)))
            return
        self._add_mixed(positions, column)

    def _add_mixed(self, positions: np.ndarray, column: Sequence[Any]) -> None:
        accepted = _CATEGORY_TYPES if self.categorical else _NUMBER_TYPES
        present = np.array([type(v) in accepted for v in column], dtype=bool)
        self.mismatches += sum(1 for v in column if v is not None and type(v) not in accepted)
        kept = [v for v in column if type(v) in accepted]
        if kept:
            stream = self.value
            assert stream is not None
            if self.categorical:
                stream.add_many(positions[present], np.array([self._code(v) for v in kept], dtype=np.float64))
            else:
                values = np.array(kept, dtype=np.float64)
                stream.add_many(positions[present], values)
                if self.mean is not None:
                    self.mean.add_many(positions[present], values)
        self._missing(positions, (~present).astype(np.float64))

    def _missing(self, positions: np.ndarray, missing: np.ndarray) -> None:
        if self.missing is not None:
            self.missing.add_many(positions, missing)

    def _code(self, value: Any) -> int:
        """The category's code; past max_categories - 1 categories, all share the last."""
        codes = self.codes
        code = codes.get(value)
        if code is None:
            code = len(codes) if len(codes) < self.max_codes else self.max_codes
            if code < self.max_codes:
                codes[value] = code
            else:
                self.folded += 1
        return code

    def _start(self, value: Any) -> Stream:
        baseline = self.baseline or []
        if type(value) is str or type(value) is bool:
            self.categorical = True
            # The baseline's categories get their codes first, in its order.
            codes = [self._code(v) for v in baseline if type(v) is str or type(v) is bool]
            stream = Stream(self.factory.categorical(np.asarray(codes) if codes else None), self.kind,
                            self.feature, "chi_square")
        else:
            numbers = [v for v in baseline if type(v) is float or type(v) is int]
            stream = Stream(self.factory.numeric(np.asarray(numbers, dtype=np.float64) if numbers else None),
                            self.kind, self.feature, "numeric")
            adwin = self.factory.adwin()
            if adwin is not None:
                self.mean = Stream(adwin, self.kind, self.feature, "adwin")
        self.value = stream
        self.changed()
        return stream

    def streams(self) -> Iterator[Stream]:
        if self.value is not None:
            yield self.value
        if self.mean is not None:
            yield self.mean
        if self.missing is not None:
            yield self.missing


class PredictionColumns(NamedTuple):
    """A version's predictions of one batch as columns: what per-prediction watches read."""

    positions: np.ndarray  # int64, every prediction
    latency_ms: np.ndarray  # float64, NaN where the event had none
    failed: np.ndarray  # float64, 1.0 where the status was "error"
    latency_threshold_ms: float


def _slow(c: PredictionColumns) -> tuple[np.ndarray, np.ndarray]:
    timed = ~np.isnan(c.latency_ms)
    return c.positions[timed], (c.latency_ms[timed] > c.latency_threshold_ms).astype(np.float64)


def _failed(c: PredictionColumns) -> tuple[np.ndarray, np.ndarray]:
    return c.positions, c.failed


@dataclass(frozen=True)
class Watch:
    """One kind of watched stream, declared once in ``WATCHES``.

    What it watches (the alert's ``kind``, ``feature`` and ``detector``), where it lives
    (``scope``: one per model version, or one per model), how it is fed, and its
    detector (``make``, from the ``DetectorFactory``). Budgeting, flushing, gauges,
    checkpoints and alerts iterate the registry, so adding a watch is one entry here
    (and its detector class, if new). How a watch is fed:

    - ``per_prediction``: from the columns of the version's predictions of the batch
      (every prediction, not the drift sample), returning (positions, values);
    - ``from_labels``: the late labels' errors (1 = wrong) of the version;
    - ``counts``: in event-time buckets (a model-wide rate fed by more than one topic):
      signal name to the (trials, events) it adds; signals are the tracking event types
      (``prediction``, ``impression``, ``click``, ``conversion``), ``feedback``,
      ``feedback:KIND`` and ``negative_feedback``.

    ``segmented``: the watch also runs per watched segment value (``monitor.slices``), fed
    by the events of that slice: counts by the event's own segment (feedback by its
    prediction's), labels by their prediction's segment.

    Feature and prediction-field drift is watched per field (``Track``), on the sample
    of ``detect.sample_rate``.

    For example, a drop of conversions per impression, model-wide::

        Watch("unconverted", "metric_decay", None, "conversion_rate", DetectorFactory.rate, scope="model",
              counts={"impression": (1, 1), "conversion": (0, -1)})
    """

    name: str
    kind: str
    feature: str | None
    detector: str
    make: Callable[[DetectorFactory], Detector]
    scope: Literal["version", "model"] = "version"
    per_prediction: Callable[[PredictionColumns], tuple[np.ndarray, np.ndarray]] | None = None
    from_labels: bool = False
    counts: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    segmented: bool = False

    def stream(self, factory: DetectorFactory) -> Stream:
        return Stream(self.make(factory), self.kind, self.feature, self.detector)


#: Every stream watched besides the per-field drift tracks.
WATCHES: tuple[Watch, ...] = (
    Watch("latency", "slo_burn", "latency_ms", "latency_burn_rate", DetectorFactory.latency_slo,
          per_prediction=_slow),
    Watch("availability", "slo_burn", "status", "availability_burn_rate", DetectorFactory.availability_slo,
          per_prediction=_failed),
    Watch("errors", "metric_decay", None, "error_rate", DetectorFactory.error_rate, from_labels=True,
          segmented=True),
    # Negative feedback per prediction: both count as trials, so the rate is of the two topics together.
    Watch("negatives", "feedback_spike", None, "negative_feedback_rate", DetectorFactory.rate, scope="model",
          counts={"prediction": (1, 0), "negative_feedback": (1, 1)}, segmented=True),
    # Click-through: a 1 is an impression nobody clicked, so a CTR drop is a rise.
    Watch("unclicked", "metric_decay", None, "ctr", DetectorFactory.rate, scope="model",
          counts={"impression": (1, 1), "click": (0, -1)}, segmented=True),
    # Conversions per impression and per click: a model can keep its accuracy and lose the business.
    Watch("unconverted", "metric_decay", None, "conversion_rate", DetectorFactory.rate, scope="model",
          counts={"impression": (1, 1), "conversion": (0, -1)}, segmented=True),
    Watch("clicked_unconverted", "metric_decay", None, "click_conversion_rate", DetectorFactory.rate,
          scope="model", counts={"click": (1, 1), "conversion": (0, -1)}, segmented=True),
)


class Firing(NamedTuple):
    """A detector that fired, before it becomes an ``Alert`` (which needs the event at ``position``)."""

    kind: str
    feature: str | None
    detector: str
    version: str
    position: int
    score: float
    threshold: float
    segment: tuple[str, str] | None = None  # (key, value) of a slice's detector
    baseline: str | None = None  # the version a canary was compared with


class WatchSet:
    """The watches fed by counts and by labels, of a whole model or of one slice of it.

    Counts go through event-time buckets (``EventTimeRate``: the rate of two topics does
    not depend on how they interleave); labels straight to their detector.
    """

    __slots__ = ("labelled", "pending", "rates", "signals", "watched")

    def __init__(self, watches: Sequence[Watch], factory: DetectorFactory) -> None:
        d = factory.d
        self.watched: dict[str, Stream] = {w.name: w.stream(factory) for w in watches}
        self.rates: dict[str, EventTimeRate] = {
            w.name: EventTimeRate(self.watched[w.name], d.feedback_bucket_s, d.feedback_lateness_s,
                                  d.feedback_burn_in_s) for w in watches if w.counts}
        #: Signal name to the (rate, trials, events) it adds to.
        self.signals: dict[str, list[tuple[EventTimeRate, int, int]]] = {}
        for w in watches:
            for signal, (trials, events) in w.counts.items():
                self.signals.setdefault(signal, []).append((self.rates[w.name], trials, events))
        self.labelled = [self.watched[w.name] for w in watches if w.from_labels]
        #: Event times of predictions not yet counted (appended per prediction): counted together,
        #: in order, before anything else reaches the rates.
        self.pending: list[float] = []

    def count_pending(self) -> None:
        if self.pending:
            times, self.pending = self.pending, []
            for rate, trials, events in self.signals.get("prediction", ()):
                rate.add_many(times, trials, events)

    def on_signal(self, signal: str, event_time: float) -> None:
        self.count_pending()
        for rate, trials, events in self.signals.get(signal, ()):
            rate.add(event_time, trials, events)

    def on_label(self, position: int, error: float) -> None:
        for stream in self.labelled:
            stream.add(position, error)

    def close(self, watermark: float, position: int) -> bool:
        """Hand complete buckets to their detectors; whether any rate had buckets open."""
        self.count_pending()
        touched = False
        for rate in self.rates.values():
            if rate.buckets:
                rate.close(watermark, position)
                touched = True
        return touched


#: What ``model_monitor_segment_events_total`` counts per slice (its ``event`` label).
SEGMENT_EVENT_NAMES = ("prediction", "error", "slow", "negative_feedback", "label", "label_error", "impression",
                       "click", "conversion")
_SEGMENT_EVENT = {name: i for i, name in enumerate(SEGMENT_EVENT_NAMES)}


class SliceState:
    """One watched segment value of a model: its counts, and (unless it is ``__other__``
    or ``segments.detectors`` is off) the segmented watches and, for ``segments.drift_keys``,
    feature drift tracks of its own."""

    __slots__ = ("counts", "tracks", "watches")

    def __init__(self, watches: WatchSet | None, tracks: VersionState | None) -> None:
        self.watches = watches
        self.tracks = tracks
        self.counts = [0] * len(SEGMENT_EVENT_NAMES)  # this batch's, taken by the pipeline for the metric

    def count(self, event: str, n: int = 1) -> None:
        self.counts[_SEGMENT_EVENT[event]] += n

    def streams(self) -> Iterator[Stream]:
        if self.watches is not None:
            yield from self.watches.watched.values()
        if self.tracks is not None:
            yield from self.tracks.sampled_streams()

    def take_counts(self) -> list[int]:
        counts, self.counts = self.counts, [0] * len(SEGMENT_EVENT_NAMES)
        return counts


def scores_of(events: Sequence[Event]) -> np.ndarray:
    """Each prediction's ``prediction.score`` (NaN where it has none or it is not a number)."""
    out = [(e.get("prediction") or _NO_FEATURES).get("score") for e in events]
    return np.array([v if type(v) is float or type(v) is int else np.nan for v in out], dtype=np.float64)


class Estimate:
    """A version's error rate estimated without labels (confidence-based, as CBPE).

    Its scores are calibrated on its first ``estimate.reference_labels`` late labels
    (``detectors.CalibratedError``); from then on each prediction's expected error goes
    to a Bernoulli CUSUM (``estimated_decay``) before any label for it arrives. The
    expected errors become 0/1 values by carrying the fraction over (their running sum
    is kept exact: a 1 whenever it passes a whole number), so the detector sees the
    expected count of errors, spread evenly: less noisy than real errors, so its
    false-alarm rate is at most that of the label-based detector.
    Assumes the scores stay calibrated (no concept shift): only covariate shift is seen.
    """

    __slots__ = ("calibration", "carry", "last", "stream")

    def __init__(self, factory: DetectorFactory) -> None:
        e = factory.estimate
        self.calibration = CalibratedError(e.reference_labels, e.bins, factory.d.decision_threshold)
        self.carry = 0.0
        self.last = math.nan  # the mean expected error of the last batch, for the gauge
        self.stream: Stream | None = None

    def add_label(self, score: float, truth: int) -> bool:
        """Take a labelled score for the calibration; True when it completes it."""
        if self.calibration.fitted:
            return False
        self.calibration.add_labels(np.array([score], dtype=np.float64), np.array([truth], dtype=np.float64))
        return self.calibration.fitted

    def add_scores(self, positions: np.ndarray, scores: np.ndarray) -> None:
        if self.stream is None:
            return
        scored = ~np.isnan(scores)
        expected = self.calibration.expected_error(scores[scored])
        if not len(expected):
            return
        self.last = float(expected.mean())
        running = self.carry + np.cumsum(expected)
        whole = np.floor(running)
        ones = np.diff(np.concatenate(([math.floor(self.carry)], whole))) > 0
        self.carry = float(running[-1] - whole[-1])
        self.stream.add_many(positions[scored], ones.astype(np.float64))


class VersionState:
    """Everything watched for one model version."""

    def __init__(self, factory: DetectorFactory, max_features: int, latency_threshold_ms: float,
                 watches: Sequence[Watch], baseline: dict[str, list[Any]] | None = None) -> None:
        self.factory = factory
        self.baseline = baseline or {}
        self.max_features = max_features
        self.latency_threshold_ms = latency_threshold_ms
        self.features: dict[str, Track] = {}
        self.outputs: dict[str, Track] = {}
        self.watches = tuple(w for w in watches if w.scope == "version")
        self.watched: dict[str, Stream] = {w.name: w.stream(factory) for w in self.watches}
        self.dropped_features = 0
        self.sampled = 0  # predictions handed to the feature and output tracks
        self.pending: list[Event] = []  # this batch's predictions, until ingest
        self.pending_positions: list[int] = []
        self.tests_added = False  # a track started a test: the model's budget must be shared again
        d = factory.d
        self.share = DriftShare(d.drift_share, d.drift_share_window) if d.drift_share else None
        self.estimate = Estimate(factory) if factory.estimate.enabled and self.watches else None
        self.served = 0  # predictions, for the baseline of canaries (the version with most traffic)
        self.keep_columns = False  # a canary comparison wants this batch's columns
        self.columns: PredictionColumns | None = None
        self.scores: np.ndarray | None = None

    def changed(self) -> None:
        self.tests_added = True

    def observe(self, event: Event, position: int) -> None:
        """Take in one prediction event (it reaches the detectors at ``ingest``)."""
        self.pending_positions.append(position)
        self.pending.append(event)

    def on_calibration_label(self, score: float, truth: int) -> None:
        """A late label of a scored binary prediction, for the label-free estimate."""
        if self.estimate is not None and self.estimate.add_label(score, truth):
            self.estimate.stream = Stream(self.factory.rate(), "estimated_decay", None, "estimated_error_rate")
            self.changed()

    def on_label(self, position: int, error: float) -> None:
        """A late label said the prediction at ``position`` was wrong (1) or right (0)."""
        for watch in self.watches:
            if watch.from_labels:
                self.watched[watch.name].add(position, error)

    def ingest(self) -> np.ndarray:
        """Hand this batch's predictions to the detectors, column by column; return their
        latencies in seconds (for the histogram)."""
        events, self.pending = self.pending, []
        positions = np.asarray(self.pending_positions, dtype=np.int64)
        self.pending_positions = []
        if not events:
            return np.empty(0)
        tested = positions
        rate = self.factory.d.sample_rate
        if rate < 1.0:  # the watches take every event, the tracks the sample
            ids, latencies, statuses = zip(*[(e["event_id"], e.get("latency_ms"), e.get("status"))
                                            for e in events], strict=True)
            kept = in_sample(ids, rate)
            tested = positions[kept]
            features = [events[i].get("features") or _NO_FEATURES for i in kept]
            outputs = [events[i].get("prediction") or _NO_FEATURES for i in kept]
        else:
            # One pass over the events (scattered in memory), not one per field.
            features, outputs, latencies, statuses = zip(*[
                (e.get("features") or _NO_FEATURES, e.get("prediction") or _NO_FEATURES, e.get("latency_ms"),
                 e.get("status")) for e in events], strict=True)
        if len(tested):
            self._take(self.features, features, tested, "data_drift", "", True)
            self._take(self.outputs, outputs, tested, "prediction_drift", "prediction.", False)
            self.sampled += len(tested)
        if None in latencies:
            latency = np.array([np.nan if v is None else v for v in latencies], dtype=np.float64)
        else:
            latency = np.array(latencies, dtype=np.float64)
        failed = np.zeros(len(events))
        if "error" in statuses:
            failed[[i for i, status in enumerate(statuses) if status == "error"]] = 1.0
        columns = PredictionColumns(positions, latency, failed, self.latency_threshold_ms)
        for watch in self.watches:
            if watch.per_prediction is not None:
                self.watched[watch.name].add_many(*watch.per_prediction(columns))
        estimating = self.estimate is not None and self.estimate.stream is not None
        if estimating or self.keep_columns:
            scores = scores_of(events)
            if estimating and self.estimate is not None:
                self.estimate.add_scores(positions, scores)
            if self.keep_columns:
                self.columns, self.scores = columns, scores
        return latency[~np.isnan(latency)] / 1000.0 if None in latencies else latency / 1000.0

    def _take(self, tracks: dict[str, Track], rows: Sequence[dict[str, Any]], positions: np.ndarray, kind: str,
              prefix: str, with_missing: bool) -> None:
        """Feed each track its column; start tracks for names seen for the first time."""
        columns = _same_keys_columns(rows, tracks.keys())
        if columns is not None:  # the usual batch: every row has exactly the tracked names
            for track, column in zip(tracks.values(), columns, strict=True):
                track.add_column(positions, column)
            return
        names = set().union(*rows)
        first_row: dict[str, int] = {}  # a track started this batch begins where its name first shows
        if not names <= tracks.keys():
            untracked = names - tracks.keys()
            for i, row in enumerate(rows):  # first come, first tracked, up to max_features
                for name in row:
                    if name in untracked and name not in tracks and len(tracks) < self.max_features:
                        tracks[name] = Track(f"{prefix}{name}", kind, self.factory, with_missing, self.changed,
                                             self.baseline.get(f"{prefix}{name}"))
                        first_row[name] = i
                        self.changed()
            if with_missing:  # the prediction's own fields are not features: no bound to count
                self.dropped_features += sum(name not in tracks for row in rows for name in row)
        for name, track in tracks.items():
            start = first_row.get(name, 0)
            values = [row.get(name) for row in (rows[start:] if start else rows)]
            track.add_column(positions[start:], values)

    def streams(self) -> Iterator[Stream]:
        yield from self.sampled_streams()
        yield from self.every_event_streams()

    def sampled_streams(self) -> Iterator[Stream]:
        """The feature and output tracks' streams: fed the sample of ``detect.sample_rate``."""
        for track in self.features.values():
            yield from track.streams()
        for track in self.outputs.values():
            yield from track.streams()

    def every_event_streams(self) -> Iterator[Stream]:
        """The watched streams (``WATCHES``): fed every prediction (and every late label); and
        the label-free estimate once calibrated."""
        yield from self.watched.values()
        if self.estimate is not None and self.estimate.stream is not None:
            yield self.estimate.stream

    @property
    def mismatches(self) -> int:
        return sum(t.mismatches for t in self.features.values()) + sum(t.mismatches for t in self.outputs.values())

    @property
    def folded_categories(self) -> int:
        return sum(t.folded for t in self.features.values()) + sum(t.folded for t in self.outputs.values())


def in_sample(event_ids: Sequence[str], rate: float) -> np.ndarray:
    """Indices of the events in the sample of ``rate``: those whose event_id hashes below
    ``rate`` of the 32-bit range. An event is in or out whatever batch, replay or member
    of the group reads it, and no pattern in the order of the stream can bias the sample.

    >>> in_sample(["p-1", "p-2", "p-3", "p-4"], 0.5).tolist()
    [3]
    >>> len(in_sample([f"p-{i}" for i in range(100_000)], 0.25))  # about a quarter
    25082
    """
    h = np.fromiter((crc32(i.encode()) for i in event_ids), dtype=np.uint64, count=len(event_ids))
    # CRC-32 is linear: ids that differ in a digit get hashes in a regular pattern.
    # MurmurHash3's 32-bit finaliser (a bijection) scatters them.
    mask = np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & mask
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & mask
    h ^= h >> np.uint64(16)
    return np.flatnonzero(h < np.uint64(rate * 2**32))


def _same_keys_columns(rows: Sequence[dict[str, Any]], names: KeysView[str]) -> list[tuple[Any, ...]] | None:
    """The rows' values as one column per name, if every row holds exactly ``names``; else None.

    One pass over the rows: they are scattered in memory, and a pass per name would
    fetch each row again (in the daemon that costs more than the lookups).

    >>> _same_keys_columns([{"a": 1, "b": "x"}, {"b": "y", "a": 2}], {"a": 0, "b": 0}.keys())
    [(1, 2), ('x', 'y')]
    >>> _same_keys_columns([{"a": 1}, {"a": 2, "c": 3}], {"a": 0}.keys()) is None
    True
    """
    if not names or not rows:
        return None
    width = len(names)
    get = itemgetter(*names)
    try:
        values = list(map(get, rows))
    except KeyError:
        return None
    if max(map(len, rows)) != width:  # a row with a name not tracked
        return None
    return list(zip(*values, strict=True)) if width > 1 else [tuple(values)]


class ModelState:
    """One model: its versions (least recently seen dropped first) and model-wide watches.

    The pipeline tells it what happened (``on_prediction``, ``on_signal``, ``on_label``)
    and takes what it made (``flush``, ``take_latencies``, ``take_evicted``,
    ``end_batch``); it never reaches into the pipeline.
    """

    def __init__(self, name: str, detect: DetectSettings, latency_threshold_ms: float, factory: DetectorFactory,
                 baselines: Baselines | None = None, watches: Sequence[Watch] = WATCHES,
                 segments: SegmentSettings | None = None, canary: CanarySettings | None = None,
                 fairness: FairnessSettings | None = None) -> None:
        self.name = name
        self.baselines = baselines or {}
        # Only the settings that shape the detectors: the state is checkpointed, and a
        # whole Settings would carry secrets (kafka.sasl_password, the store URL) into it.
        self.detect = detect
        self.latency_threshold_ms = latency_threshold_ms
        self.factory = factory
        self.watches = tuple(watches)
        self.versions: OrderedDict[str, VersionState] = OrderedDict()
        d = detect
        self.model_watches = WatchSet([w for w in self.watches if w.scope == "model"], factory)
        self.segmented = tuple(w for w in self.watches if w.segmented)
        sg = self.segment_settings = segments or SegmentSettings(max_keys=0)
        self.segments = SegmentIndex(sg.keys, sg.max_keys, sg.max_values)
        self.slices: dict[tuple[str, str], SliceState] = {}
        self.slices_changed = False  # a slice's tests came or went: the budget must be shared again
        self.evicted_slices: list[tuple[str, str]] = []  # for the pipeline to clear their series
        # Only what judges canaries: the rollback webhook's URL and secret stay out of the checkpoint.
        self.canary_settings = dataclasses.replace(canary or CanarySettings(enabled=False), rollback_webhook_url="",
                                                   rollback_webhook_secret="", rollback_webhook_secret_file="")
        self.canaries: OrderedDict[str, Canary] = OrderedDict()  # by canary version
        self.warming = False  # a canary waits for min_samples predictions of both versions
        self.ended_canaries: list[tuple[str, str]] = []  # (version, baseline), for the pipeline to clear
        self.fairness_settings = fairness or FairnessSettings()
        self.fairness = {a: Fairness(a, self.fairness_settings, max(sg.max_values, 2))
                         for a in self.fairness_settings.attributes}
        self.recent: deque[tuple[int, Event]] = deque(maxlen=d.drift_window)
        self.batch_recent: list[tuple[int, Event]] = []
        self.latencies: dict[str, np.ndarray] = {}  # seconds, by version, this batch
        self.evicted: list[str] = []  # versions dropped this batch, for the pipeline to clear their series
        self.last_version = ""
        self.last_ts = 0.0
        self._retired_dropped = 0  # of evicted versions: the counters must never go down
        self._retired_mismatches = 0
        self._retired_sampled = 0
        self._retired_folded = 0
        self._evicted_versions = 0

    @property
    def watched(self) -> dict[str, Stream]:
        """The model-wide watched streams, by watch name."""
        return self.model_watches.watched

    # -- what happened ------------------------------------------------------------------
    def on_prediction(self, version: str, event: Event, position: int, event_time: float, pairs: Pairs = ()) -> None:
        """A prediction; ``pairs``: its segment as (key, value as text) pairs."""
        state = self.versions.get(version)
        if state is None or next(reversed(self.versions)) != version:
            state = self.version(version)
        state.pending_positions.append(position)
        state.pending.append(event)
        state.served += 1
        self.last_version = version
        if self.warming:
            self._warm_canaries(position)
        for rate, trials, events in self.model_watches.signals.get("prediction", ()):  # on_signal, inlined
            rate.add(event_time, trials, events)
        self.batch_recent.append((position, event))
        self.last_ts = max(self.last_ts, event["ts"])
        if pairs and self.segment_settings.max_keys:
            self._slice_prediction(event, position, event_time, pairs)
        if pairs and self.fairness:
            outcome = favorable(event.get("prediction"), self.fairness_settings)
            if outcome is not None:
                for key, value in pairs:
                    judge = self.fairness.get(key)
                    if judge is not None:
                        judge.add("demographic_parity", position, value, outcome)

    def _slice_prediction(self, event: Event, position: int, event_time: float, pairs: Pairs) -> None:
        failed = event.get("status") == "error"
        latency = event.get("latency_ms")
        slow = latency is not None and latency > self.latency_threshold_ms
        for pair in self.segments.admit(pairs):
            state = self.slices.get(pair) or self._slice(pair)
            counts = state.counts
            counts[0] += 1  # SEGMENT_EVENT_NAMES: prediction, error, slow
            counts[1] += failed
            counts[2] += slow
            if state.watches is not None:
                state.watches.pending.append(event_time)  # on_prediction, inlined: every prediction
            if state.tracks is not None:
                state.tracks.observe(event, position)
        if self.segments.evicted:
            for pair in self.segments.take_evicted():
                self.slices.pop(pair, None)
                self.evicted_slices.append(pair)
            self.slices_changed = True

    def _slice(self, pair: tuple[str, str]) -> SliceState:
        sg = self.segment_settings
        watched = sg.detectors and pair[1] != OTHER_VALUE
        drift = pair[0] in sg.drift_keys and pair[1] != OTHER_VALUE
        state = self.slices[pair] = SliceState(
            WatchSet(self.segmented, self.factory) if watched else None,
            VersionState(self.factory, self.detect.max_features, self.latency_threshold_ms, ()) if drift else None)
        self.slices_changed = self.slices_changed or watched or drift
        return state

    def on_signal(self, signal: str, event_time: float, pairs: Pairs = ()) -> None:
        """Count ``signal`` (an event type, ``negative_feedback``, ...) in the rates that
        watch it; ``pairs``: the segment of the event, for the slices' rates."""
        self.model_watches.on_signal(signal, event_time)
        if pairs and self.segment_settings.max_keys:
            self.on_slice_signal(signal, event_time, pairs)

    def on_slice_signal(self, signal: str, event_time: float, pairs: Pairs) -> None:
        """Count ``signal`` in the slices of ``pairs`` only (negative feedback, by its prediction's segment)."""
        for pair in self.segments.lookup(pairs):
            state = self.slices.get(pair) or self._slice(pair)
            state.count(signal)
            if state.watches is not None:
                state.watches.on_signal(signal, event_time)

    def on_label(self, version: str, position: int, error: float, pairs: Pairs = (), score: float | None = None,
                 truth: Any = None, outputs: Any = None) -> None:
        """A late label at ``position`` said the prediction of ``version`` was wrong (1) or
        right (0); its prediction's segment ``pairs``, ``score`` and ``outputs`` and the
        label's ``truth``, for the slices, the estimate and fairness."""
        versioned = self.version(version)
        versioned.on_label(position, error)
        if score is not None and (type(truth) is bool or truth in (0, 1)):
            versioned.on_calibration_label(score, int(truth))
        if self.canaries:
            self._canary_value("error_rate", version, np.array([position]), np.array([error]))
        if pairs and self.fairness:
            self._fairness_label(position, pairs, truth, outputs)
        if pairs and self.segment_settings.max_keys:
            for pair in self.segments.lookup(pairs):
                state = self.slices.get(pair) or self._slice(pair)
                state.count("label")
                state.count("label_error", int(error))
                if state.watches is not None:
                    state.watches.on_label(position, error)

    def on_negative_feedback(self, version: str, position: int) -> None:
        """Negative feedback joined to a prediction of ``version``: for its canary comparison."""
        self._canary_value("negative_feedback_rate", version, np.array([position]), np.ones(1))

    def _fairness_label(self, position: int, pairs: Pairs, truth: Any, outputs: Any) -> None:
        settings = self.fairness_settings
        predicted, right = favorable(outputs, settings), favorable_truth(truth, settings)
        if predicted is None or right is None:
            return
        # Among those who deserved the favourable outcome: how often they got it (true-positive
        # rate); among those who did not: how often they got it anyway (false-positive rate).
        metric = "equal_opportunity" if right else "false_positive_rate"
        for key, value in pairs:
            judge = self.fairness.get(key)
            if judge is not None:
                judge.add(metric, position, value, predicted)

    # -- canaries ---------------------------------------------------------------------------
    def _start_canary(self, version: str) -> None:
        """A new version while others are served: compare it with the baseline, once both
        have served ``canary.min_samples`` predictions (``_warm_canaries``)."""
        c = self.canary_settings
        if not c.enabled or not self.versions:
            return
        baseline = c.baseline_of(self.name)
        if baseline == version:  # the configured baseline itself is never a canary
            return
        if baseline is None or baseline not in self.versions:
            baseline = max(self.versions, key=lambda v: self.versions[v].served)
        if len(self.canaries) >= c.max_canaries:
            old, dropped = self.canaries.popitem(last=False)
            self.ended_canaries.append((old, dropped.baseline))
        self.canaries[version] = Canary(version, baseline, c)
        self.warming = True

    def _warm_canaries(self, position: int) -> None:
        """Start the comparisons whose versions have both served ``min_samples`` predictions,
        at this prediction: the baseline is then the one that served more (unless configured),
        whichever came first. Decided at an event of the stream, as every batching must."""
        least, configured = self.canary_settings.min_samples, self.canary_settings.baseline_of(self.name)
        waiting = False
        for canary in list(self.canaries.values()):
            if canary.started_at >= 0:
                continue
            new, old = self.versions.get(canary.version), self.versions.get(canary.baseline)
            if new is None or old is None or min(new.served, old.served) < least:
                waiting = True
                continue
            if configured != canary.baseline and new.served > old.served:  # the newcomer carries more
                del self.canaries[canary.version]
                canary.version, canary.baseline = canary.baseline, canary.version
                if canary.version in self.canaries:  # already judged the other way round
                    continue
                self.canaries[canary.version] = canary
            canary.started_at = position
            for version in (canary.version, canary.baseline):
                self.versions[version].keep_columns = True
        self.warming = waiting

    def _end_canaries(self, version: str) -> None:
        """``version`` is no longer tracked: so ends every comparison it is part of."""
        for canary in [c for c in self.canaries.values() if version in (c.version, c.baseline)]:
            del self.canaries[canary.version]
            self.ended_canaries.append((canary.version, canary.baseline))

    def _canary_value(self, metric: str, version: str, positions: np.ndarray, values: np.ndarray) -> None:
        for canary in self.canaries.values():
            if version == canary.version:
                canary.add(metric, positions, values, True)
            elif version == canary.baseline:
                canary.add(metric, positions, values, False)

    def _feed_canaries(self) -> None:
        """This batch's predictions of the compared versions, column by column."""
        compared = {v for c in self.canaries.values() for v in (c.version, c.baseline)}
        for version in compared:
            state = self.versions.get(version)
            if state is None or state.columns is None:
                continue
            c, scores = state.columns, state.scores
            state.columns = state.scores = None
            timed = ~np.isnan(c.latency_ms)
            self._canary_value("availability", version, c.positions, c.failed)
            self._canary_value("latency", version, c.positions[timed],
                               (c.latency_ms[timed] > c.latency_threshold_ms).astype(np.float64))
            self._canary_value("negative_feedback_rate", version, c.positions, np.zeros(len(c.positions)))
            if scores is not None:
                scored = ~np.isnan(scores)
                self._canary_value("prediction.score", version, c.positions[scored], scores[scored])

    def judgements(self) -> tuple[list[tuple[str, str, str, list[tuple[str, float, float, float]]]],
                                  list[tuple[str, str, str, float, float, float]]]:
        """For the gauges: each canary's (version, baseline, verdict, differences) and each
        fairness ratio as (attribute, metric, group, ratio, lower, upper)."""
        canaries = [(c.version, c.baseline, c.verdict, list(c.differences())) for c in self.canaries.values()]
        ratios = [(a, *row) for a, judge in self.fairness.items() for row in judge.ratios()]
        return canaries, ratios

    def take_ended_canaries(self) -> list[tuple[str, str]]:
        ended, self.ended_canaries = self.ended_canaries, []
        return ended

    def close_buckets(self, watermark: float, position: int) -> bool:
        """Hand the rates' complete buckets to their detectors; whether any rate had buckets open."""
        touched = self.model_watches.close(watermark, position)
        for state in self.slices.values():
            if state.watches is not None and state.watches.close(watermark, position):
                touched = True
        return touched

    # -- what it made ---------------------------------------------------------------------
    def end_batch(self) -> None:
        """The batch's predictions become the recent ones drift samples are drawn from."""
        self.recent.extend(self.batch_recent)
        self.batch_recent = []

    def recent_events(self, upto: int) -> list[Event]:
        """The recent predictions (this batch's too) at or before stream position ``upto``."""
        return [e for p, e in (*self.recent, *self.batch_recent) if p <= upto]

    def forget_positions(self) -> None:
        """Drop what is tied to positions of the stream the state was read from (a state
        taken over by another member of the group)."""
        self.recent.clear()

    def take_latencies(self) -> dict[str, np.ndarray]:
        latencies, self.latencies = self.latencies, {}
        return latencies

    def take_slice_counts(self) -> Iterator[tuple[tuple[str, str], list[int]]]:
        """Each slice's counts since the last call (``SEGMENT_EVENT_NAMES``), for the metric."""
        for pair, state in self.slices.items():
            if any(state.counts):
                yield pair, state.take_counts()

    def take_evicted_slices(self) -> list[tuple[str, str]]:
        evicted, self.evicted_slices = self.evicted_slices, []
        return evicted

    def take_evicted(self) -> list[str]:
        evicted, self.evicted = self.evicted, []
        return evicted

    def rebudget(self) -> None:
        """Share the model's false-alarm budget equally among its tests (Bonferroni): each
        test aims at false_alarms_per_million / 1e6 / tests false alarms per value, or per
        prediction for a test fed a sample (``detect.sample_rate``). With slices, their
        tests share ``segments.budget_share`` of it and the model's own the rest.

        Called whenever a test is added or a version goes; thresholds change at points of
        the stream that depend on nothing but the stream, so replays agree."""
        d = self.detect
        sampled = [s.detector for v in self.versions.values() for s in v.sampled_streams()]
        every = [s.detector for v in self.versions.values() for s in v.every_event_streams()]
        every += [s.detector for s in self.watched.values()]
        sliced: list[Detector] = []
        sliced_sampled: list[Detector] = []
        for state in self.slices.values():
            if state.watches is not None:
                sliced += [s.detector for s in state.watches.watched.values()]
            if state.tracks is not None:
                sliced_sampled += [s.detector for s in state.tracks.sampled_streams()]
        budget = d.false_alarms_per_million / 1e6
        # The slices' tests share segments.budget_share of the budget, however many there are: the
        # model's own tests keep the rest, so adding segments costs them little and adds no false alarms.
        share = self.segment_settings.budget_share if sliced or sliced_sampled else 0.0
        self._share_budget(budget * (1 - share), every, sampled)
        if share:
            self._share_budget(budget * share, sliced, sliced_sampled)

    def _share_budget(self, budget: float, every: list[Detector], sampled: list[Detector]) -> None:
        if not every and not sampled:
            return
        rate = budget / (len(sampled) + len(every))
        for detector in every:
            detector.set_false_alarm_rate(rate)
        # A test fed a sample sees sample_rate values per prediction: per value it may spend
        # 1/sample_rate times as much for the same false alarms per prediction (a rate must
        # stay below 1: a large budget on a small sample would not).
        for detector in sampled:
            detector.set_false_alarm_rate(min(rate / self.detect.sample_rate, 0.5))

    def counts(self) -> tuple[int, int, int]:
        """Features dropped for the bound, type mismatches and predictions fed to the drift
        tests (see ``detect.sample_rate``), over every version ever held."""
        versions = self.versions.values()
        return (self._retired_dropped + sum(v.dropped_features for v in versions),
                self._retired_mismatches + sum(v.mismatches for v in versions),
                self._retired_sampled + sum(v.sampled for v in versions))

    def folds(self) -> tuple[int, int]:
        """Versions dropped for detect.max_versions, and category values past
        detect.max_categories (sharing one code), over every version ever held."""
        return (self._evicted_versions,
                self._retired_folded + sum(v.folded_categories for v in self.versions.values()))

    def version(self, version: str) -> VersionState:
        state = self.versions.get(version)
        if state is None:
            d = self.detect
            if len(self.versions) >= d.max_versions:
                evicted, old = self.versions.popitem(last=False)
                self._retired_dropped += old.dropped_features
                self._retired_mismatches += old.mismatches
                self._retired_sampled += old.sampled
                self._retired_folded += old.folded_categories
                self._evicted_versions += 1
                self.evicted.append(evicted)
                self._end_canaries(evicted)
            self._start_canary(version)
            state = self.versions[version] = VersionState(
                self.factory, d.max_features, self.latency_threshold_ms, self.watches,
                self.baselines.get((self.name, version)))
            self.rebudget()
        elif next(reversed(self.versions)) != version:
            self.versions.move_to_end(version)
        return state

    def flush(self) -> tuple[list[Firing], list[GaugeRow]]:
        """Run this batch through every detector; return what fired and the gauge rows."""
        firings: list[Firing] = []
        gauges: list[GaugeRow] = []
        for version, state in self.versions.items():
            if state.pending:
                self.latencies[version] = state.ingest()
            if state.tests_added:  # before the batch reaches them, as a test is added
                state.tests_added = False
                self.rebudget()
            drifted: list[Firing] = []
            for stream in state.streams():
                for position, fire in stream.flush():
                    firing = Firing(stream.kind, stream.feature, stream.detector_name(fire), version, position,
                                    round(fire.score, 6), round(fire.threshold, 6))
                    firings.append(firing)
                    if firing.kind == "data_drift" and firing.detector != "missing_rate":
                        drifted.append(firing)
                gauges.append(stream.gauge(version))
            if state.share is not None:
                firings += self._dataset_drift(state, version, sorted(drifted, key=lambda f: f.position))
        for stream in self.watched.values():
            for position, fire in stream.flush():
                firings.append(Firing(stream.kind, stream.feature, stream.detector_name(fire), self.last_version,
                                      position, round(fire.score, 6), round(fire.threshold, 6)))
            gauges.append(stream.gauge(""))
        firings += self._flush_slices()
        if self.canaries:
            self._feed_canaries()
            for canary in self.canaries.values():
                for judged in canary.flush():
                    firings.append(Firing("canary_regression", None, judged.metric, canary.version, judged.position,
                                          round(judged.score, 6), round(judged.threshold, 6),
                                          baseline=canary.baseline))
        for attribute, judge in self.fairness.items():
            for judged in judge.flush():
                firings.append(Firing("fairness_gap", attribute, judged.metric, self.last_version, judged.position,
                                      judged.score, judged.threshold, (attribute, judged.group or "")))
        return firings, gauges

    def _flush_slices(self) -> list[Firing]:
        """The slices' detectors, after the model's (no gauges: one series per slice and test is too many)."""
        for state in self.slices.values():
            if state.tracks is not None and state.tracks.pending:
                state.tracks.ingest()
                self.slices_changed = self.slices_changed or state.tracks.tests_added
                state.tracks.tests_added = False
        if self.slices_changed:
            self.slices_changed = False
            self.rebudget()
        firings = []
        for pair, state in self.slices.items():
            for stream in state.streams():
                for position, fire in stream.flush():
                    firings.append(Firing(stream.kind, stream.feature, stream.detector_name(fire), self.last_version,
                                          position, round(fire.score, 6), round(fire.threshold, 6), pair))
        return firings

    def _dataset_drift(self, state: VersionState, version: str, drifted: list[Firing]) -> list[Firing]:
        """Feature drifts, in stream order, through the version's DriftShare."""
        out: list[Firing] = []
        if state.share is None:
            return out
        for firing in drifted:
            fire = state.share.observe(firing.position, firing.feature or "", len(state.features))
            if fire is not None:
                out.append(Firing("data_drift", "*", "drift_share", version, firing.position,
                                  round(fire.score, 6), round(fire.threshold, 6)))
        return out

    def alert(self, firing: Firing, event: Event) -> Alert:
        """The alert of a firing, on the event at its position."""
        return Alert(kind=firing.kind, model=self.name, model_version=firing.version or None,
                     feature=firing.feature, detector=firing.detector, score=firing.score,
                     threshold=firing.threshold, at_event=firing.position, ts=event["ts"], event_id=event["event_id"],
                     segment={firing.segment[0]: firing.segment[1]} if firing.segment else None,
                     baseline_version=firing.baseline)
