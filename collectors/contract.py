"""The contract: event vocabularies and the records that cross package boundaries.

These are the small shared types every layer may import. Users, dashboards and
outside tools rely on the names here (see README, "Contract"): extend, never break.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

TRACKING_TYPES = frozenset({"prediction", "impression", "click", "conversion"})
FEEDBACK_TYPE = "feedback"
EVENT_TYPES = TRACKING_TYPES | {FEEDBACK_TYPE}
FEEDBACK_KINDS = frozenset({"thumbs_down", "thumbs_up", "complaint", "label", "correction"})
#: Feedback that counts toward the negative-feedback rate.
NEGATIVE_KINDS = frozenset({"thumbs_down", "complaint"})
#: Feedback that always becomes a flagged sample for retraining.
FLAGGED_KINDS = frozenset({"thumbs_down", "complaint", "correction"})
STATUSES = frozenset({"ok", "error"})

ALERT_KINDS = ("data_drift", "prediction_drift", "metric_decay", "feedback_spike", "slo_burn", "fairness_gap",
               "canary_regression", "estimated_decay")

#: Every reason a message can be dead-lettered for. A closed set: it is a metric label.
BAD_INPUT_REASONS = (
    "oversized",  # the message is larger than collect.max_message_bytes
    "empty",  # a message with no value (a tombstone)
    "not_utf8",
    "not_json",
    "non_finite_number",  # NaN or Infinity, which JSON does not allow
    "too_deep",  # nesting deeper than collect.max_depth
    "not_object",  # valid JSON, but not an object
    "missing_field",
    "wrong_type",
    "unknown_type",  # `type` is not one of the event types
    "unknown_kind",  # feedback `kind` is not one of the feedback kinds
    "bad_value",  # right type, impossible value (negative latency, bad status, ...)
    "bad_timestamp",  # unparsable, in milliseconds by mistake, or far in the future
    "too_large",  # too many features or a string over collect.max_string_length, or too many rows
    "not_arrow",  # the content-type header says Arrow IPC stream, the bytes are not one
)


class RawMessage(NamedTuple):
    """One message as a runner read it: Kafka record or a line of a file.

    ``encoding`` is ``"json"`` (one event) or ``"arrow"`` (an Arrow IPC stream of
    events, told by the ``content-type`` header; see ``collectors.arrow``). ``row`` is
    the row of an Arrow message a dead letter is about (-1: the whole message).

    A named tuple, not a frozen dataclass: one is made per message read, and a frozen
    dataclass sets each field through ``object.__setattr__`` (3x the cost, measured).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    encoding: str = "json"
    row: int = -1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that is not a valid event, with the reason it was rejected."""

    reason: str
    detail: str
    message: RawMessage


@dataclass(frozen=True, slots=True)
class Alert:
    """One detector firing, the same record in every runner.

    ``at_event`` is the 0-based position of the triggering message in the stream the
    runner read (the line index for a file); ``ts`` is that event's own timestamp, so
    a replay of the same events gives the same alerts.
    """

    kind: str
    model: str
    model_version: str | None
    feature: str | None
    detector: str
    score: float
    threshold: float
    at_event: int
    ts: float
    event_id: str = ""
    #: The slice an alert is about, ``{"KEY": "VALUE"}`` (values as text); None for the whole model.
    segment: dict[str, str] | None = None
    #: Of a ``canary_regression``: the version the canary (``model_version``) was compared with.
    baseline_version: str | None = None

    @property
    def key(self) -> str:
        """Stable identity: the same firing on the same event always has this key."""
        parts = [self.kind, self.model, self.model_version or "", self.feature or "", self.detector,
                 self.event_id or str(self.at_event)]
        if self.segment:  # only then: the keys of alerts about no slice stay as they were
            parts += [f"{k}={v}" for k, v in sorted(self.segment.items())]
        if self.baseline_version is not None:
            parts.append(f"baseline={self.baseline_version}")
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON object (field order as documented)."""
        return asdict(self)

    @property
    def severity_ratio(self) -> float:
        """How far past its threshold the score went (1.0 = at the threshold)."""
        return self.score / self.threshold if self.threshold else float("inf")


@dataclass(frozen=True, slots=True)
class FlaggedSample:
    """A case worth retraining on, already redacted.

    ``reason`` is the feedback kind (``thumbs_down``, ``complaint``, ``correction``,
    ``wrong_label``) or the alert kind of the window it was sampled from. A feedback
    sample is a *bad case*: ``category`` is what the ``[[badcases.rules]]`` made of it
    (None for drift-window samples).
    """

    event_id: str
    model: str
    model_version: str | None
    reason: str
    detail: str | None
    event_ts: float
    payload: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
