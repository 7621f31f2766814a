"""Judgements across the versions and groups of one model: canaries and fairness.

A ``Canary`` compares a newer version with its baseline on the same live stream, one
always-valid sequential test per metric (``detectors.SequentialComparison``); a
``Fairness`` watches one protected attribute, one windowed parity monitor per metric
(``detectors.GroupParity``). Both take this batch's values with their stream
positions and test them in stream order at ``flush``, so every runner and every cut
of the stream into batches gives the same judgements.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from detectors import GroupParity, SequentialComparison
from monitor.config import CanarySettings, FairnessSettings

#: What a canary is compared on; the alert's ``detector``.
CANARY_METRICS = ("error_rate", "negative_feedback_rate", "availability", "latency", "prediction.score")
#: What fairness is judged on; the alert's ``detector``.
FAIRNESS_METRICS = ("demographic_parity", "equal_opportunity", "false_positive_rate")
OTHER_GROUP = "__other__"


class Judged(NamedTuple):
    """A judgement that fired: the metric, the stream position, score and threshold."""

    metric: str
    position: int
    score: float
    threshold: float
    group: str | None = None


class _Pending:
    """One metric's values of this batch, with their positions and arms or groups."""

    __slots__ = ("keys", "positions", "values")

    def __init__(self) -> None:
        self.positions: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []

    def add(self, positions: np.ndarray, values: np.ndarray, keys: np.ndarray) -> None:
        if len(positions):
            self.positions.append(np.asarray(positions, dtype=np.int64))
            self.values.append(np.asarray(values, dtype=np.float64))
            self.keys.append(keys)

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Everything added, in stream order (stable: values at one position keep their order)."""
        if not self.positions:
            return None
        positions, values, keys = (np.concatenate(x) for x in (self.positions, self.values, self.keys))
        self.positions, self.values, self.keys = [], [], []
        order = np.argsort(positions, kind="stable")
        return positions[order], values[order], keys[order]


class Canary:
    """A newer version (``version``) judged against its ``baseline``, metric by metric.

    ``canary.alpha`` is split equally among the metrics, so a canary as good as its
    baseline is failed on any of them with probability at most ``alpha`` over its whole
    rollout. Its verdict: ``fail`` once any metric failed; ``pass`` when every metric
    with values from both versions passed (and at least one has); else ``inconclusive``.
    """

    __slots__ = ("baseline", "pending", "started_at", "tests", "version")

    def __init__(self, version: str, baseline: str, settings: CanarySettings) -> None:
        self.version = version
        self.baseline = baseline
        #: The stream position from which it judges (-1: not yet, see ModelState._warm_canaries);
        #: values of earlier positions are not counted.
        self.started_at = -1
        alpha = settings.alpha / len(CANARY_METRICS)
        self.tests = {m: SequentialComparison(alpha, settings.min_samples, settings.tolerance,
                                              "two_sided" if m == "prediction.score" else "higher_is_worse")
                      for m in CANARY_METRICS}
        self.pending = {m: _Pending() for m in CANARY_METRICS}

    def add(self, metric: str, positions: np.ndarray, values: np.ndarray, canary: bool) -> None:
        if self.started_at < 0:
            return
        if len(positions) and positions[0] <= self.started_at:
            kept = positions > self.started_at
            positions, values = positions[kept], values[kept]
        self.pending[metric].add(positions, values, np.full(len(positions), canary, dtype=bool))

    def flush(self) -> Iterator[Judged]:
        for metric, pending in self.pending.items():
            taken = pending.take()
            if taken is None:
                continue
            positions, values, arms = taken
            test = self.tests[metric]
            for fire in test.update_many(values, arms):
                yield Judged(metric, int(positions[fire.index]), fire.score, fire.threshold)

    @property
    def verdict(self) -> str:
        verdicts = [t.verdict for t in self.tests.values() if min(t.counts) > 0]
        if "fail" in verdicts:
            return "fail"
        return "pass" if verdicts and all(v == "pass" for v in verdicts) else "inconclusive"

    def differences(self) -> Iterator[tuple[str, float, float, float]]:
        """(metric, estimate, lower, upper) of canary minus baseline, for metrics judged so far."""
        for metric, test in self.tests.items():
            low, high = test.interval
            if math.isfinite(low) and math.isfinite(high):
                yield metric, (low + high) / 2, low, high


def favorable(outputs: Any, settings: FairnessSettings) -> bool | None:
    """Whether a prediction's outputs are the favourable outcome; None if they do not say.

    >>> s = FairnessSettings(favorable_label="approve")
    >>> favorable({"label": "approve"}, s), favorable({"label": "deny"}, s), favorable({}, s)
    (True, False, None)
    >>> favorable({"score": 0.7}, FairnessSettings())
    True
    """
    if not isinstance(outputs, dict):
        return None
    if settings.favorable_label:
        label = outputs.get("label")
        return None if label is None else label == settings.favorable_label
    score = outputs.get("score")
    if type(score) is not float and type(score) is not int:
        return None
    return bool(score >= settings.favorable_threshold)


def favorable_truth(truth: Any, settings: FairnessSettings) -> bool | None:
    """Whether a late label says the favourable outcome was the right one; None if it cannot say."""
    if settings.favorable_label:
        return None if truth is None else truth == settings.favorable_label
    if type(truth) is bool or truth in (0, 1):
        return bool(truth)
    return None


class Fairness:
    """One protected attribute of a model: each group's rates against the reference group's."""

    __slots__ = ("attribute", "codes", "max_groups", "min_ratio", "monitors", "names", "pending")

    def __init__(self, attribute: str, settings: FairnessSettings, max_groups: int) -> None:
        self.attribute = attribute
        self.max_groups = max_groups
        self.codes: dict[str, int] = {}
        self.names: list[str] = []
        reference = settings.references().get(attribute)
        if reference is not None:
            self.code(reference)  # code 0
        self.monitors = {m: GroupParity(settings.min_ratio, settings.min_group_size, settings.window,
                                        settings.check_every, settings.confidence,
                                        reference=0 if reference is not None else None, max_groups=max_groups + 1)
                         for m in FAIRNESS_METRICS}
        self.min_ratio = settings.min_ratio
        #: This batch's decisions per metric, in stream order: positions, groups, outcomes.
        self.pending: dict[str, tuple[list[int], list[int], list[float]]] = {m: ([], [], []) for m in FAIRNESS_METRICS}

    def code(self, group: str) -> int:
        code = self.codes.get(group)
        if code is None:
            if len(self.codes) >= self.max_groups:  # the rest are one group
                group = OTHER_GROUP
                code = self.codes.get(group)
            if code is None:
                code = self.codes[group] = len(self.names)
                self.names.append(group)
        return code

    def add(self, metric: str, position: int, group: str, outcome: bool) -> None:
        positions, groups, outcomes = self.pending[metric]
        positions.append(position)
        groups.append(self.code(group))
        outcomes.append(float(outcome))

    def flush(self) -> Iterator[Judged]:
        for metric, (positions, groups, outcomes) in self.pending.items():
            if not positions:
                continue
            fires = self.monitors[metric].update_many(np.asarray(groups, dtype=np.int64),
                                                      np.asarray(outcomes, dtype=np.float64))
            for fire in fires:
                bound = self.min_ratio if fire.ratio < 1 else 1 / self.min_ratio
                yield Judged(metric, positions[fire.index], round(fire.ratio, 6), round(bound, 6),
                             self.names[fire.group])
            self.pending[metric] = ([], [], [])

    def ratios(self) -> Iterator[tuple[str, str, float, float, float]]:
        """(metric, group, ratio, lower, upper) as of each metric's last check."""
        for metric, monitor in self.monitors.items():
            for code, (ratio, low, high) in monitor.ratios().items():
                yield metric, self.names[code], ratio, low, high
