"""Seeded generators of hostile input and of label explosions, for the chaos scenarios.

``hostile_messages`` yields Kafka messages (topic, key, value) each with the reason the
contract says it must be dead-lettered for (``collectors.contract.BAD_INPUT_REASONS``),
or ``None`` for a valid event that must be processed. The reason comes from how the
message was *built*, never from running the decoder on it: the scenario compares the
daemon's dead-letter topic with it, message by message. Every message is keyed
``h-<index>`` so that its dead letter (which keeps the key) names it.

The cases, one per ``Case``: random bytes, printable garbage, truncated JSON, nesting
deeper than ``collect.max_depth`` and past the JSON parser's own limit, strings and
arrays up to and past ``collect.max_message_bytes``, NaN/Infinity/overflow, a wrong
type in each field, missing fields, unknown types and kinds, impossible values,
unicode edge cases (escaped lone surrogates, bidi overrides, zero-width and NUL
characters in names, raw control bytes, non-UTF-8 bytes, overlong encodings),
duplicate keys (the last one wins, as in every JSON parser here), tombstones and empty
values, numbers beyond int64 and float range, timestamps in ms, us, before 2000, in the
future and without an offset; and valid events at the edges (the largest message
allowed, ``max_features`` features, strings of ``max_string_length``, 1e308, names in
CJK and emoji, RFC 3339 times, unknown fields, a huge array in an unknown field).

``tests/test_decode.py`` holds a catalogue of one realistic message per reason and
Hypothesis properties (never raises); this is the seeded volume version of that
catalogue, for the daemon, with an expected reason per message.

``explosion_events`` yields valid predictions whose names are all new: every event a
new model_version, feature, prediction field, category, segment key and value, a third
of them a new model.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

#: The tracking fields a wrong type can go in, and a value of a type the contract refuses there.
_WRONG_TRACKING: list[tuple[str, list[Any]]] = [
    ("event_id", [7, 1.5, True, ["e-1"], {"id": "e-1"}]),
    ("type", [1, False, ["prediction"], {"t": "prediction"}]),
    ("ts", [True, False, ["2025-01-01T00:00:00Z"], {"seconds": 1}]),
    ("model", [7, 0.5, True, ["recsys"], {"name": "recsys"}]),
    ("model_version", [12, 1.5, True, ["v1"], {"v": 1}]),
    ("request_id", [1001, True, ["r"], {"r": 1}]),
    ("features", ["price=1", 12, True, [1, 2]]),
    ("prediction", ["click", 0.5, False, [0.5]]),
    ("segment", ["east", 3, True, ["east"]]),
    ("latency_ms", ["42ms", True, [42], {"ms": 42}]),
    ("status", [1, True, ["ok"], {"code": 500}]),
]
_WRONG_FEEDBACK: list[tuple[str, list[Any]]] = [
    ("kind", [1, True, ["thumbs_down"], {"k": 1}]),
    ("reason", [5, False, ["x"], {"r": 1}]),
    ("comment", [5, True, ["text"], {"c": "x"}]),
]
#: Characters that must not be in a name: bidi overrides and isolates, zero-width, BOM, NUL, escape, DEL.
_UNPRINTABLE = ["\u202e", "\u202d", "\u2066", "\u200b", "\u200f", "\ufeff", "\x00", "\x1b", "\x7f", "\u0085"]
_NAMES = ["推荐模型", "モデル", "модель", "نموذج", "🚀model", "e\u0301", "ａｂｃ", "x" * 256]


@dataclass(frozen=True)
class Message:
    """One message to produce, with what the daemon must do with it."""

    index: int
    topic: int  # 0 tracking, 1 feedback
    value: bytes | None
    expected: str | None  # the dead-letter reason, None for a valid event
    case: str

    @property
    def key(self) -> bytes:
        return f"h-{self.index}".encode()


class Hostile:
    """The generator's state: the seeded random source, the clock, the limits."""

    def __init__(self, seed: int, now: float, max_message_bytes: int = 256 * 1024, max_features: int = 200,
                 max_string_length: int = 4096, max_depth: int = 8, huge_share: float = 0.002) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.max_bytes, self.max_features = max_message_bytes, max_features
        self.max_str, self.max_depth = max_string_length, max_depth
        self.huge_share = huge_share
        self.n = 0
        self.requests: list[str] = []  # request_ids of valid predictions, for valid feedback

    # -- valid events ------------------------------------------------------------------
    def ts(self) -> float:
        return round(self.now - self.rng.uniform(0, 120), 3)

    def prediction(self, i: int) -> dict[str, Any]:
        r = self.rng
        model = r.choice(("recsys", "search", "fraud"))
        request = f"r-{i}"
        self.requests.append(request)
        if len(self.requests) > 5000:
            del self.requests[:1000]
        return {"event_id": f"e-{i}", "type": "prediction", "ts": self.ts(), "model": model,
                "model_version": r.choice(("v1", "v2")), "request_id": request,
                "features": {"price": round(r.lognormvariate(3, 1), 2), "age": r.randint(18, 90),
                             "category": r.choice(("shoes", "books", "toys", "food")), "new_user": r.random() < 0.2},
                "prediction": {"score": round(r.random(), 4), "label": r.choice(("click", "skip"))},
                "latency_ms": round(r.gammavariate(4, 10), 1), "status": "ok" if r.random() < 0.99 else "error",
                "segment": {"region": r.choice(("east", "west", "north")), "tier": r.choice(("free", "pro"))}}

    def feedback(self, i: int) -> dict[str, Any]:
        r = self.rng
        request = r.choice(self.requests) if self.requests else f"r-{i}"
        kind = r.choices(("thumbs_up", "thumbs_down", "label", "complaint"), (60, 15, 20, 5))[0]
        event: dict[str, Any] = {"event_id": f"f-{i}", "type": "feedback", "ts": self.ts(), "model": "recsys",
                                 "request_id": request, "kind": kind}
        if kind == "label":
            event["value"] = r.choice(("click", "skip"))
        elif kind in ("thumbs_down", "complaint"):
            event["comment"] = r.choice(("not what I searched for", "wrong size", "too expensive"))
        return event

    def valid(self, i: int) -> tuple[int, bytes, str]:
        """A valid event: mostly the usual, some at the edges of the contract."""
        r = self.rng
        roll = r.random()
        if roll < 0.08:
            return 1, orjson.dumps(self.feedback(i)), "valid_feedback"
        event = self.prediction(i)
        if roll < 0.15:
            event["type"] = r.choice(("impression", "click", "conversion"))
            return 0, orjson.dumps(event), "valid_business"
        if roll > 0.96:
            return 0, *self.valid_edge(i, event)
        return 0, orjson.dumps(event), "valid"

    def valid_edge(self, i: int, event: dict[str, Any]) -> tuple[bytes, str]:
        r = self.rng
        edge = r.choices(("extremes", "features_at_limit", "string_at_limit", "names", "rfc3339", "unknown_fields",
                          "duplicate_keys", "array_at_limit", "null_fields"), (10, 10, 10, 10, 10, 10, 10, 1, 10))[0]
        if edge == "extremes":
            event["features"].update(huge=1e308, tiny=5e-324, neg=-1.7e308, big_int=2**70, minus_zero=-0.0)
            event["latency_ms"] = r.choice((0, 1e308, 2**64 + 1))
            return json.dumps(event).encode(), "valid_extremes"  # orjson writes no integer past 64 bits
        if edge == "features_at_limit":
            event["features"] = {f"f{k}": r.random() for k in range(self.max_features)}
        elif edge == "string_at_limit":
            event["features"]["query"] = "q" * self.max_str
            event["segment"]["ua"] = "u" * self.max_str
        elif edge == "names":
            event["model"] = r.choice(_NAMES)
            event["features"] = {r.choice(_NAMES): 1.0, "价格": 2.0}
            event["segment"] = {"地区": r.choice(_NAMES)}
        elif edge == "rfc3339":
            event["ts"] = _rfc3339(event["ts"], r.choice(("Z", "+08:00", "-05:00", "z")))
        elif edge == "unknown_fields":
            event.update(experiment="exp-42", shard=3, debug={"a": [1, {"b": [2]}]}, note="n" * self.max_str)
        elif edge == "duplicate_keys":  # the last one wins: a wrong first value does not count
            text = orjson.dumps(event).decode()
            return f'{{"model": 7, "features": "x", "ts": true, {text[1:]}'.encode(), "valid_duplicate_keys"
        elif edge == "array_at_limit":  # an unknown field only has its depth checked: the message size bounds it
            event["debug"] = []
            base = len(orjson.dumps(event))
            event["debug"] = [0] * ((self.max_bytes - base) // 2)
            message = orjson.dumps(event)
            assert len(message) <= self.max_bytes
            return message, "valid_array_at_limit"
        elif edge == "null_fields":
            for name in ("model_version", "request_id", "features", "prediction", "segment", "latency_ms", "status"):
                event[name] = None
        return orjson.dumps(event), f"valid_{edge}"

    # -- hostile messages --------------------------------------------------------------
    def hostile(self, i: int) -> tuple[int, bytes | None, str, str]:
        """(topic, value, expected reason, case name)."""
        r = self.rng
        if r.random() < self.huge_share:
            value, reason, case = self._huge(i)
            return int(r.random() < 0.5), value, reason, case
        make = r.choices(CASES, WEIGHTS)[0]
        built, why = make.build(self, i)
        return (1 if r.random() < 0.1 else 0), built, why, make.name

    def _huge(self, i: int) -> tuple[bytes, str, str]:
        """Strings and arrays up to and past max_message_bytes."""
        r = self.rng
        target = r.choice((self.max_bytes - r.randint(0, 64), self.max_bytes, self.max_bytes + 1,
                           self.max_bytes + r.randint(1, 4096), 2 * self.max_bytes, 4 * self.max_bytes))
        what = r.choice(("comment", "feature_string", "array_feature", "array_unknown"))
        if what == "comment":
            event: dict[str, Any] = self.feedback(i)
            event["comment"] = ""
            base = len(orjson.dumps(event))
            event["comment"] = "c" * max(0, target - base)
            reason = "too_large"
        elif what == "feature_string":
            event = self.prediction(i)
            event["features"]["query"] = ""
            base = len(orjson.dumps(event))
            event["features"]["query"] = "q" * max(0, target - base)
            reason = "too_large"
        elif what == "array_feature":
            event = self.prediction(i)
            event["features"]["history"] = []
            base = len(orjson.dumps(event))
            event["features"]["history"] = [1] * max(1, (target - base) // 2)
            reason = "wrong_type"
        else:
            event = self.prediction(i)
            event["debug"] = []
            base = len(orjson.dumps(event))
            event["debug"] = [1] * max(1, (target - base) // 2)
            reason = "valid"
        value = orjson.dumps(event)
        if len(value) > self.max_bytes:
            reason = "oversized"
        elif reason == "valid":
            return value, "", f"huge_{what}_within_limit"  # not hostile after all: a valid event
        return value, reason, f"huge_{what}"


def _rfc3339(ts: float, zone: str) -> str:
    hours = {"Z": 0, "z": 0, "+08:00": 8, "-05:00": -5}[zone]
    moment = datetime.fromtimestamp(ts, UTC) + timedelta(hours=hours)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return text + zone.lower() if zone == "z" else text + zone


def _dumps_bad(obj: Any) -> bytes:
    """JSON with NaN and Infinity written as the stdlib writes them (orjson would write null)."""
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode()


def _nested(depth: int) -> Any:
    value: Any = 1
    for k in range(depth):
        value = [value] if k % 2 else {"k": value}
    return value


# -- the cases: each builds a message and says its reason ---------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    weight: float
    build: Callable[[Hostile, int], tuple[bytes | None, str]]


def _random_bytes(h: Hostile, i: int) -> tuple[bytes | None, str]:
    # 0xFF never occurs in UTF-8: random bytes after it are not UTF-8, whatever they are.
    return b"\xff" + h.rng.randbytes(h.rng.randint(0, 300)), "not_utf8"


def _garbage(h: Hostile, i: int) -> tuple[bytes | None, str]:
    # Printable text that starts with a character no JSON value starts with.
    r = h.rng
    text = r.choice(("#", "<", "INFO ", "@", "=")) + "".join(r.choice("abc {}[]:,\"'=0123456789") for _ in range(
        r.randint(0, 200)))
    return text.encode(), "not_json"


def _truncated(h: Hostile, i: int) -> tuple[bytes | None, str]:
    # An ASCII event cut anywhere before its closing brace: never JSON, always UTF-8.
    value = orjson.dumps(h.prediction(i) if h.rng.random() < 0.8 else h.feedback(i))
    return value[: h.rng.randint(1, len(value) - 1)], "not_json"


def _syntax(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    good = orjson.dumps(h.prediction(i))
    return r.choice((good[:-1] + b",}", good.replace(b'"', b"'"), good + good, good + b" x",
                     good.replace(b":", b"=", 1), b"{" + good, good.replace(b"{", b"{,", 1))), "not_json"


def _deep(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    form = r.randrange(4)
    if form == 0:  # an unknown field nested past collect.max_depth, within the parser's limit
        event = h.prediction(i)
        event["debug"] = _nested(r.randint(h.max_depth + 1, 200))  # orjson writes at most 255 levels
        return orjson.dumps(event), "too_deep"
    if form == 1:  # feedback value nested too deep
        event = h.feedback(i)
        event["kind"], event["value"] = "correction", _nested(r.randint(h.max_depth + 1, 60))
        return orjson.dumps(event), "too_deep"
    if form == 2:  # past the JSON parser's own limit (1024)
        n = r.randint(1030, 4000)
        return b'{"event_id": "e", "debug": ' + b"[" * n + b"]" * n + b"}", "too_deep"
    n = r.randint(1030, 8000)
    return b"[" * n + b"]" * n, "too_deep"


def _non_finite(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    event = h.prediction(i)
    where = r.choice(("feature", "latency", "score", "ts"))
    constant = r.choice(("NaN", "Infinity", "-Infinity", "1e999", "-1e400"))
    marker = "__NONFINITE__"
    if where == "feature":
        event["features"]["price"] = marker
    elif where == "latency":
        event["latency_ms"] = marker
    elif where == "score":
        event["prediction"]["score"] = marker
    else:
        event["ts"] = marker
    return orjson.dumps(event).replace(f'"{marker}"'.encode(), constant.encode()), "non_finite_number"


def _wrong_type(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    if r.random() < 0.2:
        event = h.feedback(i)
        name, values = r.choice(_WRONG_FEEDBACK)
    else:
        event = h.prediction(i)
        name, values = r.choice(_WRONG_TRACKING)
        if r.random() < 0.3:  # a wrong type inside features, prediction or segment instead
            name = r.choice(("features", "prediction", "segment"))
            event[name]["bad"] = r.choice(([1], {"a": 1}, [], {}))
            return orjson.dumps(event), "wrong_type"
    event[name] = r.choice(values)
    return orjson.dumps(event), "wrong_type"


def _missing(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    if r.random() < 0.3:
        event = h.feedback(i)
        name = r.choice(("event_id", "type", "model", "ts", "request_id", "kind"))
    else:
        event = h.prediction(i)
        name = r.choice(("event_id", "type", "model", "ts"))
    if r.random() < 0.5:
        del event[name]
    else:
        event[name] = None
    return orjson.dumps(event), "missing_field"


def _unknown_vocabulary(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    if r.random() < 0.5:
        event = h.prediction(i)
        event["type"] = r.choice(("purchase", "Prediction", "PREDICTION", " prediction", "predictions", "x" * 64))
        return orjson.dumps(event), "unknown_type"
    event = h.feedback(i)
    event["kind"] = r.choice(("thumbs_sideways", "Thumbs_Down", "like", "label ", "k" * 64))
    return orjson.dumps(event), "unknown_kind"


def _bad_value(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    event = h.prediction(i)
    form = r.randrange(4)
    if form == 0:
        event["latency_ms"] = r.choice((-1, -0.001, -1e308))
    elif form == 1:
        event["status"] = r.choice(("timeout", "OK", "", "failed"))
    elif form == 2:
        event[r.choice(("event_id", "model", "type"))] = ""
    else:
        event = h.feedback(i)
        event["model"] = ""
    return orjson.dumps(event), "bad_value"


def _unprintable(h: Hostile, i: int) -> tuple[bytes | None, str]:
    """A control or format character in a name: escaped in JSON (\\u202e) or as raw UTF-8."""
    r = h.rng
    char = r.choice(_UNPRINTABLE)
    bad = r.choice(("", "recsys")) + char * r.randint(1, 50) + r.choice(("", "x"))
    event = h.prediction(i)
    where = r.randrange(5)
    if where == 0:
        event["model"] = bad
    elif where == 1:
        event["model_version"] = bad
    elif where == 2:
        event["features"][bad] = 1.0
    elif where == 3:
        event["segment"][bad] = "east"
    else:
        event["segment"]["region"] = bad
    # orjson escapes the C0 controls and writes the rest raw; the stdlib escapes all non-ASCII.
    value = orjson.dumps(event) if r.random() < 0.5 else json.dumps(event).encode()
    return value, "bad_value"


def _lone_surrogate(h: Hostile, i: int) -> tuple[bytes | None, str]:
    # An escaped lone surrogate ("\ud800") is JSON by grammar but not Unicode: orjson refuses it.
    r = h.rng
    event = h.prediction(i)
    where = r.choice(("model", "request_id", "features", "comment"))
    marker = "__SURROGATE__"
    if where == "features":
        event["features"][marker] = 1.0
    elif where == "comment":
        event = h.feedback(i)
        event["comment"] = marker
    else:
        event[where] = marker
    lone = r.choice(("\\ud800", "\\udfff", "x\\ud83d", "\\ude00y", "\\udbff\\udbff"))
    return orjson.dumps(event).replace(marker.encode(), lone.encode()), "not_json"


def _raw_control(h: Hostile, i: int) -> tuple[bytes | None, str]:
    # A raw (unescaped) control byte inside a string: JSON forbids it.
    r = h.rng
    event = h.prediction(i)
    marker = "__CTRL__"
    event["model" if r.random() < 0.5 else "event_id"] = f"m{marker}x"
    return orjson.dumps(event).replace(marker.encode(), bytes([r.choice((0, 1, 9, 10, 13, 27, 31))])), "not_json"


def _not_utf8(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    event = h.feedback(i) if r.random() < 0.5 else h.prediction(i)
    marker = "__BYTES__"
    if event["type"] == "feedback":
        event["comment"] = marker
    else:
        event["model"] = marker
    junk = r.choice(("café".encode("latin-1"), b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                     b"\x80", b"abc\xfe", "名".encode("gbk"), "名".encode()[:2]))
    return orjson.dumps(event).replace(marker.encode(), junk), "not_utf8"


def _duplicate_keys(h: Hostile, i: int) -> tuple[bytes | None, str]:
    # The last value wins: a valid first value does not save a wrong last one.
    r = h.rng
    event = h.prediction(i)
    text = orjson.dumps(event).decode()
    name, reason, bad = r.choice((("model", "wrong_type", "7"), ("ts", "bad_timestamp", "1763798400000"),
                                  ("status", "bad_value", '"timeout"'), ("features", "wrong_type", "[1]"),
                                  ("type", "unknown_type", '"purchase"')))
    return f'{text[:-1]}, "{name}": {bad}}}'.encode(), reason


def _empty(h: Hostile, i: int) -> tuple[bytes | None, str]:
    return (None if h.rng.random() < 0.7 else b""), "empty"


def _not_object(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    return r.choice((b"null", b"42", b"-1.5e3", b'"prediction"', b"true", b"[]", b"[{}]",
                     orjson.dumps([h.prediction(i)]), b"  \n 7 ")), "not_object"


def _numbers(h: Hostile, i: int) -> tuple[bytes | None, str]:
    """Numbers out of range: where a timestamp goes they are bad; elsewhere they are valid floats."""
    r = h.rng
    event = h.prediction(i)
    ts = r.choice((2**63, 2**64 + 5, 10**30, 1e20, -1.0, 0, 1e11 + 1, -(2**63)))
    event["ts"] = ts
    return orjson.dumps(event) if not isinstance(ts, int) or abs(ts) < 2**64 else (
        json.dumps(event).encode()), "bad_timestamp"


def _timestamps(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    event = h.prediction(i)
    form = r.randrange(6)
    if form == 0:
        event["ts"] = int(event["ts"] * 1000)  # milliseconds
    elif form == 1:
        event["ts"] = int(event["ts"] * 1_000_000)  # microseconds
    elif form == 2:
        event["ts"] = round(h.now + r.uniform(86_400, 10 * 365 * 86_400), 3)  # the future, past the skew
    elif form == 3:
        event["ts"] = r.choice((946_684_799.0, 1.0, 86_400.0, 915_148_800))  # before 2000
    elif form == 4:
        event["ts"] = _rfc3339(event["ts"], "Z")[:-1]  # no offset
    else:
        event["ts"] = r.choice(("yesterday", "2025-13-01T00:00:00Z", "", "1763798400", "2025-11-22 08:00"))
    return orjson.dumps(event), "bad_timestamp"


def _too_large(h: Hostile, i: int) -> tuple[bytes | None, str]:
    r = h.rng
    event = h.prediction(i)
    form = r.randrange(5)
    if form == 0:
        event["features"] = {f"f{k}": k for k in range(h.max_features + 1 + r.randint(0, 50))}
    elif form == 1:
        event["model"] = "m" * r.randint(257, 3000)
    elif form == 2:
        event["features"]["query"] = "q" * r.randint(h.max_str + 1, 3 * h.max_str)
    elif form == 3:
        event["features"]["k" * r.randint(257, 1000)] = 1
    else:
        event = h.feedback(i)
        event["comment"] = "c" * r.randint(h.max_str + 1, 3 * h.max_str)
    return orjson.dumps(event), "too_large"


CASES = (
    Case("random_bytes", 6, _random_bytes), Case("garbage_text", 4, _garbage), Case("truncated_json", 10, _truncated),
    Case("syntax_error", 4, _syntax), Case("deep_nesting", 3, _deep), Case("non_finite", 6, _non_finite),
    Case("wrong_type", 14, _wrong_type), Case("missing_field", 6, _missing),
    Case("unknown_vocabulary", 4, _unknown_vocabulary), Case("bad_value", 5, _bad_value),
    Case("unprintable_name", 8, _unprintable), Case("lone_surrogate", 4, _lone_surrogate),
    Case("raw_control_byte", 3, _raw_control), Case("not_utf8", 5, _not_utf8),
    Case("duplicate_keys", 4, _duplicate_keys), Case("tombstone", 3, _empty), Case("not_object", 3, _not_object),
    Case("number_out_of_range", 3, _numbers), Case("bad_timestamp", 8, _timestamps), Case("too_large", 4, _too_large),
)
WEIGHTS = [c.weight for c in CASES]


def hostile_messages(count: int, seed: int, now: float, valid_share: float = 0.5,
                     max_message_bytes: int = 256 * 1024, max_features: int = 200, max_string_length: int = 4096,
                     max_depth: int = 8, huge_share: float = 0.002) -> Iterator[Message]:
    """``count`` messages, each valid with probability ``valid_share`` (so the mix is
    shuffled by the seed), the rest hostile. ``now`` is the wall clock the daemon will
    read them near: valid timestamps are up to 2 minutes before it (the daemon allows
    ``collect.max_future_skew_s`` ahead, and any age)."""
    h = Hostile(seed, now, max_message_bytes, max_features, max_string_length, max_depth, huge_share)
    for i in range(count):
        if h.rng.random() < valid_share:
            topic, value, case = h.valid(i)
            yield Message(i, topic, value, None, case)
            continue
        topic, bad, reason, case = h.hostile(i)
        yield Message(i, topic, bad, reason or None, case)


# -- label explosions ------------------------------------------------------------------------
def explosion_events(count: int, now: float, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` valid predictions whose names are all new. Every event: a new
    model_version, feature, prediction field, category (of the feature ``cat``), segment
    key and segment value; every third event a new model (``m-<i>``), the others of the
    model ``explode``, so that the per-model bounds (versions, features, segment keys and
    values, slices) fill up too. Every other event of ``explode`` keeps the version
    ``v0``, so that one version meets the feature bound."""
    r = random.Random(seed)
    for i in range(count):
        model = f"m-{i}" if i % 3 == 0 else "explode"
        version = "v0" if i % 3 == 2 else f"v-{i}"
        yield {"event_id": f"x-{i}", "type": "prediction", "ts": round(now - r.uniform(0, 60), 3), "model": model,
               "model_version": version, "request_id": f"xr-{i}",
               "features": {f"f-{i}": r.random(), "price": r.random(), "cat": f"c-{i}"},
               "prediction": {"score": r.random(), f"p-{i}": r.random()},
               "latency_ms": 20.0 + r.random() * 30, "status": "ok",
               "segment": {f"k-{i}": f"s-{i}", "region": f"r-{i}"}}
