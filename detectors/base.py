"""The detector contract: river's, plus what a service needs.

Every detector here *is* a ``river.base.DriftDetector``: ``update(x)`` and the
read-only ``drift_detected`` work as in river, so river code can drive ours and our
service can drive river's (through ``RiverAdapter``). On top of that:

* ``update_many(values)`` feeds a whole batch at numpy speed and returns one
  ``Fire`` per firing, with the index in the batch. Feeding a stream in batches of
  any size gives exactly the fires of feeding it one value at a time.
* ``score`` and ``threshold``: the statistic last computed and the value it must
  pass to fire, so alerts can say how far past the line things went.
* ``snapshot()`` and ``Detector.restore()``: the whole state, for checkpoints.

Detectors are pure: values in, decisions out. No I/O, no clocks, no randomness.
"""

from __future__ import annotations

import abc
import pickle
from typing import Any, NamedTuple

import numpy as np
from river import base


class Fire(NamedTuple):
    """One firing: where in the batch, the score that crossed the threshold, and (for a
    detector that runs several tests) which test it was."""

    index: int  # type: ignore[assignment]  # shadows tuple.index; the name is the contract's (Fire.index)
    score: float
    threshold: float
    test: str = ""


class Detector(base.DriftDetector):
    """Base of our detectors: river's contract plus batches, scores and thresholds."""

    #: Short stable name, used as the ``detector`` field of alerts.
    name = "detector"

    def __init__(self) -> None:
        super().__init__()
        self._score = 0.0

    @property
    def score(self) -> float:
        """The statistic as of the last check (0.0 before the first)."""
        return self._score

    @property
    @abc.abstractmethod
    def threshold(self) -> float:
        """The value ``score`` must pass for the detector to fire."""

    @property
    def ready(self) -> bool:
        """Whether the detector has seen enough to be able to fire."""
        return True

    def snapshot(self) -> bytes:
        """The detector's whole state, to checkpoint it (e.g. with committed offsets).

        >>> from detectors import RateIncrease
        >>> detector = RateIncrease(p0=0.1, threshold=3.0)
        >>> _ = detector.update_many(np.ones(2))
        >>> copy = Detector.restore(detector.snapshot())
        >>> [f.index for f in copy.update_many(np.ones(3))] == [f.index for f in detector.update_many(np.ones(3))]
        True
        """
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(data: bytes) -> Detector:
        """A detector from ``snapshot()``; it goes on exactly where the original was.

        Only restore snapshots you made: unpickling runs code."""
        detector = pickle.loads(data)  # our own checkpoints only
        if not isinstance(detector, Detector):
            raise TypeError(f"not a detector snapshot: {type(detector).__name__}")
        return detector

    def set_false_alarm_rate(self, rate: float) -> None:
        """Aim at ``rate`` false alarms per value under no change, where the detector can
        (a share of a false-alarm budget); the default does nothing."""

    def update(self, x: Any) -> None:
        """River's one-value update; ``drift_detected`` tells if it fired on ``x``."""
        self.update_many(np.asarray([x], dtype=np.float64))

    def update_many(self, values: Any) -> list[Fire]:
        """Feed a batch in order; return the fires, ``index`` being the position in it.

        ``drift_detected`` is True afterwards if the batch fired at least once.
        """
        fires = self._update_many(np.asarray(values, dtype=np.float64))
        self._drift_detected = bool(fires)
        return fires

    @abc.abstractmethod
    def _update_many(self, values: np.ndarray) -> list[Fire]: ...


class Window:
    """A fixed-capacity window of the most recent values (their order is not kept).

    >>> w = Window(3)
    >>> w.extend(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> w.full, sorted(w.values().tolist())
    (True, [2.0, 3.0, 4.0])
    """

    def __init__(self, capacity: int, dtype: Any = np.float64) -> None:
        self.capacity = capacity
        self._buf = np.zeros(capacity, dtype=dtype)
        self._next = 0
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def extend(self, values: np.ndarray) -> None:
        n = len(values)
        if n >= self.capacity:
            self._buf[:] = values[-self.capacity:]
            self._next = 0
            self.size = self.capacity
            return
        end = self._next + n
        if end <= self.capacity:
            self._buf[self._next:end] = values
        else:
            split = self.capacity - self._next
            self._buf[self._next:] = values[:split]
            self._buf[: n - split] = values[split:]
        self._next = end % self.capacity
        self.size = min(self.capacity, self.size + n)

    def values(self) -> np.ndarray:
        """The values held (a view when full: copy before keeping it)."""
        return self._buf if self.full else self._buf[: self.size]


def require(condition: bool, message: str) -> None:
    """Validate a hyperparameter at construction, as river does, with a ValueError."""
    if not condition:
        raise ValueError(message)
