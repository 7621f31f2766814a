"""Realistic production traffic, with faults injected at known times.

Three models (a recommender, a fraud classifier, a search ranker) with numeric and
categorical features, latencies around the 100 ms SLO, a little bad input, and
feedback that arrives after its prediction: thumbs up and down, complaints (some
with personal data in the comment), and late labels. Faults change the traffic from
their start time: a feature drift, a latency regression, a thumbs-down spike (for
everyone, or only in one region: a segment spike), a quality decay (late labels stop
agreeing with the model), a click-through drop, and a canary: a new version on a
tenth of the traffic that answers four times slower.

Everything is seeded: the same seed, rate and faults give the same events.

>>> sim = TrafficSimulator(seed=1, start_ts=1.8e9)
>>> first = sim.advance(1.0, rate=50)
>>> sorted({e["type"] for e in first if isinstance(e, dict)})
['impression', 'prediction']
>>> later = sim.advance(10.0, rate=50)  # feedback arrives seconds after its prediction
>>> {"label", "thumbs_down"} <= {e["kind"] for e in later if isinstance(e, dict) and e["type"] == "feedback"}
True
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]

FAULT_KINDS = ("feature_drift", "latency_regression", "feedback_spike", "quality_decay", "ctr_drop", "segment_spike",
               "canary_regression")
#: The alert kind each fault should raise.
EXPECTED_ALERT = {
    "feature_drift": "data_drift",
    "latency_regression": "slo_burn",
    "feedback_spike": "feedback_spike",
    "quality_decay": "metric_decay",
    "ctr_drop": "metric_decay",
    "segment_spike": "feedback_spike",  # with segment {"region": "south"}
    "canary_regression": "canary_regression",  # the canary version against the model's version
}
#: The region whose users a segment_spike hits.
SPIKE_REGION = "south"
#: Share of a model's traffic its canary version takes during a canary_regression.
CANARY_SHARE = 0.1


def canary_version(version: str) -> str:
    """The version a canary_regression rolls out: the next number.

    >>> canary_version("v7"), canary_version("stable")
    ('v8', 'stable-canary')
    """
    head = version.rstrip("0123456789")
    digits = version[len(head):]
    return f"{head}{int(digits) + 1}" if digits else f"{version}-canary"

_COMMENTS = (
    "not what I searched for",
    "irrelevant results again",
    "please contact me at {email}",
    "call me back on {phone}, this is wrong",
    "charged twice on card {card}",
    "results are fine but slow",
)
#: What users write, by the reason they pick (None: they picked none), in English and Chinese.
_COMMENTS_BY_REASON: dict[str | None, tuple[str, ...]] = {
    "irrelevant": ("not what I searched for", "irrelevant results again", "nothing to do with what I asked",
                   "推荐的内容和我无关", "答非所问", "完全不相关的结果"),
    "wrong": ("this is wrong", "the answer is incorrect", "wrong price shown", "回答错误", "信息不对", "价格显示错了"),
    "slow": ("results are fine but slow", "takes forever to load", "so slow today", "加载太慢了", "一直转圈，超时"),
    "offensive": ("this result is offensive", "unsafe content in the results", "内容低俗，令人冒犯"),
    None: ("this item is sold out", "outdated info", "meh", "商品已下架", "不喜欢", "no"),
}
#: Personal data users leave in comments (the redaction must catch every one).
_PII_TAILS = (" contact me at {email}", " call me on {phone}", " charged twice on card {card}", "，请联系我 {phone}",
              "，我的邮箱 {email}")


@dataclass
class Fault:
    """A change to the traffic of one model from ``start_s`` (seconds after the start)."""

    kind: str
    model: str
    start_s: float
    note: str = ""
    feature: str | None = None  # the numeric feature a feature_drift shifts by two standard deviations

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose from {FAULT_KINDS}")
        if (self.kind == "feature_drift") != (self.feature is not None):
            raise ValueError("a feature_drift fault needs a feature, and only it")


@dataclass
class ModelProfile:
    """How one model's traffic looks when nothing is wrong."""

    name: str
    version: str
    weight: float
    numeric: dict[str, tuple[float, float]]  # name -> (mean, sd)
    categorical: dict[str, tuple[tuple[str, ...], tuple[float, ...]]]
    latency_median_ms: float = 40.0
    thumbs_down_rate: float = 0.02
    label_rate: float = 0.3
    click_rate: float = 0.08
    segments: tuple[str, ...] = ("east", "west", "north", "south")
    coefficients: dict[str, float] = field(default_factory=dict)


