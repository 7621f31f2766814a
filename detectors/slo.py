"""SLO burn: how fast the error budget is being spent, over two windows, in up to two tiers.

Fed 0/1 values (1 = a bad request: over the latency threshold, or failed), a tier
fires when its last ``long_window`` requests hold significantly more bad ones than a
burn of exactly ``factor`` times the budget (``1 - objective``) would give, and its
last ``short_window`` requests still burn at least ``factor`` times the budget: the
multi-window burn-rate rule of the Google SRE workbook, with windows counted in
requests so that a replay fires where the daemon did, and with the long window's
noise accounted for. A tier fires once per episode, never before its long window is
full, and re-arms when its long-window burn falls below its factor again.

*Significantly more* is the critical count ``c`` of the long window: the fewest bad
requests whose chance under a steady burn of ``factor`` (each request bad with
probability ``p = factor x budget``, independently) is below the tier's level. A
tier can only start firing on a bad request (neither count rises on a good one),
and at a burn of at most ``factor`` those come at most once in ``1/p`` requests: each
bad request is a check, as a drift test's window every ``check_every`` values is,
and the tier spends its per-request share ``r`` of the false-alarm rate at a per-check
level of ``r / p``. Exactly: a fire at request ``t`` (but for the request that first
fills the long window) needs request ``t`` bad and at least ``c - 1`` bad among the
``long_window - 1`` before it, so under a steady burn of
at most ``factor`` the false alarms per request are at most
``p * P(Binomial(long_window - 1, p) >= c - 1) <= r``. The bound is conservative
(consecutive checks on overlapping windows agree, and a fire needs the short window
too); ``c`` is also always more than ``factor`` times the budget's share of the
window, so a fire's score (the long window's burn) is strictly above its threshold
(the factor). Errors that come in bursts (requests not independent) can fire more
often: the rate is stated for independent requests.

The fast tier (a high factor over short windows, the workbook's "page") catches a
large regression within a few thousand requests; the optional slow tier (a lower
factor over longer windows, its "ticket") catches a smaller one that would still
spend the budget. The slow tier keeps quiet while the fast one is firing: one alert
per regression, and a second only if a slow burn turns into a fast one. With a slow
tier each tier spends half of the detector's false-alarm rate.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from detectors.base import Detector, Fire, require
from detectors.critical import critical_count


class _Tier:
    """One (long window, short window, factor) rule, its critical count and its episode state."""

    def __init__(self, objective: float, long_window: int, short_window: int, factor: float,
                 rate: float) -> None:
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
        self.rate = rate  # false alarms per request this tier may spend

    @property
    def critical(self) -> int:
        return critical_count(self.long_window, self.limit, self.rate)

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
        # requests is the short window's noise, not a trend. Past the critical count the
        # long window's excess is more than noise at the tier's level; the short window
        # only says the burn is still going on.
        firing = ((long_bad >= self.critical) & (short_bad * den >= num * self.short_window)
                  & (ends >= self.long_window))
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

    ``false_alarm_rate`` is per request, under a steady burn of at most the factor;
    ``set_false_alarm_rate`` changes it (a share of the model's budget).

    >>> detector = BurnRate(objective=0.99, long_window=1000, short_window=100, factor=10)
    >>> detector.critical_counts  # a burn of 10 gives 100 bad of 1000: 145 is more than noise
    (145,)
    >>> stream = np.zeros(3000)
    >>> stream[2000:] = np.arange(1000) % 5 == 0  # 20% bad from event 2000 on: a burn of 20
    >>> [(f.index, round(f.score, 1)) for f in detector.update_many(stream)]
    [(2720, 14.5)]

    With a slow tier, a regression too small for the fast one is still caught:

    >>> detector = BurnRate(0.99, 1000, 100, 10, slow_long_window=10000, slow_short_window=1000, slow_factor=3)
    >>> detector.critical_counts  # 300 bad of 10,000 at a burn of 3
    (146, 375)
    >>> stream = np.zeros(16000)
    >>> stream[4000:] = np.arange(12000) % 25 == 0  # 4% bad: a burn of 4
    >>> [(f.index, f.test, round(f.score, 2)) for f in detector.update_many(stream)]
    [(13350, 'slow', 3.75)]
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
        false_alarm_rate: float = 1e-6,
    ) -> None:
        super().__init__()
        require(0.0 < objective < 1.0, f"objective must be in (0, 1), got {objective}")
        require(slow_factor >= 0.0, f"slow_factor must be >= 0 (0: no slow tier), got {slow_factor}")
        require(0.0 < false_alarm_rate < 1.0, f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
        self.objective = objective
        self.long_window = long_window
        self.short_window = short_window
        self.factor = factor
        self.slow_long_window = slow_long_window
        self.slow_short_window = slow_short_window
        self.slow_factor = slow_factor
        self.false_alarm_rate = false_alarm_rate
        # Validates the fast (and slow) tier's arguments.
        _Tier(objective, long_window, short_window, factor, self._tier_rate)
        if slow_factor:
            _Tier(objective, slow_long_window, slow_short_window, slow_factor, self._tier_rate)
        self._reset()

    @property
    def _tier_rate(self) -> float:
        """Each tier's share: with a slow tier, half each."""
        return self.false_alarm_rate / (2 if self.slow_factor else 1)

    def set_false_alarm_rate(self, rate: float) -> None:
        """Aim at ``rate`` false alarms per request under a steady burn of at most the factor
        (sets ``false_alarm_rate``; each tier's critical count follows)."""
        require(0.0 < rate < 1.0, f"rate must be in (0, 1), got {rate}")
        self.false_alarm_rate = rate
        for tier in self._tiers():
            tier.rate = self._tier_rate

    @property
    def critical_counts(self) -> tuple[int, ...]:
        """The fewest bad requests in each tier's full long window (fast, then slow) that fire."""
        return tuple(tier.critical for tier in self._tiers())

    @property
    def threshold(self) -> float:
        """The factor; the slow tier's, right after it fired on the last value."""
        return self._threshold

    @property
    def ready(self) -> bool:
        return len(self._fast.tail) >= self.long_window

    def _tiers(self) -> list[_Tier]:
        return [self._fast] if self._slow is None else [self._fast, self._slow]

    def _reset(self) -> None:
        super()._reset()
        self._score = 0.0
        self._threshold = float(self.factor)
        rate = self._tier_rate
        self._fast = _Tier(self.objective, self.long_window, self.short_window, self.factor, rate)
        self._slow = (_Tier(self.objective, self.slow_long_window, self.slow_short_window, self.slow_factor, rate)
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
        # Fed value by value, score and threshold are those of a fire on the last value
        # (the slow tier's, when it fired): what update() reports matches update_many().
        self._threshold = float(self.factor)
        if fires and fires[-1].index == len(values) - 1:
            self._score, self._threshold = fires[-1].score, fires[-1].threshold
        return fires
