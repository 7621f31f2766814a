"""The slices benchmark's streams: two models' traffic with segments, one change each.

Every stream is a list of events of the contract (README, "Event contract") in the
order a consumer reads them: sorted by event time, feedback after its prediction.
Predictions come at ``RATE`` a second of event time, split between two models; each
carries features, a score and a label, a latency, a status and a ``segment`` (3-5
keys). Feedback on the same ``request_id``: thumbs-down and complaints a few seconds
later, late ``label`` feedback (value 0/1, or the label itself for a string label)
5-60 seconds later; the first model's predictions are also shown (an impression),
some clicked, some of those converted, each of these carrying the prediction's segment.
A stream ends with its last prediction (feedback due later is left out, as in a window of
a stream that goes on).

A change starts at a prediction index; ``change_at`` is the stream position of that
prediction (feedback included in the count). ``expect`` is the alert identity that
proves the feature under test; ``also`` are the other alerts the change makes true
(the whole model's error rate does rise a little when one region's does), which are
not false alarms; ``declared`` are the rates the generator promises before and after
the change, which the suite checks on the events themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATE = 50.0  # predictions per second of event time, both models together
START_TS = 1_790_000_000.0
ANY = "*"  # an Expect field that matches anything

Event = dict[str, Any]


@dataclass(frozen=True)
class Expect:
    """An alert identity. ``None`` in ``segment`` means the alert must have no segment;
    ``ANY`` in a field matches anything; ``exclude_key`` (with ``segment=ANY``) refuses an
    alert naming that segment key (another value of the changed key is a false alarm)."""

    kind: str
    model: str
    segment: dict[str, str] | str | None = None
    detector: str = ANY
    feature: str | None = ANY
    model_version: str | None = ANY
    baseline_version: str | None = ANY
    exclude_key: str | None = None

    def matches(self, alert: dict[str, Any]) -> bool:
        if alert.get("kind") != self.kind or alert.get("model") != self.model:
            return False
        for name in ("detector", "feature", "model_version", "baseline_version"):
            want = getattr(self, name)
            if want != ANY and alert.get(name) != want:
                return False
        segment = alert.get("segment") or None
        if self.segment == ANY:
            return not (self.exclude_key and segment and self.exclude_key in segment)
        return segment == self.segment

    def describe(self) -> str:
        parts = [self.kind, f"model {self.model}"]
        for name in ("model_version", "baseline_version", "detector", "feature"):
            if getattr(self, name) != ANY:
                parts.append(f"{name} {getattr(self, name)}")
        if self.segment == ANY:
            parts.append("any segment" + (f" but another {self.exclude_key}" if self.exclude_key else ""))
        else:
            parts.append("segment " + ("null" if self.segment is None else
                                       ",".join(f"{k}={v}" for k, v in self.segment.items())))
        return ", ".join(parts)


@dataclass(frozen=True)
class Rate:
    """A rate the generator promises, before and after the change, among the predictions
    of ``model`` (and ``version``) whose segment has the values ``where`` (as text).

    ``what``: ``label_error`` (late labels that disagree with the label, per label),
    ``thumbs_down`` (per prediction), ``conversion`` (per impression), ``favourable``
    (score >= 0.5, per prediction), ``slow`` (latency over 100 ms, per prediction),
    ``label_share`` (predictions with a late label)."""

    what: str
    model: str
    before: float | None
    after: float | None
    where: tuple[tuple[str, str], ...] = ()
    version: str | None = None


@dataclass
class SliceStream:
    name: str
    description: str
    events: list[Event]
    change_at: int | None  # stream position of the first changed prediction; None: nothing changes
    expect: Expect | None
    also: tuple[Expect, ...] = ()
    declared: tuple[Rate, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.change_at is not None


# -- the traffic ----------------------------------------------------------------------------------------------

BASE_KEYS: dict[str, tuple[tuple[Any, ...], tuple[float, ...]]] = {
    "region": (("east", "west", "north", "south", "central", "far"), (0.3, 0.25, 0.2, 0.1, 0.1, 0.05)),
    "device": (("ios", "android", "web", "tablet"), (0.4, 0.3, 0.2, 0.1)),
    "new_user": ((True, False), (0.15, 0.85)),
    "gender": (("f", "m", "x"), (0.45, 0.5, 0.05)),
}


def _zipf(prefix: str, n: int, s: float = 1.0) -> tuple[tuple[str, ...], tuple[float, ...]]:
    weights = 1.0 / np.arange(1, n + 1) ** s
    return tuple(f"{prefix}{i:02d}" for i in range(n)), tuple(float(w) for w in weights / weights.sum())


MANY_KEYS: dict[str, tuple[tuple[Any, ...], tuple[float, ...]]] = {
    "region": _zipf("r", 30), "device": _zipf("d", 10), "cohort": _zipf("c", 20), "age_band": _zipf("a", 10),
    "gender": BASE_KEYS["gender"],
}


@dataclass
class Layout:
    """Who sends what: the shape of a stream before any change."""

    predictions: int
    change: int | None  # prediction index of the change
    seed: int
    models: tuple[tuple[str, float], ...] = (("ranker", 0.8), ("fraud", 0.2))
    versions: dict[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)  # default: v1 only
    keys: dict[str, tuple[tuple[Any, ...], tuple[float, ...]]] = field(default_factory=lambda: dict(BASE_KEYS))
    label_share: float = 0.5
    label_delay: tuple[float, float] = (5.0, 60.0)
    error_rate: float = 0.05
    thumbs_down: float = 0.02
    complaint: float = 0.002
    latency_median_ms: float = 45.0
    error_status: float = 0.0005
    click: float = 0.12  # per impression (the first model's predictions are all shown)
    convert: float = 0.35  # per click


class Traffic:
    """Per-prediction arrays a scenario edits before the events are written."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        n = layout.predictions
        self.rng = rng = np.random.default_rng(layout.seed)
        self.n = n
        self.index = np.arange(n)
        self.after = (self.index >= layout.change) if layout.change is not None else np.zeros(n, bool)
        names = [m for m, _ in layout.models]
        self.model = np.array(names, dtype=object)[rng.choice(len(names), n, p=[s for _, s in layout.models])]
        self.version = np.full(n, "v1", dtype=object)
        for model, versions in layout.versions.items():
            mask = self.model == model
            labels = np.array([v for v, _ in versions], dtype=object)
            self.version[mask] = labels[rng.choice(len(versions), int(mask.sum()), p=[s for _, s in versions])]
        self.segment: dict[str, np.ndarray] = {}
        for key, (values, probs) in layout.keys.items():
            self.segment[key] = np.array(values, dtype=object)[rng.choice(len(values), n, p=probs)]
        self.x = rng.normal(0.0, 1.0, (n, 4))
        self.channel = np.array(("search", "feed", "email"), dtype=object)[rng.choice(3, n, p=(0.5, 0.35, 0.15))]
        self.logit = 1.2 * self.x[:, 0] - 0.8 * self.x[:, 1] + 0.5 * self.x[:, 2]
        self.error = np.full(n, layout.error_rate)
        self.thumbs = np.full(n, layout.thumbs_down)
        self.complaint = np.full(n, layout.complaint)
        self.latency_median = np.full(n, layout.latency_median_ms)
        self.error_status = np.full(n, layout.error_status)
        self.label_share = np.full(n, layout.label_share)
        self.click = np.full(n, layout.click)
        self.convert = np.full(n, layout.convert)
        self.shown = self.model == layout.models[0][0]
        #: Set by a scenario to override the defaults (a score from the logit, a bool label at 0.5, the
        #: truth the label flipped at ``error``).
        self.score: np.ndarray | None = None
        self.label: np.ndarray | None = None
        self.truth: np.ndarray | None = None
        self.label_delay: tuple[float, float] = layout.label_delay

    def where(self, model: str | None = None, version: str | None = None, **segment: Any) -> np.ndarray:
        mask = np.ones(self.n, bool)
        if model is not None:
            mask &= self.model == model
        if version is not None:
            mask &= self.version == version
        for key, value in segment.items():
            mask &= self.segment[key] == value
        return mask

    def events(self) -> tuple[list[Event], int | None]:
        """The stream, sorted by event time (stable: a prediction before its own feedback)."""
        rng, n, layout = self.rng, self.n, self.layout
        ts = START_TS + self.index / RATE
        score = self.score if self.score is not None else 1.0 / (1.0 + np.exp(-self.logit))
        score = np.round(score, 4)
        label = self.label if self.label is not None else score >= 0.5
        if self.truth is None:
            flip = rng.random(n) < self.error
            truth = np.where(flip, ~label.astype(bool), label.astype(bool)).astype(int)
        else:
            truth = self.truth
        latency = np.round(self.latency_median * np.exp(rng.normal(0.0, 0.35, n)), 2)
        failed = rng.random(n) < self.error_status
        labelled = rng.random(n) < self.label_share
        label_at = ts + rng.uniform(*self.label_delay, n)
        thumbs = rng.random(n) < self.thumbs
        thumbs_at = ts + rng.uniform(2.0, 30.0, n)
        complains = rng.random(n) < self.complaint
        complaint_at = ts + rng.uniform(30.0, 300.0, n)
        clicked = self.shown & (rng.random(n) < self.click)
        click_at = ts + rng.uniform(1.0, 30.0, n)
        converted = clicked & (rng.random(n) < self.convert)
        convert_at = click_at + rng.uniform(10.0, 120.0, n)
        x = np.round(self.x, 4)
        out: list[tuple[float, Event]] = []
        change_pos_ts = None if layout.change is None else float(ts[layout.change])
        for i in range(n):
            model, rid, t = self.model[i], f"r{layout.seed}-{i}", round(float(ts[i]), 3)
            segment = {k: v[i] for k, v in self.segment.items()}
            lab = label[i]
            lab = bool(lab) if isinstance(lab, (bool, np.bool_)) else str(lab)
            out.append((t, {
                "event_id": f"p{layout.seed}-{i}", "type": "prediction", "ts": t, "model": model,
                "model_version": self.version[i], "request_id": rid,
                "features": {"x0": float(x[i, 0]), "x1": float(x[i, 1]), "x2": float(x[i, 2]), "x3": float(x[i, 3]),
                             "channel": self.channel[i]},
                "prediction": {"score": float(score[i]), "label": lab},
                "latency_ms": float(latency[i]), "status": "error" if failed[i] else "ok", "segment": segment}))

            def feedback(at: float, kind: str, value: Any = None, i: int = i, model: str = model,
                         rid: str = rid) -> None:
                out.append((round(at, 3), {"event_id": f"f{layout.seed}-{kind}-{i}", "type": "feedback",
                                           "ts": round(at, 3), "model": model, "request_id": rid, "kind": kind,
                                           "value": value}))

            if labelled[i]:
                value = truth[i]
                feedback(float(label_at[i]), "label", int(value) if isinstance(lab, bool) else str(value))
            if thumbs[i]:
                feedback(float(thumbs_at[i]), "thumbs_down")
            if complains[i]:
                feedback(float(complaint_at[i]), "complaint")
            if self.shown[i]:
                tracking = {"model": model, "request_id": rid, "segment": segment}
                out.append((round(t + 0.01, 3), {"event_id": f"i{layout.seed}-{i}", "type": "impression",
                                                 "ts": round(t + 0.01, 3), **tracking}))
                if clicked[i]:
                    at = round(float(click_at[i]), 3)
                    out.append((at, {"event_id": f"c{layout.seed}-{i}", "type": "click", "ts": at, **tracking}))
                if converted[i]:
                    at = round(float(convert_at[i]), 3)
                    out.append((at, {"event_id": f"v{layout.seed}-{i}", "type": "conversion", "ts": at,
                                     **tracking}))
        out.sort(key=lambda pair: pair[0])  # stable: ties keep the order written
        # The stream ends with its last prediction, as a window of a stream that goes on would: feedback
        # still arriving after it (complaints up to 5 minutes on) would be a spike of feedback on no traffic.
        end = round(float(ts[-1]), 3)
        events = [e for at, e in out if at <= end]
        change_at = None
        if change_pos_ts is not None:
            first = f"p{layout.seed}-{layout.change}"
            change_at = next(p for p, e in enumerate(events) if e["event_id"] == first)
        return events, change_at


