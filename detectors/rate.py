"""A rise in the rate of a binary event: Bernoulli CUSUM.

Fed 0/1 values (1 = the event: an error, a missing value, a thumbs-down), it learns
the normal rate ``p0`` from a warm-up (or takes it as given) and accumulates the
log-likelihood ratio of "the odds went up ``odds_ratio`` times" against "no change".
It fires when that evidence passes ``threshold``: the sequential test that reacts
fastest to a given rise for a given false-alarm rate (Page, 1954).

Rare events make the warm-up estimate noisy (a warm-up that saw 2 errors where 4 is
normal halves ``p0``, and the normal rate then looks like the rise the test is
tuned for). So the warm-up lasts at least ``warmup`` values and until it has seen
``warmup_events`` ones, unless the rate is plainly low (fewer than ``low_rate`` of
the values, counting 5 events more than seen) or ``max_warmup`` values have gone by;
and ``p0`` is the upper ``p0_confidence`` bound of the Jeffreys interval, not the
point estimate: a rate the warm-up cannot rule out is never taken for a rise.

The threshold is either given (``threshold``, in nats of evidence) or derived from
``arl0``, the average number of values between false alarms wanted under no change,
by Siegmund's approximation ARL0 = (e^h - h - 1) / |E[step]|, once ``p0`` is known.

``burn_in`` values are skipped before the first warm-up and ``settle`` values after
every fire, so neither a stream that starts low (feedback arrives after its
prediction) nor a change still ramping up is learned as the normal rate.

The evidence is accumulated in fixed point (integers), so a stream fed in batches of
any size fires at exactly the same places as one fed value by value.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from detectors.base import Detector, Fire, require

_SCALE = 1 << 20


class RateIncrease(Detector):
    """Bernoulli CUSUM for an increase in the rate of 1s.

    The convention is explicit: **1 is the bad event** (error, missing, complaint).

    >>> rng = np.random.default_rng(11)
    >>> detector = RateIncrease(warmup=1000, warmup_events=20, odds_ratio=3.0, threshold=8.0)
    >>> stream = np.concatenate([rng.random(3000) < 0.02, rng.random(2000) < 0.08])
    >>> [f.index for f in detector.update_many(stream)]
    [3078]
    """

    name = "rate_cusum"

    def __init__(
        self,
        warmup: int = 2000,
        odds_ratio: float = 2.0,
        threshold: float = 10.0,
        p0: float | None = None,
        p0_confidence: float = 0.95,
        min_p0: float = 1e-4,
        burn_in: int = 0,
        settle: int | None = None,
        warmup_events: int = 100,
        max_warmup: int | None = None,
        arl0: float | None = None,
        low_rate: float = 0.005,
    ) -> None:
        super().__init__()
        require(warmup >= 1, f"warmup must be >= 1, got {warmup}")
        require(odds_ratio > 1.0, f"odds_ratio must be > 1, got {odds_ratio}")
        require(threshold > 0.0, f"threshold must be > 0, got {threshold}")
        require(p0 is None or 0.0 < p0 < 1.0, f"p0 must be in (0, 1), got {p0}")
        require(0.5 <= p0_confidence < 1.0, f"p0_confidence must be in [0.5, 1), got {p0_confidence}")
        require(0.0 < min_p0 < 0.5, f"min_p0 must be in (0, 0.5), got {min_p0}")
        require(burn_in >= 0, f"burn_in must be >= 0, got {burn_in}")
        require(settle is None or settle >= 0, f"settle must be >= 0, got {settle}")
        require(warmup_events >= 0, f"warmup_events must be >= 0, got {warmup_events}")
        require(max_warmup is None or max_warmup >= warmup, f"max_warmup must be >= warmup, got {max_warmup}")
        require(arl0 is None or arl0 > 1, f"arl0 must be > 1, got {arl0}")
        require(0.0 <= low_rate < 1.0, f"low_rate must be in [0, 1), got {low_rate}")
        self.warmup = warmup
        self.odds_ratio = odds_ratio
        self._threshold = float(threshold)
        self.p0 = p0
        self.p0_confidence = p0_confidence
        self.min_p0 = min_p0
        self.burn_in = burn_in
        self.settle = settle
        self.warmup_events = warmup_events
        self.max_warmup = max_warmup
        self.arl0 = arl0
        self.low_rate = low_rate
        self._h = round(threshold * _SCALE)
        self._reset()

    def set_false_alarm_rate(self, rate: float) -> None:
        """Aim at ``rate`` false alarms per value under no change (sets ``arl0``)."""
        require(0.0 < rate < 1.0, f"rate must be in (0, 1), got {rate}")
        self.arl0 = 1.0 / rate
        if self._llr is not None:
            self._set_threshold()

    def _set_threshold(self) -> None:
        if self.arl0 is None or self._llr is None:
            return
        up, down = self._llr
        p0 = self.rate_
        drift = abs(p0 * up + (1 - p0) * down) / _SCALE  # nats per value under no change
        h = math.log(max(self.arl0 * drift, 1.0))
        for _ in range(20):  # h = ln(ARL0 |mu0| + h + 1): a few fixed-point steps converge
            h = math.log(self.arl0 * drift + h + 1.0)
        self._threshold = h
        self._h = round(h * _SCALE)

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def ready(self) -> bool:
        return self._llr is not None

    def _reset(self) -> None:
        super()._reset()
        self._score = 0.0
        self._sum = 0  # CUSUM statistic, fixed point
        self._skip = self.burn_in
        self._warm_n = 0
        self._warm_ones = 0
        self._llr: tuple[int, int] | None = None
        self.rate_ = math.nan  # the p0 in use
        if self.p0 is not None:
            self._set_rate(self.p0)

    def _learn(self) -> None:
        n, k = self._warm_n, self._warm_ones
        self._set_rate(float(special.betaincinv(k + 0.5, n - k + 0.5, self.p0_confidence)))  # beta.ppf

    def _set_rate(self, p0: float) -> None:
        p0 = min(max(p0, self.min_p0), 1.0 - self.min_p0)
        odds1 = self.odds_ratio * p0 / (1.0 - p0)
        p1 = odds1 / (1.0 + odds1)
        self.rate_ = p0
        # At the upper clip a rise is impossible (a feature always missing stays so): 1s add nothing.
        up = 0 if p0 >= 1.0 - self.min_p0 else round(math.log(p1 / p0) * _SCALE)
        self._llr = (up, round(math.log((1 - p1) / (1 - p0)) * _SCALE))
        self._set_threshold()

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        ones = values != 0
        fires: list[Fire] = []
        i, n = 0, len(ones)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                continue
            if self._llr is None:
                # The warm-up ends at the first value that has both warmup values and
                # warmup_events ones behind it (or max_warmup values), wherever batches end.
                longest = self.max_warmup or 5 * self.warmup
                take = min(longest - self._warm_n, n - i)
                chunk = ones[i:i + take]
                seen = self._warm_n + np.arange(1, take + 1)
                found = self._warm_ones + np.cumsum(chunk)
                plainly_low = (found + 5) <= self.low_rate * seen
                done = np.flatnonzero((seen >= self.warmup)
                                      & ((found >= self.warmup_events) | plainly_low | (seen >= longest)))
                if len(done):
                    take = int(done[0]) + 1
                self._warm_n += take
                self._warm_ones += int(chunk[:take].sum())
                i += take
                if len(done):
                    self._learn()
                continue
            up, down = self._llr
            walk = self._sum + np.cumsum(np.where(ones[i:], up, down), dtype=np.int64)
            stat = walk - np.minimum.accumulate(np.minimum(walk, 0))
            over = np.flatnonzero(stat > self._h)
            if len(over) == 0:
                self._sum = int(stat[-1])
                self._score = self._sum / _SCALE
                break
            at = i + int(over[0])
            self._score = int(stat[over[0]]) / _SCALE
            fires.append(Fire(at, self._score, self._threshold))
            self._sum = 0
            if self.p0 is None:  # learn the new normal once the change has settled
                self._skip = self.warmup if self.settle is None else self.settle
                self._warm_n = self._warm_ones = 0
                self._llr = None
            i = at + 1
        return fires
