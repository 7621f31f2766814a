"""Evidently's DataDriftPreset over the workload's predictions in tumbling windows.

``python -m benchmarks.throughput.evidently_rate FILE ROWS WINDOW`` prints one JSON
line ``{"rows", "seconds"}``: the first window is the reference, every later one is
compared with it, as a user would run it on a stream.
"""

from __future__ import annotations

import json
import sys
import time

import orjson


def main(path: str, rows: int, window: int) -> int:
    import pandas as pd  # noqa: PLC0415
    from evidently import DataDefinition, Dataset, Report  # noqa: PLC0415
    from evidently.presets import DataDriftPreset  # noqa: PLC0415

    records = []
    with open(path, "rb") as lines:
        for line in lines:
            event = orjson.loads(line)
            if event["type"] == "prediction":
                records.append({**event["features"], "score": event["prediction"]["score"]})
                if len(records) >= rows:
                    break
    started = time.perf_counter()
    frame = pd.DataFrame.from_records(records)
    categorical = [c for c in frame.columns if frame[c].dtype == object]
    definition = DataDefinition(numerical_columns=[c for c in frame.columns if c not in categorical],
                                categorical_columns=categorical)
    reference = Dataset.from_pandas(frame.iloc[:window].reset_index(drop=True), data_definition=definition)
    for start in range(window, len(frame) - window + 1, window):
        current = Dataset.from_pandas(frame.iloc[start:start + window].reset_index(drop=True),
                                      data_definition=definition)
        Report([DataDriftPreset()]).run(current, reference)
    print(json.dumps({"rows": len(records), "seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
