"""Per-model and per-version detector state, fed in batches.

A ``ModelState`` holds what is watched for one model: its versions (each with its own
reference, as a new version is a new model) and the model-wide negative-feedback
stream. During a batch, a version only collects its prediction events with their
stream positions; ``flush`` takes them apart column by column (one list
comprehension per feature, not a Python call per value), hands the columns to the
detectors as numpy arrays and turns fires into alerts.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, KeysView, Sequence
from operator import itemgetter
from typing import Any
from zlib import crc32

import numpy as np

from collectors.contract import Alert
from detectors import BurnRate, ChiSquareDrift, Detector, DriftShare, Fire, NumericDrift, RateIncrease, RiverAdapter
from monitor.config import Settings

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
        return RiverAdapter({"ddm": drift.binary.DDM, "hddm_a": drift.binary.HDDMA}[choice]())

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

    __slots__ = ("baseline", "categorical", "changed", "codes", "factory", "feature", "kind", "max_codes",
                 "mean", "mismatches", "missing", "value")

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


class VersionState:
    """Everything watched for one model version."""

    def __init__(self, factory: DetectorFactory, max_features: int, latency_threshold_ms: float,
                 changed: Callable[[], None], baseline: dict[str, list[Any]] | None = None) -> None:
        self.factory = factory
        self.changed = changed
        self.baseline = baseline or {}
        self.max_features = max_features
        self.latency_threshold_ms = latency_threshold_ms
        self.features: dict[str, Track] = {}
        self.outputs: dict[str, Track] = {}
        self.latency = Stream(factory.latency_slo(), "slo_burn", "latency_ms", "latency_burn_rate")
        self.availability = Stream(factory.availability_slo(), "slo_burn", "status", "availability_burn_rate")
        self.errors = Stream(factory.error_rate(), "metric_decay", None, "error_rate")
        self.dropped_features = 0
        self.sampled = 0  # predictions handed to the feature and output tracks
        self.pending: list[Event] = []  # this batch's predictions, until ingest
        self.pending_positions: list[int] = []
        d = factory.d
        self.share = DriftShare(d.drift_share, d.drift_share_window) if d.drift_share else None

    def observe(self, event: Event, position: int) -> None:
        """Take in one prediction event (it reaches the detectors at ``ingest``)."""
        self.pending_positions.append(position)
        self.pending.append(event)

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
        if rate < 1.0:  # the SLO streams take every event, the tracks the sample
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
            timed = np.array([v is not None for v in latencies], dtype=bool)
            latency = np.array([v for v in latencies if v is not None], dtype=np.float64)
            self.latency.add_many(positions[timed], (latency > self.latency_threshold_ms).astype(np.float64))
        else:
            latency = np.array(latencies, dtype=np.float64)
            self.latency.add_many(positions, (latency > self.latency_threshold_ms).astype(np.float64))
        failed = np.zeros(len(events))
        if "error" in statuses:
            failed[[i for i, status in enumerate(statuses) if status == "error"]] = 1.0
        self.availability.add_many(positions, failed)
        return latency / 1000.0

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
            column = [row.get(name) for row in (rows[start:] if start else rows)]
            track.add_column(positions[start:], column)

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
        """The SLO and error streams: fed every prediction (and every late label)."""
        yield self.latency
        yield self.availability
        yield self.errors

    @property
    def mismatches(self) -> int:
        return sum(t.mismatches for t in self.features.values()) + sum(t.mismatches for t in self.outputs.values())


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
    """One model: its versions (least recently seen dropped first) and model-wide streams."""

    def __init__(self, name: str, settings: Settings, factory: DetectorFactory,
                 on_evict: Callable[[str, str], None], baselines: Baselines | None = None) -> None:
        self.name = name
        self.baselines = baselines or {}
        self.settings = settings
        self.factory = factory
        self.on_evict = on_evict
        self.versions: OrderedDict[str, VersionState] = OrderedDict()
        self.negatives = Stream(factory.rate(), "feedback_spike", None, "negative_feedback_rate")
        d = settings.detect
        self.feedback_rate = EventTimeRate(self.negatives, d.feedback_bucket_s, d.feedback_lateness_s,
                                           d.feedback_burn_in_s)
        # Click-through: a 1 is an impression nobody clicked, so a CTR drop is a rise.
        self.unclicked = Stream(factory.rate(), "metric_decay", None, "ctr")
        self.ctr = EventTimeRate(self.unclicked, d.feedback_bucket_s, d.feedback_lateness_s, d.feedback_burn_in_s)
        self.recent: deque[tuple[int, Event]] = deque(maxlen=settings.detect.drift_window)
        self.batch_recent: list[tuple[int, Event]] = []
        self.latencies: dict[str, np.ndarray] = {}  # seconds, by version, this batch
        self.last_version = ""
        self.last_ts = 0.0
        self._retired_dropped = 0  # of evicted versions: the counters must never go down
        self._retired_mismatches = 0
        self._retired_sampled = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["on_evict"]  # the pipeline's: a restored state is given its new owner's
        # The settings hold secrets (the SASL password, the store URL's password) that must
        # not reach the checkpoint in the store: a restored state is given its owner's.
        del state["settings"]
        return state

    def rebudget(self) -> None:
        """Share the model's false-alarm budget equally among its tests (Bonferroni): each
        test aims at false_alarms_per_million / 1e6 / tests false alarms per value, or per
        prediction for a test fed a sample (``detect.sample_rate``).

        Called whenever a test is added or a version goes; thresholds change at points of
        the stream that depend on nothing but the stream, so replays agree."""
        d = self.settings.detect
        sampled = [s.detector for v in self.versions.values() for s in v.sampled_streams()]
        every = [s.detector for v in self.versions.values() for s in v.every_event_streams()]
        every += [self.negatives.detector, self.unclicked.detector]
        rate = d.false_alarms_per_million / 1e6 / (len(sampled) + len(every))
        for detector in every:
            detector.set_false_alarm_rate(rate)
        # A test fed a sample sees sample_rate values per prediction: per value it may spend
        # 1/sample_rate times as much for the same false alarms per prediction (a rate must
        # stay below 1: a large budget on a small sample would not).
        for detector in sampled:
            detector.set_false_alarm_rate(min(rate / d.sample_rate, 0.5))

    def counts(self) -> tuple[int, int, int]:
        """Features dropped for the bound, type mismatches and predictions fed to the drift
        tests (see ``detect.sample_rate``), over every version ever held."""
        versions = self.versions.values()
        return (self._retired_dropped + sum(v.dropped_features for v in versions),
                self._retired_mismatches + sum(v.mismatches for v in versions),
                self._retired_sampled + sum(v.sampled for v in versions))

    def version(self, version: str) -> VersionState:
        state = self.versions.get(version)
        if state is None:
            d = self.settings.detect
            if len(self.versions) >= d.max_versions:
                evicted, old = self.versions.popitem(last=False)
                self._retired_dropped += old.dropped_features
                self._retired_mismatches += old.mismatches
                self._retired_sampled += old.sampled
                self.on_evict(self.name, evicted)
            state = self.versions[version] = VersionState(
                self.factory, d.max_features, self.settings.slo.latency_threshold_ms, self.rebudget,
                self.baselines.get((self.name, version)))
            self.rebudget()
        elif next(reversed(self.versions)) != version:
            self.versions.move_to_end(version)
        return state

    def flush(self, event_at: Callable[[int], Event]) -> tuple[list[Alert], list[GaugeRow]]:
        """Run this batch through every detector; return its alerts and gauge rows."""
        alerts: list[Alert] = []
        gauges: list[GaugeRow] = []
        for version, state in self.versions.items():
            if state.pending:
                self.latencies[version] = state.ingest()
            drifted: list[Alert] = []
            for stream in state.streams():
                for position, fire in stream.flush():
                    alert = self._alert(stream.kind, stream.feature, stream.detector_name(fire), version,
                                        position, fire, event_at)
                    alerts.append(alert)
                    if alert.kind == "data_drift" and alert.detector != "missing_rate":
                        drifted.append(alert)
                gauges.append(stream.gauge(version))
            if state.share is not None:
                alerts += self._dataset_drift(state, version, sorted(drifted, key=lambda a: a.at_event), event_at)
        for stream in (self.negatives, self.unclicked):
            for position, fire in stream.flush():
                alerts.append(self._alert(stream.kind, stream.feature, stream.detector_name(fire), self.last_version,
                                          position, fire, event_at))
            gauges.append(stream.gauge(""))
        return alerts, gauges

    def _dataset_drift(self, state: VersionState, version: str, drifted: list[Alert],
                       event_at: Callable[[int], Event]) -> list[Alert]:
        """Feature drifts, in stream order, through the version's DriftShare."""
        out: list[Alert] = []
        if state.share is None:
            return out
        for alert in drifted:
            fire = state.share.observe(alert.at_event, alert.feature or "", len(state.features))
            if fire is not None:
                out.append(self._alert("data_drift", "*", "drift_share", version, alert.at_event, fire, event_at))
        return out

    def _alert(self, kind: str, feature: str | None, detector: str, version: str, position: int, fire: Fire,
               event_at: Callable[[int], Event]) -> Alert:
        event = event_at(position)
        return Alert(
            kind=kind, model=self.name, model_version=version or None, feature=feature, detector=detector,
            score=round(fire.score, 6), threshold=round(fire.threshold, 6),
            at_event=position, ts=event["ts"], event_id=event["event_id"],
        )
