"""The pipeline core: a batch of raw messages in, its effects out.

Every runner (the Kafka daemon, ``monitor replay``, the demo) feeds the same
``Pipeline``. It keeps its own count of messages read, so ``at_event`` of an alert is
the position in the stream the runner read, and it never looks at the wall clock for
anything that decides an alert: the same messages in the same order give the same
alerts, however they are cut into batches.

What comes out is the batch's *effects*: dead letters, alerts and flagged samples
(already redacted). The runner hands them to its chain of sinks (``monitor.sinks``),
whose durable ones succeed before it commits offsets.
Metrics are folded in at the end of each batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from collectors.arrow import ARROW, JSON, NON_FINITE, decode_stream
from collectors.contract import (
    FLAGGED_KINDS,
    NEGATIVE_KINDS,
    Alert,
    DeadLetter,
    FlaggedSample,
    RawMessage,
)
from collectors.decode import Decoder, Limits
from collectors.join import JoinBuffer, JoinEntries
from collectors.redact import Redactor
from monitor import state_format
from monitor.config import Settings
from monitor.metrics import (
    ALERTS,
    BOUND_CAPACITY,
    BOUND_ENTRIES,
    BOUND_OVERFLOW,
    BUSINESS_EVENTS,
    CANARY_DIFFERENCE,
    CANARY_VERDICT,
    DETECTOR_SCORE,
    DETECTOR_THRESHOLD,
    DRIFT_TESTED_PREDICTIONS,
    ESTIMATED_ERROR,
    EVENTS,
    FAIRNESS_RATIO,
    FEATURE_TYPE_MISMATCHES,
    FEEDBACK,
    FLAGGED_SAMPLES,
    INVALID_EVENTS,
    JOIN,
    LAST_EVENT_TIMESTAMP,
    OTHER,
    PREDICTION_LATENCY,
    PREDICTIONS,
    REDACTIONS,
    SEGMENT_EVENTS,
    CounterSpec,
    LabelGuard,
    Metrics,
)
from monitor.model_state import SEGMENT_EVENT_NAMES, WATCHES, Baselines, DetectorFactory, GaugeRow, ModelState, Watch
from monitor.slices import Pairs
from retrain.badcases import Facts, RuleSet, segment_text

Event = dict[str, Any]
#: (topic, partition) a message was read from: join entries move with their partition.
Shard = tuple[str, int]
DRIFT_KINDS = frozenset({"data_drift", "prediction_drift"})
_NO_TIME = -math.inf
#: The series of a model version, dropped when the version is evicted.
_VERSION_METRICS = (DETECTOR_SCORE, DETECTOR_THRESHOLD, PREDICTIONS, PREDICTION_LATENCY, BUSINESS_EVENTS,
                    ESTIMATED_ERROR)
#: The counters ``Pipeline._totals`` keeps, by name: the totals are keyed by name because
#: checkpoints pickle them.
_TOTALLED: dict[str, CounterSpec[Any]] = {
    c.name: c for c in (JOIN, BOUND_OVERFLOW, FEATURE_TYPE_MISMATCHES, DRIFT_TESTED_PREDICTIONS)}


@dataclass
class BatchResult:
    """The effects of one batch, for the runner's chain of sinks (``monitor.sinks``)."""

    messages: int = 0
    #: Stream positions the batch took: one per JSON message, one per row of an Arrow message.
    rows: int = 0
    events: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    samples: list[FlaggedSample] = field(default_factory=list)
    #: Predictions by (model, segment as sorted (key, value) text pairs, event-time hour):
    #: the traffic that bad-case priorities weigh segments by.
    traffic: Counter[tuple[str, tuple[tuple[str, str], ...], int]] = field(default_factory=Counter)
    #: Seconds spent in each stage of ``Pipeline.process`` (see model_monitor_stage_seconds_total).
    stages: dict[str, float] = field(default_factory=dict)


