"""Pure drift, decay and SLO detectors: values in, decisions out, no I/O.

Each speaks river's detector contract (``update``, ``drift_detected``) plus
``update_many`` for batches and a ``score`` against a ``threshold``.
"""

from detectors.base import Detector, Fire
from detectors.binned import ChiSquareDrift, NumericDrift
from detectors.estimation import CalibratedError
from detectors.fairness import GapFire, GroupParity, rate_ratio_interval
from detectors.numeric import KSDrift
from detectors.rate import RateIncrease
from detectors.river_adapter import RiverAdapter
from detectors.sequential import SequentialComparison
from detectors.share import DriftShare
from detectors.slo import BurnRate

__all__ = [
    "BurnRate",
    "CalibratedError",
    "ChiSquareDrift",
    "Detector",
    "DriftShare",
    "Fire",
    "GapFire",
    "GroupParity",
    "KSDrift",
    "NumericDrift",
    "RateIncrease",
    "RiverAdapter",
    "SequentialComparison",
    "rate_ratio_interval",
]