# -- the scenarios --------------------------------------------------------------------------------------------

def _others(kind: str, model: str, key: str | None, detector: str = ANY) -> Expect:
    """The whole model, or a segment of another key than the changed one: true after the change, coarser."""
    return Expect(kind, model, ANY, detector=detector, exclude_key=key)


def decay_one_segment(scale: float = 1.0) -> SliceStream:
    n = int(100_000 * scale)
    # The change at 60%: south has about 2,400 late labels before it (a segment's warm-up is its own).
    t = Traffic(Layout(n, int(n * 0.6), seed=1301))
    south = t.where("ranker", region="south") & t.after
    t.error[south] = 0.15
    events, pos = t.events()
    return SliceStream(
        "decay_one_segment", "late labels' error 5% -> 15% in region=south only (10% of the ranker's traffic)",
        events, pos, Expect("metric_decay", "ranker", {"region": "south"}, detector="error_rate"),
        also=(_others("metric_decay", "ranker", "region", "error_rate"),),
        declared=(Rate("label_error", "ranker", 0.05, 0.15, (("region", "south"),)),
                  Rate("label_error", "ranker", 0.05, 0.05, (("region", "east"),))))


def spike_new_users(scale: float = 1.0) -> SliceStream:
    n = int(80_000 * scale)
    t = Traffic(Layout(n, n // 2, seed=1302))
    t.thumbs[t.where("ranker", new_user=True) & t.after] = 0.08
    events, pos = t.events()
    return SliceStream(
        "spike_new_users", "thumbs-down 2% -> 8% of predictions among new_user=true (15% of traffic)",
        events, pos, Expect("feedback_spike", "ranker", {"new_user": "true"}),
        also=(_others("feedback_spike", "ranker", "new_user"),),
        declared=(Rate("thumbs_down", "ranker", 0.02, 0.08, (("new_user", "true"),)),
                  Rate("thumbs_down", "ranker", 0.02, 0.02, (("new_user", "false"),))))


def conversion_drop_segment(scale: float = 1.0) -> SliceStream:
    n = int(80_000 * scale)
    t = Traffic(Layout(n, n // 2, seed=1303))
    t.convert[t.where("ranker", device="web") & t.after] = 0.175
    events, pos = t.events()
    return SliceStream(
        "conversion_drop_segment", "conversions per impression 4.2% -> 2.1% on device=web (20% of traffic)",
        events, pos, Expect("metric_decay", "ranker", {"device": "web"}, detector="conversion_rate"),
        also=(_others("metric_decay", "ranker", "device", "conversion_rate"),),
        declared=(Rate("conversion", "ranker", 0.042, 0.021, (("device", "web"),)),
                  Rate("conversion", "ranker", 0.042, 0.042, (("device", "ios"),))))


def parity_gap(scale: float = 1.0) -> SliceStream:
    """Approvals of gender=f fall to 0.6x of gender=m's; equalised odds hold throughout (the truth's base
    rate for f falls with them, the model stays right 90% of the time for everyone), so only
    demographic parity breaks."""
    n = int(80_000 * scale)
    t = Traffic(Layout(n, n // 2, seed=1304, models=(("loans", 0.7), ("ranker", 0.3))))
    base = np.full(n, 0.5)  # P(truth = approve)
    base[t.where("loans", gender="f") & t.after] = 0.25  # approvals 0.25 * 0.9 + 0.75 * 0.1 = 0.3 = 0.6 x 0.5
    truth = t.rng.random(n) < base
    right = t.rng.random(n) >= 0.10
    approve = np.where(right, truth, ~truth)
    loans = t.model == "loans"
    margin = t.rng.beta(2.0, 2.0, n) * 0.4999
    score = np.where(approve, 0.5 + margin, 0.4999 - margin)
    t.score = np.where(loans, score, 1.0 / (1.0 + np.exp(-t.logit)))
    t.label = np.where(loans, np.where(approve, "approve", "deny"), np.round(t.score, 4) >= 0.5)
    flip = t.rng.random(n) < t.error
    t.truth = np.where(loans, np.where(truth, "approve", "deny"), np.where(flip, ~t.label.astype(bool),
                                                                             t.label.astype(bool)))
    events, pos = t.events()
    return SliceStream(
        "parity_gap", "approvals for gender=f 50% -> 30% (0.6x gender=m's 50%); equalised odds unchanged",
        events, pos, Expect("fairness_gap", "loans", {"gender": "f"}, feature="gender",
                            detector="demographic_parity"),
        also=(Expect("prediction_drift", "loans", ANY, exclude_key="region"),),
        declared=(Rate("favourable", "loans", 0.5, 0.3, (("gender", "f"),)),
                  Rate("favourable", "loans", 0.5, 0.5, (("gender", "m"),)),
                  Rate("label_error", "loans", 0.10, 0.10, (("gender", "f"),))))


def _canary(name: str, description: str, seed: int, scale: float, detector: str,
            edit: Callable[[Traffic], None], declared: tuple[Rate, ...], also: tuple[Expect, ...] = (),
            worse: bool = True) -> SliceStream:
    n = int(80_000 * scale)
    t = Traffic(Layout(n, 0, seed=seed, versions={"ranker": (("v1", 0.9), ("v2", 0.1))}))
    edit(t)
    events, _ = t.events()
    first_v2 = next(p for p, e in enumerate(events) if e.get("model_version") == "v2")
    if not worse:
        return SliceStream(name, description, events, None, None, declared=declared,
                           notes={"first_v2_event": first_v2})
    return SliceStream(name, description, events, first_v2,
                       Expect("canary_regression", "ranker", None, detector=detector, model_version="v2",
                              baseline_version="v1"), also=also, declared=declared)


def canary_worse_error(scale: float = 1.0) -> SliceStream:
    def edit(t: Traffic) -> None:
        t.error[t.where("ranker", "v2")] = 0.10
    return _canary("canary_worse_error", "ranker v1 90% / v2 10% from the start; v2's label error 10%, v1's 5%",
                   1305, scale, "error_rate", edit,
                   (Rate("label_error", "ranker", None, 0.10, version="v2"),
                    Rate("label_error", "ranker", None, 0.05, version="v1")))


def canary_worse_latency(scale: float = 1.0) -> SliceStream:
    def edit(t: Traffic) -> None:
        # lognormal, sigma 0.35: median 48.7 ms -> 2% over 100 ms; median 83.2 ms -> 30%
        t.latency_median[t.where("ranker", "v1")] = 48.7
        t.latency_median[t.where("ranker", "v2")] = 83.2
    return _canary("canary_worse_latency", "ranker v1 90% / v2 10%; 30% of v2's requests over 100 ms, 2% of v1's",
                   1306, scale, "latency", edit,
                   (Rate("slow", "ranker", None, 0.30, version="v2"), Rate("slow", "ranker", None, 0.02, version="v1")),
                   also=(Expect("slo_burn", "ranker", ANY, model_version="v2"),))


def canary_as_good(scale: float = 1.0) -> SliceStream:
    return _canary("canary_as_good", "ranker v1 90% / v2 10%, v2 identical in distribution", 1307, scale,
                   "", lambda t: None,
                   (Rate("label_error", "ranker", 0.05, None, version="v2"),
                    Rate("thumbs_down", "ranker", 0.02, None, version="v2")), worse=False)


def stationary_many_segments(scale: float = 1.0) -> SliceStream:
    n = int(150_000 * scale)
    t = Traffic(Layout(n, None, seed=1308, keys=dict(MANY_KEYS)))
    events, _ = t.events()
    return SliceStream(
        "stationary_many_segments", "nothing changes; region 30 values, device 10, cohort 20, age_band 10 "
        "(Zipf), gender 3", events, None, None,
        declared=(Rate("label_error", "ranker", 0.05, None), Rate("thumbs_down", "ranker", 0.02, None)))


def estimated_decay_covariate(scale: float = 1.0) -> SliceStream:
    """A calibrated classifier (truth ~ Bernoulli(score)), late labels on 5% of predictions, 10 minutes
    late. After the change x0 and x1 shrink towards 0 (sd 1 -> 0.34), so scores move towards 0.5 and
    the error of the decision rises from ~10% to ~25%."""
    n = int(120_000 * scale)
    change = n // 2
    t = Traffic(Layout(n, change, seed=1309, label_share=0.05, label_delay=(600.0, 630.0)))
    t.x[t.after & (t.model == "ranker"), :2] *= 0.34
    t.logit = 3.7 * (t.x[:, 0] + t.x[:, 1])
    t.score = 1.0 / (1.0 + np.exp(-t.logit))
    t.truth = (t.rng.random(n) < t.score).astype(int)
    events, pos = t.events()
    # When labels on changed predictions start to arrive (None: not within a short stream).
    first_label = next((p for p, e in enumerate(events) if e["type"] == "feedback" and e["kind"] == "label"
                       and int(e["request_id"].rsplit("-", 1)[1]) >= change), None)
    return SliceStream(
        "estimated_decay_covariate", "calibrated scores; the ranker's x0, x1 sd 1 -> 0.34, scores towards 0.5, the "
        "error 10% -> 25%; labels on 5%, 10 minutes late", events, pos,
        Expect("estimated_decay", "ranker", None, detector="estimated_error_rate"),
        also=(Expect("estimated_decay", "ranker", ANY), Expect("metric_decay", "ranker", ANY),
              Expect("data_drift", "ranker", ANY), Expect("prediction_drift", "ranker", ANY)),
        declared=(Rate("label_error", "ranker", 0.10, 0.25), Rate("label_share", "ranker", 0.05, 0.05)),
        notes={"first_changed_label": first_label})


SCENARIOS: dict[str, Callable[..., SliceStream]] = {f.__name__: f for f in (
    decay_one_segment, spike_new_users, conversion_drop_segment, parity_gap, canary_worse_error,
    canary_worse_latency, canary_as_good, stationary_many_segments, estimated_decay_covariate)}


def streams(scale: float = 1.0, names: list[str] | None = None) -> Iterator[SliceStream]:
    for name, make in SCENARIOS.items():
        if names is None or name in names:
            yield make(scale)


# -- what the events say (the suite checks ``declared`` with this) ----------------------------------------------

def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def measure(stream: SliceStream, rate: Rate) -> tuple[tuple[float, int], tuple[float, int]]:
    """(rate, count) before and after the change, of ``rate`` as the events say."""
    change = stream.change_at if stream.change_at is not None else len(stream.events)
    preds: dict[str, tuple[bool, dict[str, Any]]] = {}
    sums = {False: [0, 0], True: [0, 0]}  # after? -> [hits, count]
    for pos, e in enumerate(stream.events):
        if e["type"] == "prediction":
            if e["model"] != rate.model or (rate.version and e.get("model_version") != rate.version):
                continue
            if any(_text(e["segment"].get(k)) != v for k, v in rate.where):
                continue
            after = pos >= change
            preds[e["request_id"]] = (after, e)
            if rate.what in ("favourable", "slow", "thumbs_down", "label_share"):
                sums[after][1] += 1
                if rate.what == "favourable":
                    sums[after][0] += e["prediction"]["score"] >= 0.5
                elif rate.what == "slow":
                    sums[after][0] += e["latency_ms"] > 100.0
            continue
        hit = preds.get(e.get("request_id", ""))
        if hit is None:
            continue
        after, pred = hit
        if e["type"] == "feedback" and e["kind"] == "label":
            if rate.what == "label_error":
                label = pred["prediction"]["label"]
                truth = e["value"]
                wrong = (label != truth) if isinstance(label, str) else (bool(label) != bool(truth))
                sums[after][0] += wrong
                sums[after][1] += 1
            elif rate.what == "label_share":
                sums[after][0] += 1
        elif e["type"] == "feedback" and e["kind"] == "thumbs_down" and rate.what == "thumbs_down":
            sums[after][0] += 1
        elif rate.what == "conversion" and e["type"] in ("impression", "conversion"):
            sums[after][e["type"] == "impression"] += 1
    return tuple((h / c if c else float("nan"), c) for h, c in (sums[False], sums[True]))  # type: ignore[return-value]
