"""SLO burn: how fast the error budget is being spent, over two windows, in up to two tiers.

Fed 0/1 values (1 = a bad request: over the latency threshold, or failed), a tier
fires when the share of bad requests is at least ``factor`` times the budget
(``1 - objective``) over both its last ``long_window`` and its last
``short_window`` requests: the multi-window burn-rate rule of the Google SRE
workbook, with windows counted in requests so that a replay fires where the daemon
did. A tier fires once per episode, never before its long window is full, and
re-arms when its long-window burn falls below its factor again.

The fast tier (a high factor over short windows, the workbook's "page") catches a
regression within hundreds of requests; the optional slow tier (a lower factor over
longer windows, its "ticket") catches a smaller one that would still spend the
budget. The slow tier keeps quiet while the fast one is firing: one alert per
regression, and a second only if a slow burn turns into a fast one.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from detectors.base import Detector, Fire, require


class _Tier:
    """One (long window, short window, factor) rule and its episode state."""

    def __init__(self, objective: float, long_window: int, short_window: int, factor: float) -> None:
        require(1 <= short_window <= long_window,
                f"need 1 <= short_window <= long_window, got {short_window}, {long_window}")
        require(factor > 0.0, f"factor must be > 0, got {factor}")
        self.long_window = long_window
        self.short_window = short_window
        self.factor = factor
        self.budget = 1 - Fraction(str(objective))
        self.limit = Fraction(str(factor)) * self.budget
        self.tail = np.zeros(0, dtype=np.int64)
        self.armed = True

    def scan(self, bits: np.ndarray) -> tuple[list[Fire], list[tuple[int, int]], float]:
        """Fires, the index ranges [start, end) in which the tier was firing, and the last burn."""
        old = len(self.tail)
        buf = np.concatenate((self.tail, bits))
        csum = np.concatenate(([0], np.cumsum(buf)))
        ends = np.arange(old + 1, len(buf) + 1)  # window end (exclusive) at each new value
        long_len = np.minimum(ends, self.long_window)
        long_bad = csum[ends] - csum[ends - long_len]
        short_bad = csum[ends] - csum[np.maximum(ends - self.short_window, 0)]
        # Decide in exact integer arithmetic: bad / n >= factor * budget, with factor * budget
        # = num / den as written in decimal (1 - 0.99 in floats is 0.010000000000000009).
        num, den = self.limit.numerator, self.limit.denominator
        long_burning = long_bad * den >= num * long_len
        # Not before the long window is full: a burn measured over the first few hundred
        # requests is the short window's noise, not a trend.
        firing = long_burning & (short_bad * den >= num * self.short_window) & (ends >= self.long_window)
        # One correctly rounded division: a burn of exactly `factor` scores exactly `factor`.
        burn = (long_bad * self.budget.denominator) / (long_len * self.budget.numerator)
        fires: list[Fire] = []
        episodes: list[tuple[int, int]] = []
        start = None if self.armed else 0
        i = 0
        while i < len(ends):
            if self.armed:
                hits = np.flatnonzero(firing[i:])
                if len(hits) == 0:
                    break
                i += int(hits[0])
                fires.append(Fire(i, float(burn[i]), float(self.factor)))
                self.armed, start = False, i
            else:
                calm = np.flatnonzero(~long_burning[i:])
                if len(calm) == 0:
                    break
                i += int(calm[0])
                episodes.append((start or 0, i))
                self.armed, start = True, None
            i += 1
        if start is not None:
            episodes.append((start, len(ends)))
        self.tail = buf[-self.long_window:]
        return fires, episodes, float(burn[-1])


class BurnRate(Detector):
    """Multi-window error-budget burn rate on a stream of 0/1 (1 = bad request).

    >>> detector = BurnRate(objective=0.99, long_window=1000, short_window=100, factor=10)
    >>> stream = np.zeros(3000)
    >>> stream[2000:] = np.arange(1000) % 5 == 0  # 20% bad from event 2000 on
    >>> [(f.index, round(f.score, 1)) for f in detector.update_many(stream)]
    [(2495, 10.0)]

    With a slow tier, a regression too small for the fast one is still caught:

    >>> detector = BurnRate(0.99, 1000, 100, 10, slow_long_window=5000, slow_short_window=500, slow_factor=3)
    >>> stream = np.zeros(12000)
    >>> stream[4000:] = np.arange(8000) % 25 == 0  # 4% bad: a burn of 4
    >>> [(f.index, f.test, round(f.score, 2)) for f in detector.update_many(stream)]
    [(7725, 'slow', 3.0)]
    """

    name = "burn_rate"

    def __init__(
        self,
        objective: float = 0.99,
        long_window: int = 2000,
        short_window: int = 200,
        factor: float = 10.0,
        slow_long_window: int = 0,
        slow_short_window: int = 0,
        slow_factor: float = 0.0,
    ) -> None:
        super().__init__()
        require(0.0 < objective < 1.0, f"objective must be in (0, 1), got {objective}")
        require(slow_factor >= 0.0, f"slow_factor must be >= 0 (0: no slow tier), got {slow_factor}")
        self.objective = objective
        self.long_window = long_window
        self.short_window = short_window
        self.factor = factor
        self.slow_long_window = slow_long_window
        self.slow_short_window = slow_short_window
        self.slow_factor = slow_factor
        _Tier(objective, long_window, short_window, factor)  # validates the fast tier's arguments
        if slow_factor:
            _Tier(objective, slow_long_window, slow_short_window, slow_factor)
        self._reset()

    @property
    def threshold(self) -> float:
        return float(self.factor)

    @property
    def ready(self) -> bool:
        return len(self._fast.tail) >= self.long_window

    def _reset(self) -> None:
        super()._reset()
        self._score = 0.0
        self._fast = _Tier(self.objective, self.long_window, self.short_window, self.factor)
        self._slow = (_Tier(self.objective, self.slow_long_window, self.slow_short_window, self.slow_factor)
                      if self.slow_factor else None)

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        if len(values) == 0:
            return []
        bits = (values != 0).astype(np.int64)
        fires, fast_episodes, self._score = self._fast.scan(bits)
        if self._slow is not None:
            slow_fires, _, _ = self._slow.scan(bits)
            fires = fires + [
                f._replace(test="slow") for f in slow_fires
                if not any(start <= f.index < end for start, end in fast_episodes)
            ]
            fires.sort(key=lambda f: f.index)
        return fires
