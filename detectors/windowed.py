"""The shared machinery of two-sample tests: a reference, a sliding window, a check cadence.

A subclass says how to learn a reference and how to test a window against it; this
class owns the warm-up, the window, when to check, and re-learning after a fire.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np

from detectors.base import Detector, Fire, Window, require


class WindowTest(Detector):
    """What every sliding-window test here shares: the sizes of its reference and
    window, its check cadence and per-check level, and a score and threshold. A
    subclass keeps its own reference and window (``_relearn``) and runs its checks."""

    def __init__(self, reference_size: int, window_size: int, check_every: int, alpha: float) -> None:
        super().__init__()
        require(reference_size >= 10, f"reference_size must be >= 10, got {reference_size}")
        require(window_size >= 10, f"window_size must be >= 10, got {window_size}")
        require(1 <= check_every <= window_size,
                f"check_every must be in [1, window_size={window_size}], got {check_every}")
        require(0.0 < alpha < 1.0, f"alpha must be in (0, 1), got {alpha}")
        self.reference_size = reference_size
        self.window_size = window_size
        self.check_every = check_every
        self.alpha = alpha

    def set_alpha(self, alpha: float) -> None:
        """Change the per-check false-alarm probability (the thresholds follow at the next
        check: critical values are looked up by level, see ``detectors.critical``)."""
        require(0.0 < alpha < 1.0, f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha

    def set_false_alarm_rate(self, rate: float) -> None:
        """A test every ``check_every`` values at level alpha makes alpha / check_every false
        alarms per value at most (fewer: overlapping windows make checks agree)."""
        self.set_alpha(min(0.5, max(rate * self.check_every, 1e-15)))

    def _reset(self) -> None:
        super()._reset()
        self._score = 0.0
        self._threshold = math.inf
        self._relearn()

    @abc.abstractmethod
    def _relearn(self) -> None:
        """Forget the reference and the window (start a new ``self._warm`` window): learn
        again from what comes next."""

    @abc.abstractmethod
    def _set_reference(self, reference: np.ndarray) -> None:
        """Take ``reference`` (a copy, free to keep) as the new normal."""

    _warm: Window  # the warm-up window, made by _reset in the subclasses

    def _warm_up(self, values: np.ndarray, i: int) -> int:
        """Feed ``values[i:]`` to the warm-up window until it holds ``reference_size``
        values, which then become the reference; return where the warm-up stopped."""
        take = min(self.reference_size - self._warm.size, len(values) - i)
        self._warm.extend(values[i:i + take])
        if self._warm.full:
            self._set_reference(self._warm.values().copy())
        return i + take

    @property
    def threshold(self) -> float:
        return self._threshold

    def _prepare(self, values: np.ndarray) -> np.ndarray:
        """Map raw values to what is kept (e.g. clip category codes)."""
        return values


class ReferenceWindowTest(WindowTest):
    """Test the last ``window_size`` values against a reference every ``check_every``.

    The reference is the first ``reference_size`` values. After a fire the detector
    learns a new reference from what follows: one alert per change, not a storm.
    """

    #: dtype of the values kept in the reference and window.
    dtype: Any = np.float64

    def __init__(self, reference_size: int, window_size: int, check_every: int, alpha: float) -> None:
        super().__init__(reference_size, window_size, check_every, alpha)
        self._test_name = ""

    def _relearn(self) -> None:
        self._warm = Window(self.reference_size, dtype=self.dtype)
        self._has_reference = False
        self._window = Window(self.window_size, dtype=self.dtype)
        self._since_check = 0

    @property
    def ready(self) -> bool:
        return self._has_reference and self._window.full

    @abc.abstractmethod
    def _learn(self, reference: np.ndarray) -> None:
        """Take ``reference`` (a copy, free to keep) as the new normal."""

    @abc.abstractmethod
    def _test(self, window: np.ndarray) -> tuple[float, float]:
        """Return ``(score, threshold)`` of the window against the reference; a detector
        running several tests sets ``self._test_name`` to the one it reports."""

    def _set_reference(self, reference: np.ndarray) -> None:
        self._learn(reference)
        self._has_reference = True

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        values = self._prepare(values)
        fires: list[Fire] = []
        i, n = 0, len(values)
        while i < n:
            if not self._has_reference:
                i = self._warm_up(values, i)
                continue
            take = min(self.check_every - self._since_check, n - i)
            self._window.extend(values[i:i + take])
            self._since_check += take
            i += take
            if self._since_check < self.check_every:
                continue
            self._since_check = 0
            if not self._window.full:
                continue
            self._score, self._threshold = self._test(self._window.values())
            if self._score > self._threshold:
                fires.append(Fire(i - 1, self._score, self._threshold, self._test_name))
                self._relearn()
        return fires
