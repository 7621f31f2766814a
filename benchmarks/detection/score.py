"""Scoring detections against the known change points.

Per stream and detector:
* detected: an alert of an expected kind at or after the change (a pseudo-detector's
  alarm counts as any kind); missed otherwise.
* delay: events from the change to that first correct alert.
* false alarms: every alert before the change, and every alert on a stream with no
  change. Events before the change (or the whole no-change stream) are the events
  "under no change" that false alarms are counted per million of.
* attribution: of the correct alerts on a feature-level change, the share that name a
  feature that really changed.

Per detector: detection rate, median and mean delay, false alarms per million
events, MTFA (events under no change per false alarm), MTD (mean delay) and the mean
time ratio MTR = MTFA / MTD x (1 - missed rate): higher is better, infinite when
there were no false alarms.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

WILDCARD = "*"


@dataclass
class StreamScore:
    stream: str
    family: str
    changed: bool
    detected: bool = False
    delay: int | None = None
    false_alarms: int = 0
    h0_events: int = 0
    correct_alerts: int = 0
    attributed: int = 0
    seconds: float = 0.0
    events: int = 0
    first_alert: list[Any] | None = None


def score_stream(stream: Any, alerts: list[tuple[int, str, str | None, str]], seconds: float) -> StreamScore:
    change = stream.change_at
    result = StreamScore(stream.name, stream.family, change is not None, seconds=seconds, events=len(stream.events))
    result.h0_events = change if change is not None else len(stream.events)
    ordered = sorted(alerts)
    result.false_alarms = sum(1 for a in ordered if change is None or a[0] < change)
    if change is None:
        return result
    correct = [a for a in ordered if a[0] >= change and (a[1] == WILDCARD or a[1] in stream.expect_kinds)]
    result.correct_alerts = len(correct)
    if correct:
        result.detected = True
        result.delay = correct[0][0] - change
        result.first_alert = list(correct[0])
    if stream.expect_features:
        result.attributed = sum(1 for a in correct if a[2] in stream.expect_features)
    return result


@dataclass
class Summary:
    detector: str
    changed: int = 0
    detected: int = 0
    delays: list[int] = field(default_factory=list)
    false_alarms: int = 0
    h0_events: int = 0
    attributed: int = 0
    attributable: int = 0
    seconds: float = 0.0
    events: int = 0

    @property
    def missed_rate(self) -> float:
        return 1 - self.detected / self.changed if self.changed else 0.0

    @property
    def fa_per_million(self) -> float:
        return self.false_alarms / self.h0_events * 1e6 if self.h0_events else 0.0

    @property
    def mtfa(self) -> float:
        return self.h0_events / self.false_alarms if self.false_alarms else math.inf

    @property
    def mtd(self) -> float:
        return statistics.fmean(self.delays) if self.delays else math.inf

    @property
    def mtr(self) -> float:
        if not self.delays:
            return 0.0
        return self.mtfa / max(self.mtd, 1.0) * (1 - self.missed_rate)

    @property
    def median_delay(self) -> float | None:
        return statistics.median(self.delays) if self.delays else None

    @property
    def us_per_event(self) -> float:
        return self.seconds / self.events * 1e6 if self.events else 0.0


def summarise(detector: str, scores: list[StreamScore], expect_features: dict[str, bool]) -> Summary:
    s = Summary(detector)
    for r in scores:
        s.false_alarms += r.false_alarms
        s.h0_events += r.h0_events
        s.seconds += r.seconds
        s.events += r.events
        if r.changed:
            s.changed += 1
            if r.detected:
                s.detected += 1
                s.delays.append(r.delay or 0)
            if expect_features.get(r.stream):
                s.attributed += r.attributed
                s.attributable += r.correct_alerts
    return s
