"""Group fairness on a stream: each group's positive rate against a reference group's.

For one protected attribute and one 0/1 outcome (approved, shown, flagged),
``GroupParity`` keeps the last ``window`` decisions of all groups together and, every
``check_every`` decisions, the ratio of each group's rate to the reference group's with
its Katz confidence interval. A group is out of parity when the whole interval lies
outside ``[min_ratio, 1/min_ratio]``: the four-fifths rule (Aequitas and Arize call a
group fair within 0.8-1.25 of the reference), asked with confidence, so that a small
group's noise is not taken for a gap. Both directions count: whether a positive
outcome is an advantage depends on the metric, which the caller knows.

A gap fires once, when it appears; the group re-arms when its ratio is back inside the
band (its interval then overlaps the band too), so a persistent gap is one alert, not
one per check, even when its interval's bound wanders across the band's edge. ``ratios()`` keeps the
last check's ratios for gauges: a small gap inside the band is a number to watch, not
an alert.

Checks fall at positions counted since creation, so a stream cut into batches in any
way gives the same fires at the same places.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from detectors.base import Window, require
from detectors.critical import normal_critical_value


class GapFire(NamedTuple):
    """A group out of parity: where in the batch, which group, its rate ratio to the
    reference group's and that ratio's confidence interval."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, as Fire.index does
    group: int
    ratio: float
    low: float
    high: float


def rate_ratio_interval(x1: int, n1: int, x0: int, n0: int, confidence: float) -> tuple[float, float, float]:
    """The ratio ``(x1/n1) / (x0/n0)`` of a group's rate to the reference group's, with
    its two-sided Katz log interval at ``confidence``:
    ``exp(log ratio +- z sqrt(1/x1 - 1/n1 + 1/x0 - 1/n0))``.

    When either count of positives is 0 the ratio (0 or infinite) and its log standard
    error do not exist; then 0.5 is added to each cell of the 2x2 table (to each count
    of positives and of negatives, so 1 to each ``n``: the Haldane-Anscombe correction),
    which gives a finite ratio and a wide interval instead.

    >>> ratio, low, high = rate_ratio_interval(30, 100, 60, 100, 0.95)
    >>> round(ratio, 3), round(low, 3), round(high, 3)
    (0.5, 0.356, 0.702)
    >>> [round(v, 3) for v in rate_ratio_interval(0, 50, 10, 100, 0.95)]
    [0.094, 0.006, 1.577]
    """
    require(n1 > 0 and n0 > 0, f"both groups need decisions, got n1={n1}, n0={n0}")
    require(0 <= x1 <= n1 and 0 <= x0 <= n0, "positives must be between 0 and the decisions")
    require(0.0 < confidence < 1.0, f"confidence must be in (0, 1), got {confidence}")
    a, b, c, d = float(x1), float(n1), float(x0), float(n0)
    if x1 == 0 or x0 == 0:
        a, b, c, d = a + 0.5, b + 1.0, c + 0.5, d + 1.0
    ratio = (a / b) / (c / d)
    se = math.sqrt(1.0 / a - 1.0 / b + 1.0 / c - 1.0 / d)
    z = normal_critical_value(1.0 - confidence)
    return ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se)


