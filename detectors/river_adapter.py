"""Drive any river drift detector through our batch contract.

River's detectors have no score or threshold; the adapter reports 1.0 against 1.0
when one fires, and the detector's own name. They cost one Python call per value,
so keep them off streams of features and on the slow streams they were built for
(error streams from late labels).

The error-stream convention is ours to keep: **1 is an error**, and decay is a rise.
River's detectors disagree about direction: DDM and HDDM_A fire on a rise only;
ADWIN and PageHinkley (in mode "both") on any change; FHDDM, contrary to its
docstring, on a *fall* of the mean (it watches accuracy). ``invert`` feeds the
detector ``1 - x`` (for FHDDM); ``rising_only`` drops fires where the detector's own
``estimation`` of the mean went down (for ADWIN), so an improving model never
raises a decay alert.
"""

from __future__ import annotations

import numpy as np
from river import base

from detectors.base import Detector, Fire, require


class RiverAdapter(Detector):
    """Feed a river ``DriftDetector`` value by value; report its fires as ``Fire``s.

    >>> from river.drift.binary import DDM
    >>> rng = np.random.default_rng(5)
    >>> errors = np.concatenate([rng.random(2000) < 0.1, rng.random(1000) < 0.4])
    >>> [f.index for f in RiverAdapter(DDM()).update_many(errors)]
    [2066]
    """

    def __init__(self, detector: base.DriftDetector | base.BinaryDriftDetector, invert: bool = False,
                 rising_only: bool = False) -> None:
        super().__init__()
        require(not rising_only or hasattr(detector, "estimation"),
                f"rising_only needs a detector with an estimation of the mean, not {type(detector).__name__}")
        self.detector = detector
        self.invert = invert
        self.rising_only = rising_only
        self.name = type(detector).__name__.lower()

    @property
    def threshold(self) -> float:
        return 1.0

    def _reset(self) -> None:
        super()._reset()
        self.detector._reset()

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        fires: list[Fire] = []
        detector = self.detector
        update = detector.update
        binary = isinstance(detector, base.BinaryDriftDetector)
        if self.invert:
            values = 1.0 - values
        for i, x in enumerate(values.tolist()):
            before = getattr(detector, "estimation", 0.0) if self.rising_only else 0.0
            update(bool(x) if binary else x)
            if detector.drift_detected and (not self.rising_only or getattr(detector, "estimation", 0.0) > before):
                fires.append(Fire(i, 1.0, 1.0))
        self._score = 1.0 if detector.drift_detected else 0.0  # as of the last value
        return fires
