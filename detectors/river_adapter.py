"""Drive any river drift detector through our batch contract.

River's detectors have no score or threshold; the adapter reports 1.0 against 1.0
when one fires, and the detector's own name. They cost one Python call per value,
so keep them off streams of features and on the slow streams they were built for
(error streams from late labels).
"""

from __future__ import annotations

import numpy as np
from river import base

from detectors.base import Detector, Fire


class RiverAdapter(Detector):
    """Feed a river ``DriftDetector`` value by value; report its fires as ``Fire``s.

    >>> from river.drift.binary import DDM
    >>> rng = np.random.default_rng(5)
    >>> errors = np.concatenate([rng.random(2000) < 0.1, rng.random(1000) < 0.4])
    >>> [f.index for f in RiverAdapter(DDM()).update_many(errors)]
    [2066]
    """

    def __init__(self, detector: base.DriftDetector) -> None:
        super().__init__()
        self.detector = detector
        self.name = type(detector).__name__.lower()

    @property
    def threshold(self) -> float:
        return 1.0

    def _reset(self) -> None:
        super()._reset()
        self.detector._reset()

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        fires: list[Fire] = []
        update = self.detector.update
        binary = isinstance(self.detector, base.BinaryDriftDetector)
        for i, x in enumerate(values.tolist()):
            update(bool(x) if binary else x)
            if self.detector.drift_detected:
                fires.append(Fire(i, 1.0, 1.0))
        self._score = 1.0 if self.detector.drift_detected else 0.0  # as of the last value
        return fires