#: The layout of ``Pipeline.snapshot``; a change makes older checkpoints unusable.
#: 2: the join is saved by partition, not in the snapshot. 3: a binned drift test keeps
#: its window's bins in one array. 4: versions count the predictions their drift tests took.
#: 5: the recent alerts of each model (for bad cases) and the segment combinations counted.
#: 6: the watched streams in a registry (``WATCHES``); a model keeps its detect settings only.
#: 7: plain data (``monitor.state_format``), not a pickle.
#: 8: drift tests keep no critical values of their own (detectors.critical caches them).
#: 9: an SLO burn rate keeps its false-alarm rate.
#: 10: slices (watched segment values, each with its detectors); traffic slices keyed by their pairs;
#: canaries, fairness and the label-free estimate.
#: 11: a binned drift test keeps each window's running bin counts (``_counts``).
#: 12: tracks count the category values they fold; models the versions they dropped.
STATE_FORMAT = 12
#: What ``Pipeline.snapshot`` holds.
_SNAPSHOT_KEYS = ("models", "model_labels", "join_counts", "position", "watermark", "close_at", "last_totals",
                  "alert_log", "slices", "slice_overflow", "drift_flagged")
#: Recent alerts kept per model for the bad cases that arrive after them.
ALERT_LOG_SIZE = 32
#: The segment combination a model's traffic beyond ``badcases.max_slices`` is counted under.
OTHER_SLICE: tuple[tuple[str, str], ...] = ((OTHER, OTHER),)
#: Segment combinations (as sent) whose sorted, redacted pairs are cached (see Pipeline._pairs).
SEGMENT_CACHE_SIZE = 100_000


def settings_fingerprint(settings: Settings) -> str:
    """Identifies the settings (and the snapshot layout) that shape the pipeline's state:
    a checkpoint is restored only into a pipeline built with the same."""
    judging = dataclasses.replace(settings.canary, rollback_webhook_url="", rollback_webhook_secret="",
                                  rollback_webhook_secret_file="")  # not part of the state
    shaping = (STATE_FORMAT, settings.collect, settings.redact, settings.join, settings.detect, settings.slo,
               settings.segments, settings.fairness, judging, settings.estimate)
    return hashlib.sha256(repr(shaping).encode()).hexdigest()[:32]


def label_error(prediction: Event, truth: Any, decision_threshold: float) -> int | None:
    """1 if a late label says the prediction was wrong, 0 if right, None if unknowable.

    A prediction's ``label`` is compared with the truth; failing that, its ``score``
    is thresholded against a boolean or 0/1 truth.

    >>> label_error({"prediction": {"label": "click"}}, "skip", 0.5)
    1
    >>> label_error({"prediction": {"score": 0.8}}, True, 0.5)
    0
    >>> label_error({"prediction": {"score": 0.8}}, 3.7, 0.5) is None  # a regression target
    True
    """
    outputs = prediction.get("prediction")
    if not outputs or truth is None:
        return None
    label = outputs.get("label")
    if label is not None:
        return int(label != truth)
    score = outputs.get("score")
    if type(score) in (int, float) and (type(truth) is bool or truth in (0, 1)):
        return int((score >= decision_threshold) != bool(truth))
    return None


class _Batch:
    """What one batch accumulates before it is folded into metrics and results."""

    def __init__(self) -> None:
        self.events: Counter[tuple[str, str]] = Counter()
        self.invalid: Counter[tuple[str]] = Counter()
        self.predictions: Counter[tuple[str, str, str]] = Counter()
        self.business: Counter[tuple[str, str, str]] = Counter()  # impressions, clicks, conversions by version
        self.feedback: Counter[tuple[str, str]] = Counter()
        self.flagged: Counter[tuple[str, str]] = Counter()
        self.redactions: Counter[tuple[str]] = Counter()
        self.samples: list[FlaggedSample] = []
        #: Bad cases waiting for the batch's alerts before they are categorised: (position, sample).
        self.cases: list[tuple[int, FlaggedSample]] = []
        self.traffic: Counter[tuple[str, tuple[tuple[str, str], ...], int]] = Counter()
        self.touched: dict[str, ModelState] = {}


