"""The detector contract: river's, plus what a service needs.

Every detector here *is* a ``river.base.DriftDetector``: ``update(x)`` and the
read-only ``drift_detected`` work as in river, so river code can drive ours and our
service can drive river's (through ``RiverAdapter``). On top of that:

* ``update_many(values)`` feeds a whole batch at numpy speed and returns one
  ``Fire`` per firing, with the index in the batch. Feeding a stream in batches of
  any size gives exactly the fires of feeding it one value at a time.
* ``score`` and ``threshold``: the statistic last computed and the value it must
  pass to fire, so alerts can say how far past the line things went.
* State pickles (``pickle.dumps(detector)``) and restores, for checkpoints.

Detectors are pure: values in, decisions out. No I/O, no clocks, no randomness.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import numpy as np
from river import base


class Fire(NamedTuple):
    """One firing: where in the batch, and the score that crossed the threshold."""

    index: int
    score: float
    threshold: float


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