DEFAULT_MODELS = (
    ModelProfile(
        name="recsys", version="v12", weight=0.5,
        numeric={"price": (50.0, 12.0), "session_length": (300.0, 90.0), "items_viewed": (6.0, 2.0)},
        categorical={"category": (("shoes", "books", "games", "garden"), (0.4, 0.3, 0.2, 0.1)),
                     "device": (("ios", "android", "web"), (0.45, 0.4, 0.15))},
        coefficients={"price": -0.03, "items_viewed": 0.25},
    ),
    ModelProfile(
        name="fraud", version="v3", weight=0.3,
        numeric={"amount": (80.0, 30.0), "account_age_days": (400.0, 150.0), "tx_last_hour": (2.0, 1.0)},
        categorical={"channel": (("card", "wallet", "transfer"), (0.6, 0.3, 0.1)),
                     "country": (("cn", "us", "de", "other"), (0.5, 0.25, 0.15, 0.1))},
        coefficients={"amount": 0.02, "tx_last_hour": 0.5},
        latency_median_ms=35.0, thumbs_down_rate=0.01,
    ),
    ModelProfile(
        name="search", version="v7", weight=0.2,
        numeric={"query_length": (4.0, 1.5), "results": (40.0, 10.0)},
        categorical={"locale": (("zh-CN", "en-US", "de-DE"), (0.6, 0.3, 0.1))},
        coefficients={"query_length": 0.3},
        latency_median_ms=45.0, thumbs_down_rate=0.02,
    ),
)


def default_faults(duration_s: float | None) -> list[Fault]:
    """One fault of each kind the demo shows, spread over the run so each has time to be
    seen (a rate detector first learns its normal rate: the spikes come after that).

    >>> [(f.kind, f.start_s) for f in default_faults(60)][:2]
    [('feature_drift', 9.0), ('latency_regression', 15.0)]
    """
    span = 90.0 if duration_s is None else duration_s
    at = {kind: round(share * span, 1) for kind, share in (
        ("feature_drift", 0.15), ("latency_regression", 0.25), ("feedback_spike", 0.4), ("segment_spike", 0.5),
        ("canary_regression", 0.6), ("quality_decay", 0.65))}
    return [
        Fault("feature_drift", "recsys", at["feature_drift"], "recsys.price mean 50 -> 74", feature="price"),
        Fault("latency_regression", "fraud", at["latency_regression"], "fraud latency median 35 ms -> 140 ms"),
        Fault("feedback_spike", "search", at["feedback_spike"], "search thumbs-down 2% -> 20%"),
        Fault("segment_spike", "recsys", at["segment_spike"], f"recsys thumbs-down 2% -> 20% in region={SPIKE_REGION}"),
        Fault("canary_regression", "search", at["canary_regression"],
              f"search {canary_version('v7')} on {CANARY_SHARE:.0%} of traffic, 4x slower than v7"),
        Fault("quality_decay", "fraud", at["quality_decay"], "fraud late labels no longer follow scores"),
    ]


