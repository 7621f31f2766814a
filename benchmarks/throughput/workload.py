"""The throughput workload: events in the contract, as the issue describes them.

Three models, 10 numeric and 2 categorical features, a score and a label, latencies
around the 100 ms SLO, and 2% of the stream feedback (thumbs-down, labels) keyed to
an earlier prediction's ``request_id``. Deterministic for a seed. ``drift_at`` shifts
one numeric feature (``x0``) of every model by one standard deviation from that event
on; ``drift_every`` shifts it on and off every that many events (off first).

>>> lines = list(events(5, seed=1))
>>> len(lines), lines[0].startswith(b'{"event_id"')
(5, True)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson

MODELS = ("recsys", "search", "ads")
NUMERIC = tuple(f"x{i}" for i in range(10))
CATEGORIES = (("web", "ios", "android"), ("de", "fr", "us", "cn", "br"))
FEEDBACK_SHARE = 0.02
START_TS = 1_780_000_000.0
CHUNK = 10_000


def events(n: int, *, seed: int = 0, rate_per_s: float = 10_000.0, drift_at: int | None = None,
           drift_every: int | None = None, start_ts: float = START_TS, numeric: int = len(NUMERIC)) -> Iterator[bytes]:
    """``n`` events as JSON lines (without the newline), in stream order; ``numeric``
    numeric features (x0, x1, ...) beside the two categorical ones."""
    rng = np.random.default_rng(seed)
    names = tuple(f"x{i}" for i in range(numeric))
    emitted = 0
    recent: list[tuple[str, str, str]] = []  # (request_id, model, version) of recent predictions
    while emitted < n:
        size = min(CHUNK, n - emitted)
        x = rng.normal(0.0, 1.0, (size, numeric)).round(4)
        if drift_at is not None:
            x[max(0, drift_at - emitted):, 0] += 1.0
        if drift_every:
            x[:, 0] += (np.arange(emitted, emitted + size) // drift_every) % 2
        cats = [rng.integers(0, len(c), size) for c in CATEGORIES]
        scores = rng.random(size).round(4)
        latency = rng.gamma(9.0, 5.0, size).round(1)  # median ~43 ms; ~0.5% over 100 ms
        models = rng.integers(0, len(MODELS), size)
        feedback = rng.random(size) < FEEDBACK_SHARE
        negative = rng.random(size) < 0.5
        for i in range(size):
            index = emitted + i
            ts = round(start_ts + index / rate_per_s, 4)
            if feedback[i] and recent:
                request_id, model, version = recent[int(rng.integers(0, len(recent)))]
                body: dict[str, object] = {
                    "event_id": f"f-{index}", "type": "feedback", "ts": ts, "model": model,
                    "model_version": version, "request_id": request_id,
                }
                if negative[i]:
                    body["kind"] = "thumbs_down"
                    body["reason"] = "not relevant"
                else:
                    body["kind"] = "label"
                    body["value"] = bool(scores[i] > 0.4)
                yield orjson.dumps(body)
                continue
            model = MODELS[models[i]]
            request_id = f"r-{index}"
            recent.append((request_id, model, "v1"))
            if len(recent) > 2_000:
                del recent[:1_000]
            yield orjson.dumps({
                "event_id": f"p-{index}", "type": "prediction", "ts": ts, "model": model,
                "model_version": "v1", "request_id": request_id,
                "features": {**dict(zip(names, x[i].tolist(), strict=True)),
                             "platform": CATEGORIES[0][cats[0][i]], "country": CATEGORIES[1][cats[1][i]]},
                "prediction": {"score": float(scores[i])},
                "latency_ms": float(latency[i]), "status": "ok",
            })
        emitted += size


def write(path: str, n: int, **kwargs: object) -> None:
    """Write ``n`` events to ``path`` as JSON lines."""
    with open(path, "wb") as out:
        for line in events(n, **kwargs):  # type: ignore[arg-type]
            out.write(line + b"\n")
