"""SLO burn: how fast the error budget is being spent, over two windows.

Fed 0/1 values (1 = a bad request: over the latency threshold, or failed), it fires
when the share of bad requests is at least ``factor`` times the budget
(``1 - objective``) over both the last ``long_window`` and the last
``short_window`` requests: the multi-window burn-rate rule of the Google SRE
workbook, with windows counted in requests so that a replay fires where the daemon
did. It fires once per episode and re-arms when the long-window burn falls below
``factor`` again.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from detectors.base import Detector, Fire, require


class BurnRate(Detector):
    """Multi-window error-budget burn rate on a stream of 0/1 (1 = bad request).

    >>> detector = BurnRate(objective=0.99, long_window=1000, short_window=100, factor=10)
    >>> stream = np.zeros(3000)
    >>> stream[2000:] = np.arange(1000) % 5 == 0  # 20% bad from event 2000 on
    >>> [(f.index, round(f.score, 1)) for f in detector.update_many(stream)]
    [(2495, 10.0)]
    """

    name = "burn_rate"

    def __init__(
        self,
        objective: float = 0.99,
        long_window: int = 2000,
        short_window: int = 200,
        factor: float = 10.0,
    ) -> None:
        super().__init__()
        require(0.0 < objective < 1.0, f"objective must be in (0, 1), got {objective}")
        require(1 <= short_window <= long_window,
                f"need 1 <= short_window <= long_window, got {short_window}, {long_window}")
        require(factor > 0.0, f"factor must be > 0, got {factor}")
        self.objective = objective
        self.long_window = long_window
        self.short_window = short_window
        self.factor = factor
        self._budget = 1 - Fraction(str(objective))
        self._limit = Fraction(str(factor)) * self._budget
        self._reset()

    @property
    def threshold(self) -> float:
        return float(self.factor)

    @property
    def ready(self) -> bool:
        return len(self._tail) >= self.short_window

    def _reset(self) -> None:
        super()._reset()
        self._score = 0.0
        self._tail = np.zeros(0, dtype=np.int64)
        self._armed = True

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        if len(values) == 0:
            return []
        old = len(self._tail)
        buf = np.concatenate((self._tail, (values != 0).astype(np.int64)))
        csum = np.concatenate(([0], np.cumsum(buf)))
        ends = np.arange(old + 1, len(buf) + 1)  # window end (exclusive) at each new value
        long_len = np.minimum(ends, self.long_window)
        long_bad = csum[ends] - csum[ends - long_len]
        short_bad = csum[ends] - csum[np.maximum(ends - self.short_window, 0)]
        # Decide in exact integer arithmetic: bad / n >= factor * budget, with factor * budget
        # = num / den as written in decimal (1 - 0.99 in floats is 0.010000000000000009).
        num, den = self._limit.numerator, self._limit.denominator
        long_burning = long_bad * den >= num * long_len
        firing = long_burning & (short_bad * den >= num * self.short_window) & (ends >= self.short_window)
        # One correctly rounded division: a burn of exactly `factor` scores exactly `factor`.
        burn = (long_bad * self._budget.denominator) / (long_len * self._budget.numerator)
        fires: list[Fire] = []
        i = 0
        while i < len(ends):
            if self._armed:
                hits = np.flatnonzero(firing[i:])
                if len(hits) == 0:
                    break
                i += int(hits[0])
                fires.append(Fire(i, float(burn[i]), self.factor))
                self._armed = False
            else:
                calm = np.flatnonzero(~long_burning[i:])
                if len(calm) == 0:
                    break
                i += int(calm[0])
                self._armed = True
            i += 1
        self._score = float(burn[-1])
        self._tail = buf[-self.long_window:]
        return fires
