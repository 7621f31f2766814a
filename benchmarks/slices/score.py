"""Scoring alerts against a slice stream's change and expected alert identity.

Every alert (a dict as ``monitor replay --alerts-out`` writes it) is exactly one of:

* **before**: at an event before the change (or on a stream without one): a false alarm,
  whatever it says.
* **correct**: at or after the change and matching ``expect`` (kind, model, segment
  exactly, and the detector, feature, model_version and baseline_version it names). The
  first is the detection; its delay is ``at_event - change_at`` in events (the stream's
  lines, feedback included).
* **also**: at or after the change, not ``expect`` but one of the stream's ``also``
  identities: a true consequence of the change that is not what the stream tests (the
  whole model's error rate, or another key's segments, which all hold some of the changed
  slice; the covariate shift behind an estimated decay). Not a false alarm; the first
  delay of each is reported.
* **other**: at or after the change and neither: a false alarm (the wrong segment,
  the wrong version, the other model, a detector about something that did not change).

False alarms per million events are over all the stream's events.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from benchmarks.slices.streams import SliceStream


@dataclass
class SliceScore:
    stream: str
    config: str
    changed: bool
    events: int
    alerts: int = 0
    detected: bool = False
    delay: int | None = None
    first_alert: dict[str, Any] | None = None
    correct: int = 0
    false_before: int = 0
    false_other: int = 0
    also: dict[str, int] = field(default_factory=dict)  # also-identity -> delay of its first alert
    false_examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def false_alarms(self) -> int:
        return self.false_before + self.false_other

    @property
    def fa_per_million(self) -> float:
        return self.false_alarms / self.events * 1e6 if self.events else 0.0


def score(stream: SliceStream, alerts: list[dict[str, Any]], config: str, examples: int = 5) -> SliceScore:
    change = stream.change_at
    result = SliceScore(stream.name, config, change is not None, len(stream.events), alerts=len(alerts))
    for alert in sorted(alerts, key=lambda a: a["at_event"]):
        at = alert["at_event"]
        if change is None or at < change:
            result.false_before += 1
        elif stream.expect is not None and stream.expect.matches(alert):
            result.correct += 1
            if not result.detected:
                result.detected, result.delay, result.first_alert = True, at - change, alert
            continue
        elif (hit := next((e for e in stream.also if e.matches(alert)), None)) is not None:
            result.also.setdefault(hit.describe(), at - change)
            continue
        else:
            result.false_other += 1
        if len(result.false_examples) < examples:
            result.false_examples.append(alert)
    return result


@dataclass
class ConfigSummary:
    config: str
    changed: int = 0
    detected: int = 0
    delays: list[int] = field(default_factory=list)
    false_alarms: int = 0
    events: int = 0
    stationary_false: int = 0
    stationary_events: int = 0

    @property
    def fa_per_million(self) -> float:
        return self.false_alarms / self.events * 1e6 if self.events else 0.0

    @property
    def stationary_per_million(self) -> float:
        return self.stationary_false / self.stationary_events * 1e6 if self.stationary_events else 0.0

    @property
    def median_delay(self) -> float | None:
        return statistics.median(self.delays) if self.delays else None


def summarise(config: str, scores: list[SliceScore]) -> ConfigSummary:
    s = ConfigSummary(config)
    for r in scores:
        s.false_alarms += r.false_alarms
        s.events += r.events
        if r.changed:
            s.changed += 1
            if r.detected:
                s.detected += 1
                s.delays.append(r.delay or 0)
        else:
            s.stationary_false += r.false_alarms
            s.stationary_events += r.events
    return s