class Pipeline:
    """Decode, validate, join, detect, flag: the same core behind every runner."""

    def __init__(self, settings: Settings, metrics: Metrics, clock: Callable[[], float] = time.time,
                 baselines: Baselines | None = None, watches: Sequence[Watch] = WATCHES) -> None:
        self.settings = settings
        #: Reference values from ``monitor baseline``: a version listed here starts with its
        #: training distribution as the reference instead of a warm-up.
        self.baselines: Baselines = baselines or {}
        self.metrics = metrics
        self.clock = clock
        c = settings.collect
        self.limits = Limits(c.max_message_bytes, c.max_features, c.max_string_length, c.max_depth,
                             c.max_future_skew_s)
        self.decoder = Decoder(self.limits)
        #: Decodes the predictions the join kept: valid when kept, whatever their size (an Arrow
        #: row kept as JSON may be larger than one message may be).
        self._rejoin = Decoder(dataclasses.replace(self.limits, max_message_bytes=2**62))
        self.redactor = Redactor.from_settings(settings.redact)
        j = settings.join
        self.joiner = JoinBuffer(j.ttl_s, j.max_predictions, j.feedback_wait_s, j.max_pending)
        self.factory = DetectorFactory(settings)
        #: What is watched besides the per-field drift tracks (see ``monitor.model_state.WATCHES``).
        self.watches = tuple(watches)
        self.models: dict[str, ModelState] = {}
        self.model_labels = LabelGuard(settings.detect.max_models)
        #: Position of the next message in the stream this pipeline reads.
        self.position = 0
        #: Newest event time seen (see watermark_max_step_s): the clock of joins and rate buckets.
        self.watermark = _NO_TIME
        self._close_at = 0.0
        self._last_totals: dict[tuple[str, tuple[str, ...]], float] = {}
        self._shards: dict[Shard, Shard] = {}  # one tuple per partition, shared by its join entries
        self.rules = RuleSet.compile(settings.badcases.rules, settings.slo.latency_threshold_ms)
        #: Each model's recent alerts, (at_event, ts, kind, detector, feature): what was active when a bad case came.
        self._alert_log: dict[str, deque[tuple[int, float, str, str, str | None]]] = {}
        #: Each model's segment combinations (sorted, redacted pairs) whose traffic is counted
        #: (at most badcases.max_slices).
        self._slices: dict[str, dict[Pairs, Pairs]] = {}
        self._segment_pairs: dict[Any, Pairs] = {}  # see _pairs
        #: Each model's predictions flagged by drift windows, at most detect.drift_window of them (an ordered set).
        self._drift_flagged: dict[str, dict[str, None]] = {}
        self._slice_overflow = 0  # predictions counted under OTHER_SLICE

    # -- the batch ------------------------------------------------------------------
    def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        """Process one batch of messages, in order; return its effects."""
        started = time.perf_counter()
        now = self.clock()
        first = self.position
        batch = _Batch()
        result = BatchResult(messages=len(messages))
        decode = self.decoder.decode
        if all(message.encoding == JSON for message in messages):
            decoded = [decode(message.value, now) for message in messages]
            positions: Sequence[RawMessage] = messages
        else:  # an Arrow message becomes its rows before the loop: positions count rows
            positions, decoded = self._expand(messages, now)
        result.rows = len(positions)
        at: list[Event | None] = [event for event, _, _ in decoded]
        decoded_at = time.perf_counter()
        max_step = self.settings.join.watermark_max_step_s
        for message, (event, reason, detail) in zip(positions, decoded, strict=True):
            position = self.position
            self.position += 1
            if event is None:
                result.dead_letters.append(DeadLetter(reason or "", detail, message))
                batch.invalid[(reason or "",)] += 1
                continue
            result.events += 1
            ts = event["ts"]
            if ts > self.watermark:
                # One event far ahead of the rest (a bad producer clock) may move event
                # time by at most watermark_max_step_s: it cannot expire every waiting
                # prediction or close every open bucket at once.
                self.watermark = ts if self.watermark == _NO_TIME else min(ts, self.watermark + max_step)
                self.joiner.advance(self.watermark)
                if self.watermark >= self._close_at:
                    self._close_rate_buckets(position, batch)
            event_time = min(ts, self.watermark)
            state = self._model(event["model"], batch)
            typ = event["type"]
            batch.events[(state.name if state else OTHER, typ)] += 1
            if typ == "prediction":
                self._prediction(state, event, message, event_time, position, batch)
            elif typ == "feedback":
                self._feedback(state, event, message, event_time, position, batch)
            elif state is not None:
                batch.business[(state.name, event.get("model_version") or "", typ)] += 1
                state.on_signal(typ, event_time, self._pairs(event.get("segment")))
        for orphan in self.joiner.drain_orphans():
            if orphan["kind"] in FLAGGED_KINDS:
                self._flag_feedback(orphan, None, orphan["kind"], self.position - 1, batch)
        routed_at = time.perf_counter()

        gauges: list[tuple[str, GaugeRow]] = []
        for state in batch.touched.values():
            firings, rows = state.flush()
            for firing in firings:
                event = at[firing.position - first]
                if event is None:  # detectors only ever see valid events
                    raise LookupError(f"no valid event at position {firing.position}")
                result.alerts.append(state.alert(firing, event))
            gauges.extend((state.name, row) for row in rows)
        result.alerts.sort(key=lambda a: (a.at_event, a.kind, a.feature or "", a.detector))
        for alert in result.alerts:
            self._alert_log.setdefault(alert.model, deque(maxlen=ALERT_LOG_SIZE)).append(
                (alert.at_event, alert.ts, alert.kind, alert.detector, alert.feature))
        self._categorise(batch)
        for alert in result.alerts:
            if alert.kind in DRIFT_KINDS:
                self._flag_drift_window(alert, batch)
        for state in batch.touched.values():
            state.end_batch()
        result.samples = batch.samples
        result.traffic = batch.traffic
        detected_at = time.perf_counter()
        self._fold_metrics(batch, result, gauges)
        result.stages = {"decode": decoded_at - started, "route": routed_at - decoded_at,
                         "detect": detected_at - routed_at, "metrics": time.perf_counter() - detected_at}
        return result

    def _expand(self, messages: Sequence[RawMessage], now: float) -> tuple[
            list[RawMessage], list[tuple[Event | None, str | None, str]]]:
        """Messages as stream positions: a JSON message is one, an Arrow message one per row.

        An Arrow message that is not a readable stream (or too large) is one bad position;
        a bad row is dead-lettered alone, as JSON of the row, ``row`` naming it."""
        decode, validate = self.decoder.decode, self.decoder.validate
        positions: list[RawMessage] = []
        decoded: list[tuple[Event | None, str | None, str]] = []
        for message in messages:
            if message.encoding != ARROW:
                positions.append(message)
                decoded.append(decode(message.value, now))
                continue
            rows, reason, detail = decode_stream(message.value, self.limits)
            if rows is None:
                positions.append(message)
                decoded.append((None, reason, detail))
                continue
            for index, row in enumerate(rows):
                column = row.pop(NON_FINITE, None)
                sent_ts = row.get("ts")
                if column is not None:
                    event, reason, detail = None, "non_finite_number", f"{column} holds NaN or an infinity"
                else:
                    event, reason, detail = validate(row, now)
                if event is not None:
                    positions.append(message)  # the join keeps such a prediction as JSON (see _prediction)
                    decoded.append((event, None, ""))
                    continue
                row["ts"] = sent_ts  # as it was sent, not half-normalised
                value = orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
                                     default=str)
                positions.append(message._replace(value=value, encoding=JSON, row=index))
                decoded.append((None, reason, detail))
        return positions, decoded

    def drain(self) -> BatchResult:
        """At a shutdown that does not save the join (checkpoints off, or the save failed):
        flag the negative feedback still waiting for its prediction, unjoined.

        Its offsets are committed already, so without this a restart would never see
        it again. (A crash loses what came after the last checkpoint.)
        """
        batch = _Batch()
        for orphan in self.joiner.drain_pending():
            if orphan["kind"] in FLAGGED_KINDS:
                self._flag_feedback(orphan, None, orphan["kind"], self.position - 1, batch)
        self._categorise(batch)
        result = BatchResult(samples=batch.samples)
        self._fold_metrics(batch, result, [])
        return result

    # -- checkpoints ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """What a restarted pipeline needs to go on where this one stands, but for the
        join (saved by partition: ``join_entries``): the models' detectors, the stream
        position and event-time clock; in the plain-data format of ``monitor.state_format``
        (a checkpoint lives in a shared database: reading one must run no code it names)."""
        return state_format.dumps({
            "models": self.models, "model_labels": self.model_labels, "join_counts": self.joiner.counts,
            "position": self.position, "watermark": self.watermark, "close_at": self._close_at,
            "last_totals": self._last_totals, "alert_log": self._alert_log, "slices": self._slices,
            "slice_overflow": self._slice_overflow, "drift_flagged": self._drift_flagged,
        })

    def restore(self, blob: bytes, *, detectors_only: bool = False) -> None:
        """Take over the state of ``snapshot()`` (of a pipeline with the same settings).

        ``detectors_only``: take the models' detectors and nothing tied to the partitions
        the state was read from (the stream position and clock). With
        producers keying by ``request_id`` every partition carries the same mix of each
        model's traffic, so one member's references are right for any partitions.
        """
        state = state_format.loads(blob, {w.name: w for w in self.watches})
        missing = [k for k in _SNAPSHOT_KEYS if type(state) is not dict or k not in state]
        if missing:  # read it all before taking any of it: nothing half-restored
            raise state_format.StateFormatError(f"saved state lacks {', '.join(missing)}")
        self.models = state["models"]
        self.model_labels = state["model_labels"]
        self._slices = state["slices"]
        self._slice_overflow = state["slice_overflow"]
        if detectors_only:
            for model in self.models.values():
                model.forget_positions()
            self._last_totals = self._totals()  # the models' own counts go on from here
            return
        self.joiner.counts = state["join_counts"]  # the counters below go on from them
        self.position = state["position"]
        self.watermark = state["watermark"]
        self._close_at = state["close_at"]
        self._last_totals = state["last_totals"]  # counters go on from here, not from the total so far
        self._alert_log = state["alert_log"]  # at_event is a position in the stream it was read from
        self._drift_flagged = state["drift_flagged"]

    # -- the join, by partition: it moves with its partition ---------------------------------
    def join_entries(self, shards: Collection[Shard]) -> dict[Shard, bytes]:
        """What the join holds from each partition, in the saved-state format, for ``add_join``;
        kept here too."""
        return {cast(Shard, shard): state_format.dumps(entries)
                for shard, entries in self.joiner.entries(shards).items()}

    def drop_join(self, shards: Collection[Shard], *, flag_waiting: bool = False) -> int:
        """Forget what the join holds from these partitions (another member has them now);
        return how many entries that was. ``flag_waiting``: the feedback among them that
        waits for its prediction is flagged unjoined with the next batch instead."""
        taken = self.joiner.take(shards).values()
        if flag_waiting:
            for entries in taken:
                self.joiner.give_up(entries)
        return sum(map(len, taken))

    @staticmethod
    def load_join(shard: Shard, blob: bytes) -> JoinEntries:
        """Read ``join_entries`` saved for ``shard``; ``ValueError`` if this version cannot."""
        try:
            entries = state_format.loads(blob)
        except state_format.StateFormatError as exc:
            raise ValueError(f"unreadable join state for {shard}: {exc}") from exc
        if not isinstance(entries, JoinEntries):
            raise ValueError(f"the join state for {shard} is a {type(entries).__name__}, not JoinEntries")
        return entries

    def add_join(self, moved: Mapping[Shard, JoinEntries]) -> int:
        """Take in the join entries of these partitions (``load_join``), all in one merge;
        return how many entries."""
        self.joiner.put({self._intern(shard[0], shard[1]): entries for shard, entries in moved.items()})
        return sum(map(len, moved.values()))

    def _close_rate_buckets(self, position: int, batch: _Batch) -> None:
        """The watermark passed a bucket boundary: test the buckets that are now complete."""
        d = self.settings.detect
        for state in self.models.values():
            if state.close_buckets(self.watermark, position):
                batch.touched[state.name] = state
        width, lateness = d.feedback_bucket_s, d.feedback_lateness_s
        self._close_at = ((self.watermark - lateness) // width + 1) * width + lateness

    def _model(self, name: str, batch: _Batch) -> ModelState | None:
        state = self.models.get(name)
        if state is None:
            if self.model_labels(name) == OTHER:
                return None
            state = self.models[name] = ModelState(name, self.settings.detect, self.settings.slo.latency_threshold_ms,
                                                   self.factory, self.baselines, self.watches, self.settings.segments,
                                                   self.settings.canary, self.settings.fairness)
        batch.touched[name] = state
        return state

    def _intern(self, topic: str, partition: int) -> Shard:
        """The one (topic, partition) tuple of a partition, shared by all its join entries."""
        key = (topic, partition)
        return self._shards.setdefault(key, key)

    def _prediction(self, state: ModelState | None, event: Event, message: RawMessage, event_time: float,
                    position: int, batch: _Batch) -> None:
        version = event.get("model_version") or ""
        # A model past max_models shares the __other__ series, its versions too.
        labels = (state.name, version) if state else (OTHER, OTHER)
        batch.predictions[(*labels, event.get("status") or "ok")] += 1
        # The join keeps the message's bytes, not the decoded event: a fifth of the memory
        # and nothing for the garbage collector to walk; the 2% that join are decoded again.
        shard = self._intern(message.topic, message.partition)
        keep = message.value if message.encoding == JSON or event.get("request_id") is None else orjson.dumps(event)
        waiting = self.joiner.add_prediction(event, keep=keep, shard=shard)
        pairs = self._pairs(event.get("segment"))
        slices = self._slices.setdefault(labels[0], {})
        stored = slices.get(pairs)
        if stored is None:
            if len(slices) < self.settings.badcases.max_slices:
                stored = slices[pairs] = pairs
            else:
                stored = OTHER_SLICE
                self._slice_overflow += 1
        batch.traffic[(labels[0], stored, int(event["ts"] // 3600))] += 1
        if state is not None:
            state.on_prediction(version, event, position, event_time, pairs)
        for feedback in waiting:
            self._joined(feedback, event, position, batch)

    def _pairs(self, segment: Any) -> Pairs:
        """A segment as sorted (key, value as text) pairs, redacted (a segment value may hold
        personal data, and these become metric labels, alert fields and store rows).

        Cached by the segment as sent (a producer sends its keys in one order): the sorted,
        redacted form is worked out once per combination, not once per event."""
        if not segment:
            return ()
        sent: Any = tuple(segment.items())
        cache = self._segment_pairs
        try:
            pairs = cache.get(sent)
        except TypeError:  # an unhashable value (the contract allows none): its text form instead
            sent = tuple(sorted(segment_text(segment).items()))
            pairs = cache.get(sent)
        if pairs is None:
            if len(cache) >= SEGMENT_CACHE_SIZE:  # a bound, not a policy: what is dropped is worked out again
                cache.clear()
            redact = self.redactor.redact_text
            pairs = cache[sent] = tuple((redact(k)[0], redact(v)[0]) for k, v in sorted(segment_text(segment).items()))
        return pairs

    def _feedback(self, state: ModelState | None, event: Event, message: RawMessage, event_time: float,
                  position: int, batch: _Batch) -> None:
        kind = event["kind"]
        batch.feedback[(state.name if state else OTHER, kind)] += 1
        if state is not None:
            state.on_signal("feedback", event_time)
            state.on_signal(f"feedback:{kind}", event_time)
            if kind in NEGATIVE_KINDS:
                state.on_signal("negative_feedback", event_time)
        kept = self.joiner.add_feedback(event, shard=self._intern(message.topic, message.partition))
        if kept is not None:
            prediction, reason, detail = self._rejoin.decode(kept, math.inf)  # valid when it was kept
            if prediction is None:
                raise AssertionError(f"a kept prediction no longer decodes: {reason}: {detail}")
            self._joined(event, prediction, position, batch)

    def _joined(self, feedback: Event, prediction: Event, position: int, batch: _Batch) -> None:
        kind = feedback["kind"]
        if kind in NEGATIVE_KINDS:  # slices and canaries need the prediction's segment and version
            state = self.models.get(prediction["model"])
            if state is not None:
                batch.touched[state.name] = state
                state.on_negative_feedback(prediction.get("model_version") or "", position)
                if prediction.get("segment"):
                    state.on_slice_signal("negative_feedback", min(feedback["ts"], self.watermark),
                                          self._pairs(prediction.get("segment")))
        if kind in FLAGGED_KINDS:
            self._flag_feedback(feedback, prediction, kind, position, batch)
        elif kind == "label":
            error = label_error(prediction, feedback.get("value"), self.settings.detect.decision_threshold)
            if error is None:
                return
            state = self.models.get(prediction["model"])
            if state is not None:
                batch.touched[state.name] = state
                outputs = prediction.get("prediction")
                score = outputs.get("score") if isinstance(outputs, dict) else None
                state.on_label(prediction.get("model_version") or "", position, float(error),
                               self._pairs(prediction.get("segment")),
                               score if type(score) is float or type(score) is int else None,
                               feedback.get("value"), outputs)
            if error:
                self._flag_feedback(feedback, prediction, "wrong_label", position, batch)

    # -- flagged samples (always redacted before they leave the pipeline) -------------
    def _redact(self, event: Event, batch: _Batch) -> Event:
        counts: dict[str, int] = {}
        clean = self.redactor.redact_event(event, counts)
        for kind, n in counts.items():
            batch.redactions[(kind,)] += n
        return clean

    def _flag_feedback(self, feedback: Event, prediction: Event | None, reason: str, position: int,
                       batch: _Batch) -> None:
        """A bad case: redacted now, categorised at the end of the batch (``_categorise``)."""
        clean = self._redact(feedback, batch)
        model = prediction["model"] if prediction else feedback["model"]
        batch.cases.append((position, FlaggedSample(
            event_id=clean["event_id"], model=model,
            model_version=(prediction.get("model_version") if prediction else None),
            reason=reason, detail=clean.get("reason"), event_ts=feedback["ts"],
            payload={"feedback": clean, "prediction": self._redact(prediction, batch) if prediction else None,
                     "joined": prediction is not None},
        )))
        batch.flagged[(self._label(model), reason)] += 1

    def _categorise(self, batch: _Batch) -> None:
        """Give the batch's bad cases their category, now that the batch's alerts are known.

        An alert is active for a case when it fired on an earlier event of the stream and
        at most ``badcases.active_alert_window_s`` of event time before the feedback: the
        same for every cut of the stream into batches.
        """
        window = self.settings.badcases.active_alert_window_s
        for position, sample in batch.cases:
            ts = sample.event_ts
            active = [{"kind": kind, "detector": detector, "feature": feature, "ts": at_ts}
                      for at, at_ts, kind, detector, feature in self._alert_log.get(sample.model, ())
                      if at < position and at_ts <= ts <= at_ts + window]
            sample.payload["active_alerts"] = active
            category = self.rules.categorise(Facts.of(sample.reason, sample.payload))
            batch.samples.append(dataclasses.replace(sample, category=category))
        batch.cases.clear()

    def _flag_drift_window(self, alert: Alert, batch: _Batch) -> None:
        """Flag an even sample of the model's predictions up to the alert's event."""
        d = self.settings.detect
        state = self.models.get(alert.model)
        if state is None or d.drift_samples == 0:
            return
        window = state.recent_events(alert.at_event)[-d.drift_window:]
        step = max(1, len(window) // d.drift_samples)
        # A prediction in the windows of two alerts is flagged once, in whichever batches they come.
        flagged = self._drift_flagged.setdefault(alert.model, {})
        for event in window[::-1][::step][: d.drift_samples]:
            if event["event_id"] in flagged:
                continue
            flagged[event["event_id"]] = None
            if len(flagged) > d.drift_window:  # older ones have left every window
                del flagged[next(iter(flagged))]
            clean = self._redact(event, batch)
            batch.samples.append(FlaggedSample(
                event_id=clean["event_id"], model=alert.model, model_version=event.get("model_version"),
                reason=alert.kind, detail=f"{alert.detector}:{alert.feature}", event_ts=event["ts"],
                payload={"prediction": clean, "alert": alert.to_dict()},
            ))
            batch.flagged[(self._label(alert.model), alert.kind)] += 1

    def _label(self, model: str) -> str:
        return model if model in self.models else OTHER

    # -- metrics ----------------------------------------------------------------------
    def _totals(self) -> dict[tuple[str, tuple[str, ...]], float]:
        """Running totals kept by the pipeline's parts, as counter name and labels."""
        totals: dict[tuple[str, tuple[str, ...]], float] = {
            (JOIN.name, (k,)): v for k, v in self.joiner.counts.items()
            if k != "evicted_waiting"  # a cause of "orphaned", shown as a bound overflow
        }
        overflow = BOUND_OVERFLOW.name
        totals[(overflow, ("models",))] = self.model_labels.overflowed
        totals[(overflow, ("join_predictions",))] = self.joiner.counts["evicted"]
        totals[(overflow, ("join_feedback",))] = self.joiner.counts["evicted_waiting"]
        totals[(overflow, ("traffic_slices",))] = self._slice_overflow
        totals[(overflow, ("segment_keys",))] = sum(s.segments.folded_keys for s in self.models.values())
        totals[(overflow, ("segment_values",))] = sum(s.segments.folded_values for s in self.models.values())
        features = versions = categories = 0
        for state in self.models.values():
            evicted, folded = state.folds()
            versions += evicted
            categories += folded
            dropped, mismatches, sampled = state.counts()
            features += dropped
            totals[(FEATURE_TYPE_MISMATCHES.name, (state.name,))] = mismatches
            totals[(DRIFT_TESTED_PREDICTIONS.name, (state.name,))] = sampled
        totals[(overflow, ("features",))] = features
        totals[(overflow, ("model_versions",))] = versions
        totals[(overflow, ("categories",))] = categories
        return totals

    def _fold_judgements(self, state: ModelState) -> None:
        """Canary verdicts and differences, fairness ratios, estimated error rates (under the metrics lock)."""
        m = self.metrics
        for version, baseline in state.take_ended_canaries():
            m.remove_where((CANARY_VERDICT, CANARY_DIFFERENCE), model=state.name, model_version=version,
                           baseline_version=baseline)
        canaries, ratios = state.judgements()
        for version, baseline, verdict, differences in canaries:
            for name in ("pass", "fail", "inconclusive"):
                m.set(CANARY_VERDICT, (state.name, version, baseline, name), float(name == verdict))
            for metric, estimate, low, high in differences:
                for bound, value in (("estimate", estimate), ("lower", low), ("upper", high)):
                    m.set(CANARY_DIFFERENCE, (state.name, version, baseline, metric, bound), value)
        for attribute, metric, group, ratio, low, high in ratios:
            for bound, value in (("estimate", ratio), ("lower", low), ("upper", high)):
                m.set(FAIRNESS_RATIO, (state.name, attribute, group, metric, bound), value)
        for version, versioned in state.versions.items():
            if versioned.estimate is not None and not math.isnan(versioned.estimate.last):
                m.set(ESTIMATED_ERROR, (state.name, version), versioned.estimate.last)

    def _fold_metrics(self, batch: _Batch, result: BatchResult, gauges: list[tuple[str, GaugeRow]]) -> None:
        totals = self._totals()
        deltas = {key: v - self._last_totals.get(key, 0) for key, v in totals.items()}
        self._last_totals = totals
        alerts = Counter((a.model, a.kind, a.detector) for a in result.alerts)
        j, d, sg = self.settings.join, self.settings.detect, self.settings.segments
        versions = sum(len(s.versions) for s in self.models.values())
        features = sum(len(v.features) for s in self.models.values() for v in s.versions.values())
        m = self.metrics
        with m.lock:
            m.inc_many(EVENTS, batch.events)
            m.inc_many(INVALID_EVENTS, batch.invalid)
            m.inc_many(PREDICTIONS, batch.predictions)
            m.inc_many(BUSINESS_EVENTS, batch.business)
            m.inc_many(FEEDBACK, batch.feedback)
            m.inc_many(FLAGGED_SAMPLES, batch.flagged)
            m.inc_many(REDACTIONS, batch.redactions)
            m.inc_many(ALERTS, alerts)
            for (name, labels), delta in deltas.items():
                if delta:
                    m.inc(_TOTALLED[name], labels, delta)
            for state in self.models.values():
                for version in state.take_evicted():
                    m.remove_where(_VERSION_METRICS, model=state.name, model_version=version)
            for model, (version, kind, feature, detector, score, threshold) in gauges:
                labels = (model, version, kind, feature, detector)
                m.set(DETECTOR_SCORE, labels, score)
                m.set(DETECTOR_THRESHOLD, labels, threshold)
            for state in batch.touched.values():
                for (key, value), counts in state.take_slice_counts():
                    for event, n in zip(SEGMENT_EVENT_NAMES, counts, strict=True):
                        if n:
                            m.inc(SEGMENT_EVENTS, (state.name, key, value, event), n)
                for key, value in state.take_evicted_slices():
                    m.remove_where((SEGMENT_EVENTS,), model=state.name, segment=key, value=value)
                self._fold_judgements(state)
                for version, latencies in state.take_latencies().items():
                    m.observe_many(PREDICTION_LATENCY, (state.name, version), latencies)
                if state.last_ts:
                    m.set(LAST_EVENT_TIMESTAMP, (state.name,), state.last_ts)
            for bound, entries, capacity in (
                ("join_predictions", self.joiner.predictions, j.max_predictions),
                ("join_feedback", self.joiner.pending, j.max_pending),
                ("models", len(self.models), d.max_models),
                ("model_versions", versions, d.max_models * d.max_versions),
                ("features", features, d.max_models * d.max_versions * d.max_features),
                ("traffic_slices", sum(map(len, self._slices.values())),
                 d.max_models * self.settings.badcases.max_slices),
                ("segment_keys", sum(len(s.segments.keys) for s in self.models.values()),
                 d.max_models * sg.max_keys),
                ("segment_values", sum(s.segments.watched_values() for s in self.models.values()),
                 d.max_models * sg.max_keys * sg.max_values),
            ):
                m.set(BOUND_ENTRIES, (bound,), entries)
                m.set(BOUND_CAPACITY, (bound,), capacity)
