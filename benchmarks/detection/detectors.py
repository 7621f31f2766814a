"""Everything the benchmark runs on a stream, ours and the peers, with one output shape.

Each runner takes a ``Stream`` and returns ``(alerts, seconds)``: every alert as
``(position, kind, feature, detector)`` where position is the stream position of the
event it fired on, and the time it took.

* ``ours``: the model-monitor pipeline (``monitor.pipeline.Pipeline``) at its
  default settings, as the daemon and ``monitor replay`` run it.
* ``evidently_W``: Evidently's default DataDriftPreset on tumbling windows of W
  predictions, the reference being the first window (its own stattest choice and
  thresholds); every column it flags in a window is an alert at that window's last
  event.
* ``river_*``: river's raw detectors fed the same values our detectors get: ADWIN and
  PageHinkley on every numeric feature and the score, and on the 0/1 streams
  (missing per feature, thumbs-down per prediction, slow and failed requests);
  KSWIN on at most ``KSWIN_FEATURES`` numeric features (it runs a KS test on every
  value: 0.36 ms each); DDM and HDDMA on the error stream of the late labels.
* ``periodic`` and ``random``: pseudo-detectors that alarm every N events or at a
  random 1/N of them, whatever the data: the floor an honest detector must beat.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from benchmarks.detection.streams import Stream

Alert = tuple[int, str, str | None, str]  # position, kind, feature, detector
KSWIN_FEATURES = 2
PSEUDO_PERIOD = 2000
WILDCARD = "*"


def _timed(run: Callable[[Stream], list[Alert]]) -> Callable[[Stream], tuple[list[Alert], float]]:
    def timed(stream: Stream) -> tuple[list[Alert], float]:
        started = time.perf_counter()
        alerts = run(stream)
        return alerts, time.perf_counter() - started
    return timed


# -- ours -------------------------------------------------------------------------------------------------

def ours(overrides: dict[str, dict[str, Any]] | None = None) -> Callable[[Stream], tuple[list[Alert], float]]:
    from collectors.contract import RawMessage  # noqa: PLC0415
    from monitor.config import load_settings  # noqa: PLC0415
    from monitor.metrics import Metrics  # noqa: PLC0415
    from monitor.pipeline import Pipeline  # noqa: PLC0415

    settings = load_settings(environ={}, overrides=overrides or {})

    def run(stream: Stream) -> list[Alert]:
        messages = [RawMessage("bench", 0, i, None, orjson.dumps(e)) for i, e in enumerate(stream.events)]
        pipeline = Pipeline(settings, Metrics(), clock=lambda: 2.0e9)
        alerts: list[Alert] = []
        for i in range(0, len(messages), 2000):
            for a in pipeline.process(messages[i:i + 2000]).alerts:
                alerts.append((a.at_event, a.kind, a.feature, f"ours:{a.detector}"))
        return alerts

    return _timed(run)


# -- what the peers are fed -------------------------------------------------------------------------------

def _columns(stream: Stream) -> tuple[list[int], dict[str, list[Any]]]:
    """The prediction events' positions and their columns: features, prediction.score, prediction.label."""
    positions: list[int] = []
    columns: dict[str, list[Any]] = {}
    n = 0
    for pos, e in enumerate(stream.events):
        if e["type"] != "prediction":
            continue
        row = {**e.get("features", {}), **{f"prediction.{k}": v for k, v in e.get("prediction", {}).items()}}
        for name in row.keys() - columns.keys():
            columns[name] = [None] * n
        for name, values in columns.items():
            values.append(row.get(name))
        positions.append(pos)
        n += 1
    return positions, columns


def _is_numeric(values: list[Any]) -> bool:
    return any(v is not None for v in values) and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values)


def _binary_streams(stream: Stream) -> dict[tuple[str, str | None], tuple[list[int], list[int]]]:
    """The 0/1 streams our rate detectors watch: missing per feature, thumbs-down, slow, failed, errors."""
    out: dict[tuple[str, str | None], tuple[list[int], list[int]]] = {}

    def add(key: tuple[str, str | None], pos: int, bit: int) -> None:
        positions, bits = out.setdefault(key, ([], []))
        positions.append(pos)
        bits.append(bit)

    predicted: dict[str, bool] = {}
    for pos, e in enumerate(stream.events):
        if e["type"] == "prediction":
            for name, value in e.get("features", {}).items():
                add(("data_drift", name), pos, int(value is None))
            add(("feedback_spike", None), pos, 0)
            add(("slo_burn", "latency_ms"), pos, int(e.get("latency_ms", 0) > 100.0))
            add(("slo_burn", "status"), pos, int(e.get("status") == "error"))
            predicted[e["request_id"]] = bool(e["prediction"]["label"])
        elif e.get("kind") == "thumbs_down":
            add(("feedback_spike", None), pos, 1)
        elif e.get("kind") == "label" and e["request_id"] in predicted:
            add(("metric_decay", None), pos, int(predicted[e["request_id"]] != bool(e["value"])))
    return out


