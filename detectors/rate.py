"""A rise in the rate of a binary event: Bernoulli CUSUM.

Fed 0/1 values (1 = the event: an error, a missing value, a thumbs-down), it learns
the normal rate ``p0`` from a warm-up (or takes it as given) and accumulates the
log-likelihood ratio of "the odds went up ``odds_ratio`` times" against "no change".
It fires when that evidence passes ``threshold``: the sequential test that reacts
fastest to a given rise for a given false-alarm rate (Page, 1954).

Rare events make the warm-up estimate noisy (a warm-up that saw 2 errors where 4 is
normal halves ``p0``, and the normal rate then looks like the rise the test is
tuned for). So ``p0`` is the upper ``p0_confidence`` bound of the Jeffreys interval,
not the point estimate: a rate the warm-up cannot rule out is never taken for a rise.

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
    >>> detector = RateIncrease(warmup=1000, odds_ratio=3.0, threshold=8.0)
    >>> stream = np.concatenate([rng.random(3000) < 0.02, rng.random(2000) < 0.08])
    >>> [f.index for f in detector.update_many(stream)]
    [3170]
    """

    name = "rate_cusum"

    def __init__(
        self,
        warmup: int = 2000,
        odds_ratio: float = 2.0,
        threshold: float = 10.0,
        p0: float | None = None,
        p0_confidence: float = 0.99,
        min_p0: float = 1e-4,
        burn_in: int = 0,
        settle: int | None = None,
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
        self.warmup = warmup
        self.odds_ratio = odds_ratio
        self._threshold = float(threshold)
        self.p0 = p0
        self.p0_confidence = p0_confidence
        self.min_p0 = min_p0
        self.burn_in = burn_in
        self.settle = settle
        self._h = round(threshold * _SCALE)
        self._reset()

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
                take = min(self.warmup - self._warm_n, n - i)
                self._warm_n += take
                self._warm_ones += int(ones[i:i + take].sum())
                i += take
                if self._warm_n == self.warmup:
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