class TrafficSimulator:
    """Generates the events of a time span; feedback comes out when it is due."""

    def __init__(
        self,
        seed: int = 0,
        start_ts: float = 1_763_800_000.0,
        models: tuple[ModelProfile, ...] = DEFAULT_MODELS,
        faults: list[Fault] | None = None,
        bad_input_rate: float = 0.001,
    ) -> None:
        self.rng = random.Random(seed)
        # Comments are drawn from a second stream, so that the traffic (and every alert
        # on it) stays what the first stream made of it.
        self._words = random.Random(seed + 7919)
        self.start_ts = start_ts
        self.models = models
        self.faults = list(faults or [])
        self.bad_input_rate = bad_input_rate
        self.elapsed = 0.0
        self._weights = [m.weight for m in models]
        self._due: list[tuple[float, int, Event]] = []
        self._seq = 0
        self._carry = 0.0

    def _active(self, kind: str, model: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind and f.model == model and self.elapsed >= f.start_s]

    def active(self, kind: str, model: str) -> bool:
        """Whether a fault of this kind is in effect for the model now."""
        return bool(self._active(kind, model))

    def advance(self, seconds: float, rate: float) -> list[Event | bytes]:
        """The next ``seconds`` of traffic at ``rate`` predictions per second.

        Returns events (dicts) in time order; a few entries are raw bytes of bad
        input, as a buggy producer would send.
        """
        expected = seconds * rate + self._carry
        count = int(expected)
        self._carry = expected - count
        out: list[Event | bytes] = []
        base, step = self.elapsed, (seconds / count if count else 0.0)
        for i in range(count):
            self.elapsed = base + i * step
            ts = self.start_ts + self.elapsed
            out.extend(self._release(ts))
            out.append(self._prediction(ts))
            out.extend(self._side_events(out[-1]))  # type: ignore[arg-type]
            if self.rng.random() < self.bad_input_rate:
                out.append(self._bad_input())
        self.elapsed = base + seconds
        out.extend(self._release(self.start_ts + self.elapsed))
        return out

    def _release(self, ts: float) -> list[Event]:
        out = []
        while self._due and self._due[0][0] <= ts:
            out.append(heapq.heappop(self._due)[2])
        return out

    def _later(self, event: Event) -> None:
        self._seq += 1
        heapq.heappush(self._due, (event["ts"], self._seq, event))

    def _id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq}"

    def _prediction(self, ts: float) -> Event:
        rng = self.rng
        model = rng.choices(self.models, self._weights)[0]
        features: dict[str, Any] = {}
        drifting = {f.feature for f in self._active("feature_drift", model.name)}
        for name, (mean, sd) in model.numeric.items():
            shift = 2.0 * sd if name in drifting else 0.0
            value = rng.gauss(mean + shift, sd)
            features[name] = round(max(value, 0.0), 2)
        for name, (values, probs) in model.categorical.items():
            features[name] = rng.choices(values, probs)[0]
        if rng.random() < 0.01:  # a little missing data is normal
            features[rng.choice(list(features))] = None
        logit = sum(coef * (features.get(n) or 0.0) for n, coef in model.coefficients.items())
        logit -= sum(coef * model.numeric[n][0] for n, coef in model.coefficients.items())
        score = 1.0 / (1.0 + math.exp(-(logit + rng.gauss(0, 1.0))))
        version, slower = model.version, self.active("latency_regression", model.name)
        if self.active("canary_regression", model.name) and rng.random() < CANARY_SHARE:
            version, slower = canary_version(model.version), True
        median = model.latency_median_ms * (4.0 if slower else 1.0)
        latency = median * math.exp(rng.gauss(0.0, 0.35))
        request_id = self._id("r")
        return {
            "event_id": self._id("e"), "type": "prediction", "ts": round(ts, 3),
            "model": model.name, "model_version": version, "request_id": request_id,
            "features": features, "prediction": {"score": round(score, 4), "label": score >= 0.5},
            "latency_ms": round(latency, 2), "status": "error" if rng.random() < 0.0003 else "ok",
            "segment": {"region": rng.choice(model.segments), "new_user": rng.random() < 0.2},
        }

    def _side_events(self, prediction: Event) -> list[Event]:
        """Impressions and clicks now; feedback and labels later."""
        rng = self.rng
        model = next(m for m in self.models if m.name == prediction["model"])
        ts, rid, name = prediction["ts"], prediction["request_id"], model.name
        now: list[Event] = []
        if name == "recsys":
            now.append(self._simple("impression", ts, name, rid))
            if rng.random() < model.click_rate * (0.4 if self.active("ctr_drop", name) else 1.0):
                now.append(self._simple("click", ts + rng.uniform(0.5, 5), name, rid))
        spiking = self.active("feedback_spike", name) or (
            self.active("segment_spike", name) and prediction["segment"]["region"] == SPIKE_REGION)
        down = 0.2 if spiking else model.thumbs_down_rate
        roll = rng.random()
        if roll < down:
            self._later(self._feedback(ts + rng.uniform(1, 8), name, rid, "thumbs_down"))
        elif roll < down + 0.002:
            self._later(self._feedback(ts + rng.uniform(1, 8), name, rid, "complaint"))
        elif roll < down + 0.05:
            self._later(self._feedback(ts + rng.uniform(1, 8), name, rid, "thumbs_up"))
        if rng.random() < model.label_rate:
            score = prediction["prediction"]["score"]
            truth = rng.random() < (0.5 if self.active("quality_decay", name) else _sharpen(score))
            self._later(self._feedback(ts + rng.uniform(2, 12), name, rid, "label", value=truth))
        return now

    def _simple(self, kind: str, ts: float, model: str, rid: str) -> Event:
        return {"event_id": self._id("e"), "type": kind, "ts": round(ts, 3), "model": model, "request_id": rid}

    def _feedback(self, ts: float, model: str, rid: str, kind: str, value: Any = None) -> Event:
        rng = self.rng
        event: Event = {"event_id": self._id("f"), "type": "feedback", "ts": round(ts, 3), "model": model,
                        "request_id": rid, "kind": kind, "value": value}
        if kind in ("thumbs_down", "complaint"):
            picked = rng.choice(("irrelevant", "wrong", "slow", "offensive"))
            template = rng.choice(_COMMENTS)
            pii = {"email": f"user{rng.randrange(1000)}@example.com",
                   "phone": f"13{rng.randrange(3, 10)}{rng.randrange(10**8):08d}", "card": "4111 1111 1111 1111"}
            reason = self._reason(model, picked)
            words = self._words
            comment = words.choice(_COMMENTS_BY_REASON[reason])
            if "{" in template:  # a user who leaves personal data in the comment
                comment += words.choice(_PII_TAILS)
            event["comment"] = comment.format(**pii)
            if reason is not None and words.random() < 0.7:  # some pick no reason code, only write
                event["reason"] = reason
        return event

    def _reason(self, model: str, picked: str) -> str | None:
        """What users complain about: mostly the fault in effect, rarely offensive content."""
        words = self._words
        if self.active("latency_regression", model) and words.random() < 0.8:
            return "slow"
        if self.active("quality_decay", model) and words.random() < 0.6:
            return "wrong"
        if (self.active("feedback_spike", model) or self.active("segment_spike", model)) and words.random() < 0.7:
            return "irrelevant"
        if picked == "offensive" and words.random() < 0.85:
            return None
        if picked == "slow" and words.random() < 0.6:
            return "irrelevant"
        return picked

    def _bad_input(self) -> bytes:
        return self.rng.choice((
            b"not json at all",
            b'{"event_id": "x", "type": "prediction", "model": "recsys", "ts": NaN}',
            b'{"event_id": "x", "type": "teleport", "model": "recsys", "ts": 1763800000}',
            b'["an", "array"]',
            b'{"event_id": "x", "type": "prediction", "ts": 1763800000}',
        ))


def _sharpen(score: float) -> float:
    """The chance a label is positive given a score: a model that is right ~85% of the time."""
    return min(0.97, max(0.03, 0.5 + (score - 0.5) * 2.2))