# -- river ------------------------------------------------------------------------------------------------

def river_detector(name: str) -> Callable[[Stream], tuple[list[Alert], float]]:
    """ADWIN, PageHinkley or KSWIN on every numeric column and 0/1 stream; DDM, HDDMA on errors."""
    from river import drift  # noqa: PLC0415

    def feed(make: Callable[[], Any], positions: list[int], values: list[float], kind: str,
             feature: str | None, alerts: list[Alert]) -> None:
        detector = make()
        for pos, value in zip(positions, values, strict=True):
            detector.update(value)
            if detector.drift_detected:
                alerts.append((pos, kind, feature, f"river:{name}"))

    def run(stream: Stream) -> list[Alert]:
        alerts: list[Alert] = []
        if name in ("DDM", "HDDMA"):
            make = getattr(drift.binary, name)
            for (kind, feature), (positions, bits) in _binary_streams(stream).items():
                if kind == "metric_decay":
                    feed(make, positions, bits, kind, feature, alerts)
            return alerts
        make = {"ADWIN": drift.ADWIN, "PageHinkley": drift.PageHinkley, "KSWIN": drift.KSWIN}[name]
        positions, columns = _columns(stream)
        numeric = [c for c, values in columns.items() if _is_numeric(values)]
        if name == "KSWIN":  # 0.36 ms a value: the changed features first, then a few others
            expected = [c for c in numeric if c in stream.expect_features]
            numeric = (expected + [c for c in numeric if c not in expected])[:KSWIN_FEATURES]
        for column in numeric:
            pairs = [(p, float(v)) for p, v in zip(positions, columns[column], strict=True) if v is not None]
            kind = "prediction_drift" if column.startswith("prediction.") else "data_drift"
            feed(make, [p for p, _ in pairs], [v for _, v in pairs], kind, column, alerts)
        if name != "KSWIN":
            for (kind, feature), (pos, bits) in _binary_streams(stream).items():
                feed(make, pos, bits, kind, feature, alerts)
        return alerts

    return _timed(run)


# -- Evidently --------------------------------------------------------------------------------------------

def evidently(window: int) -> Callable[[Stream], tuple[list[Alert], float]]:
    import pandas as pd  # noqa: PLC0415
    from evidently import DataDefinition, Dataset, Report  # noqa: PLC0415
    from evidently.presets import DataDriftPreset  # noqa: PLC0415

    def run(stream: Stream) -> list[Alert]:
        positions, columns = _columns(stream)
        numeric = [c for c, v in columns.items() if _is_numeric(v)]
        categorical = [c for c in columns if c not in numeric]
        frame = pd.DataFrame({c: columns[c] for c in numeric}, dtype="float64")
        for c in categorical:
            frame[c] = [None if v is None else str(v) for v in columns[c]]
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        reference = Dataset.from_pandas(frame.iloc[:window].reset_index(drop=True), data_definition=definition)
        alerts: list[Alert] = []
        for start in range(window, len(frame) - window + 1, window):
            current = Dataset.from_pandas(frame.iloc[start:start + window].reset_index(drop=True),
                                          data_definition=definition)
            snapshot = Report([DataDriftPreset()]).run(current, reference)
            for metric in snapshot.dict()["metrics"]:
                config = metric["config"]
                if not config["type"].endswith("ValueDrift"):
                    continue
                value, threshold, method = metric["value"], config["threshold"], config["method"]
                drifted = value < threshold if "p_value" in method else value >= threshold
                if drifted:
                    column = config["column"]
                    kind = "prediction_drift" if column.startswith("prediction.") else "data_drift"
                    alerts.append((positions[start + window - 1], kind, column, f"evidently:{method}"))
        return alerts

    return _timed(run)


# -- pseudo-detectors -------------------------------------------------------------------------------------

def periodic(stream: Stream) -> tuple[list[Alert], float]:
    return [(p, WILDCARD, None, "periodic") for p in range(PSEUDO_PERIOD - 1, len(stream.events), PSEUDO_PERIOD)], 0.0


def random_alarms(stream: Stream) -> tuple[list[Alert], float]:
    rng = np.random.default_rng(zlib.crc32(stream.name.encode()))
    hits = np.flatnonzero(rng.random(len(stream.events)) < 1.0 / PSEUDO_PERIOD)
    return [(int(p), WILDCARD, None, "random") for p in hits], 0.0
