"""Write ours' alerts on every stream of the detection benchmark, one JSON line each:
``[stream, at_event, kind, feature, detector]``. Two source trees give the same file
when a change leaves detection as it was:

    (cd OTHER_CHECKOUT && python -m benchmarks.detection.dump_alerts /tmp/before.jsonl)
    python -m benchmarks.detection.dump_alerts /tmp/after.jsonl
    diff <(sort /tmp/before.jsonl) <(sort /tmp/after.jsonl)
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor

import orjson

from benchmarks.detection.detectors import ours
from benchmarks.detection.streams import catalog


def _alerts(index: int) -> list[bytes]:
    name, make = catalog()[index]
    alerts, _ = ours()(make())
    return [orjson.dumps([name, *alert]) for alert in alerts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="file to write the alerts to (JSON lines)")
    parser.add_argument("--jobs", type=int, default=2, help="streams run at once (default 2)")
    args = parser.parse_args()
    streams = len(catalog())
    with ProcessPoolExecutor(args.jobs) as pool, open(args.out, "wb") as out:
        for lines in pool.map(_alerts, range(streams)):
            out.writelines(line + b"\n" for line in lines)
    print(f"{streams} streams: alerts in {args.out}")


if __name__ == "__main__":
    main()