class GroupParity:
    """Windowed, batch-invariant parity of one 0/1 outcome across groups of one attribute.

    Group codes are small ints (0 to ``max_groups - 1``) the caller assigns. The
    reference group is ``reference``, or else the group with the most decisions in
    the window at the check (the lowest code on a tie).

    **False alarms**: a group whose rate equals the reference's fires at a check only
    if its ``confidence`` interval excludes the whole band, which needs the interval to
    miss the true ratio (1) by the band's width as well: far rarer than
    ``(1 - confidence) / 2`` per group and check. The tests measure none over 1,000
    checks of a fair stream.

    >>> rng = np.random.default_rng(3)
    >>> groups = rng.choice(3, size=20000, p=[0.6, 0.3, 0.1])
    >>> outcomes = rng.random(20000) < np.array([0.3, 0.3, 0.15])[groups]
    >>> parity = GroupParity()
    >>> [(f.group, round(f.ratio, 2)) for f in parity.update_many(groups, outcomes)]
    [(2, 0.52)]
    >>> sorted(parity.ratios())
    [1, 2]
    """

    name = "rate_ratio"

    def __init__(
        self,
        min_ratio: float = 0.8,
        min_group_size: int = 100,
        window: int = 5000,
        check_every: int = 200,
        confidence: float = 0.99,
        reference: int | None = None,
        max_groups: int = 1024,
    ) -> None:
        require(0.0 < min_ratio < 1.0, f"min_ratio must be in (0, 1), got {min_ratio}")
        require(min_group_size >= 1, f"min_group_size must be >= 1, got {min_group_size}")
        require(window >= 1, f"window must be >= 1, got {window}")
        require(check_every >= 1, f"check_every must be >= 1, got {check_every}")
        require(0.0 < confidence < 1.0, f"confidence must be in (0, 1), got {confidence}")
        require(max_groups >= 2, f"max_groups must be >= 2, got {max_groups}")
        require(reference is None or 0 <= reference < max_groups, f"reference must be a group code, got {reference}")
        self.min_ratio = min_ratio
        self.min_group_size = min_group_size
        self.window = window
        self.check_every = check_every
        self.confidence = confidence
        self.reference = reference
        self.max_groups = max_groups
        # One ring buffer of ``2 * group + outcome``: a group and its outcome leave the window together.
        self._cells = Window(window, dtype=np.int64)
        self._seen = 0  # decisions since creation: checks fall where it is a multiple of check_every
        self._alerted: set[int] = set()  # groups out of parity since their fire (not yet re-armed)
        self._ratios: dict[int, tuple[float, float, float]] = {}

    def ratios(self) -> dict[int, tuple[float, float, float]]:
        """Group code -> (ratio, low, high) to the reference group, as of the last check
        (groups with at least ``min_group_size`` decisions in the window then)."""
        return dict(self._ratios)

    def update_many(self, groups: np.ndarray, outcomes: np.ndarray) -> list[GapFire]:
        """Feed decisions in order: each one's group code and 0/1 outcome. Return a
        ``GapFire`` for each group found out of parity, ``index`` being the position in
        the batch of the decision at whose check it was found."""
        codes = np.asarray(groups)
        ones = np.asarray(outcomes) != 0
        require(codes.shape == ones.shape and codes.ndim == 1, "groups and outcomes must be 1-d and of one length")
        if len(codes) == 0:
            return []
        require(np.issubdtype(codes.dtype, np.integer), "group codes must be integers")
        require(bool(codes.min() >= 0) and bool(codes.max() < self.max_groups),
                f"group codes must be in [0, {self.max_groups})")
        cells = 2 * codes.astype(np.int64) + ones
        fires: list[GapFire] = []
        start = 0
        # Positions in the batch after which a check falls (the decision that makes _seen a multiple).
        first = (-self._seen - 1) % self.check_every
        for at in range(first, len(cells), self.check_every):
            self._cells.extend(cells[start:at + 1])
            start = at + 1
            fires.extend(self._check(at))
        self._cells.extend(cells[start:])
        self._seen += len(cells)
        return fires

    def _check(self, at: int) -> list[GapFire]:
        cells = self._cells.values()
        groups = int(cells.max()) // 2 + 1 if len(cells) else 0
        # Rows are groups (grown to the largest code seen in the window), columns outcomes 0 and 1.
        counts = np.bincount(cells, minlength=2 * groups).reshape(groups, 2)
        n = counts.sum(axis=1)
        x = counts[:, 1]
        reference = int(np.argmax(n)) if self.reference is None else self.reference
        self._ratios = {}
        if reference >= len(n) or n[reference] < self.min_group_size:
            return []
        low_band, high_band = self.min_ratio, 1.0 / self.min_ratio
        fires: list[GapFire] = []
        for group in np.flatnonzero(n >= self.min_group_size).tolist():
            if group == reference:
                continue
            ratio, low, high = rate_ratio_interval(int(x[group]), int(n[group]), int(x[reference]),
                                                   int(n[reference]), self.confidence)
            self._ratios[group] = (ratio, low, high)
            outside = high < low_band or low > high_band
            if outside and group not in self._alerted:
                self._alerted.add(group)
                fires.append(GapFire(at, group, ratio, low, high))
            elif low_band <= ratio <= high_band:
                # Re-armed once the ratio itself is back in the band. "The interval overlaps the
                # band" alone is not enough: a gap near the band's edge has a bound that wanders
                # across the edge from check to check, which made one gap ten alerts.
                self._alerted.discard(group)
        return fires
