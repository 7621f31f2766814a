"""Decode and validate messages against the event contract.

A message is either a valid event (a ``dict``, normalised in place: ``ts`` becomes
epoch seconds as a float) or a reason from ``contract.BAD_INPUT_REASONS`` with a
human-readable detail. Nothing here raises on bad input.

>>> decoder = Decoder(Limits())
>>> event, reason, _ = decoder.decode(
...     b'{"event_id": "e-1", "type": "prediction", "ts": "2025-11-22T08:00:00Z",'
...     b' "model": "recsys", "latency_ms": 42}', now=1.8e9)
>>> event["ts"], reason
(1763798400.0, None)
>>> decoder.decode(b'{"event_id": "e-2", "type": "prediction", "ts": 1763798400000,'
...                b' "model": "recsys"}', now=1.8e9)[1:]
('bad_timestamp', 'ts 1763798400000 looks like milliseconds; the contract wants epoch seconds')
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from collectors.contract import (
    EVENT_TYPES,
    FEEDBACK_KINDS,
    FEEDBACK_TYPE,
    STATUSES,
    TRACKING_TYPES,
)

#: 2000-01-01T00:00:00Z. Anything earlier is a unit or clock mistake, not an event.
MIN_TS = 946_684_800.0
#: Longest feature, prediction or segment name: it becomes a metric label and a column.
MAX_KEY_LENGTH = 256
#: The control (Unicode category Cc) and format (Cf) characters, as of Unicode 15.1: NUL, escapes,
#: bidirectional overrides (U+202E), zero-width characters (U+200B..U+200F), the BOM. A name that
#: becomes a metric label, a store column or a file name must not hold one: it would hide or
#: reorder what a person reads. (tests/test_decode.py checks this against ``unicodedata``.)
UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")
_SCALARS = (str, int, float, bool, type(None))
_NUMBERS = (int, float)
#: Top-level fields the validator checks itself, by event kind; any other field is
#: only held to the depth bound (it is kept, and may be stored, so it must be bounded).
_COMMON_FIELDS = {"event_id", "type", "ts", "model", "model_version", "request_id"}
_TRACKING_FIELDS = frozenset(_COMMON_FIELDS | {"features", "prediction", "latency_ms", "status", "segment"})
_FEEDBACK_FIELDS = frozenset(_COMMON_FIELDS | {"kind", "reason", "comment", "value"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a single message may hold (see ``[collect]`` in the config)."""

    max_message_bytes: int = 256 * 1024
    max_features: int = 200
    max_string_length: int = 4096
    max_depth: int = 8
    max_future_skew_s: float = 300.0


def _usual_event(limits: Limits) -> msgspec.json.Decoder[Any]:
    """A msgspec decoder that validates the usual tracking event in C, as ``_validate`` would.

    It knows only the tracking fields, with the same bounds; whatever it refuses
    (feedback, an unknown field, any bad input) goes to the Python validator, which
    decides and says why. Integers are held to int64 (orjson takes uint64 too: those few go the slow way).
    """
    name = Annotated[str, msgspec.Meta(max_length=256)]
    key = Annotated[str, msgspec.Meta(max_length=MAX_KEY_LENGTH)]
    text = Annotated[str, msgspec.Meta(max_length=limits.max_string_length)]
    integer = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
    flat = Annotated[dict[key, integer | float | text | bool | None], msgspec.Meta(max_length=limits.max_features)]
    positive = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | Annotated[float, msgspec.Meta(ge=0)]
    fields: list[tuple[str, Any, Any]] = [
        ("event_id", Annotated[str, msgspec.Meta(min_length=1, max_length=256)], msgspec.NODEFAULT),
        ("type", Literal[tuple(sorted(TRACKING_TYPES))], msgspec.NODEFAULT),
        ("ts", integer | float | text, msgspec.NODEFAULT),
        ("model", Annotated[str, msgspec.Meta(min_length=1, max_length=256)], msgspec.NODEFAULT),
        ("model_version", name | None, None),
        ("request_id", name | None, None),
        ("features", flat | None, None),
        ("prediction", flat | None, None),
        ("segment", flat | None, None),
        ("latency_ms", positive | None, None),
        ("status", Literal[tuple(sorted(STATUSES))] | None, None),
    ]
    assert {f[0] for f in fields} == _TRACKING_FIELDS
    struct = msgspec.defstruct("UsualEvent", fields, forbid_unknown_fields=True, omit_defaults=True)
    return msgspec.json.Decoder(struct)


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


class Decoder:
    """Turns raw message bytes into valid events or bad-input reasons."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._usual = _usual_event(limits).decode

    def decode(self, value: bytes | None, now: float) -> tuple[dict[str, Any] | None, str | None, str]:
        """Return ``(event, None, "")`` or ``(None, reason, detail)``.

        ``now`` (epoch seconds) bounds how far in the future a timestamp may be; a
        runner passes one value per batch.
        """
        if value is None or len(value) == 0:
            return None, "empty", "message has no value"
        if len(value) > self.limits.max_message_bytes:
            return None, "oversized", (
                f"message is {len(value)} bytes; collect.max_message_bytes is "
                f"{self.limits.max_message_bytes}"
            )
        try:  # the usual event, validated in C: 2x faster than orjson and _validate
            usual = msgspec.to_builtins(self._usual(value))
        except msgspec.MsgspecError:
            usual = None
        if usual is not None and b"\\u0000" not in value:
            obj = usual
            try:
                obj["ts"] = _timestamp(obj, now + self.limits.max_future_skew_s)
                # ASCII without escapes or DEL holds no control or format character: most
                # messages skip the search of their names (a scan of the bytes in C).
                # (``int in bytes`` is a memchr; ``b"\\" in bytes`` a general search, 2x the cost here.)
                if not value.isascii() or 92 in value or 127 in value:  # 92 is the backslash, 127 DEL
                    _check_names(obj)
            except _Invalid as bad:
                return None, bad.reason, bad.detail
            return obj, None, ""
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            reason, detail = _classify_json_error(value, exc)
            return None, reason, detail
        try:
            return self._validate(obj, now), None, ""
        except _Invalid as bad:
            return None, bad.reason, bad.detail

    def validate(self, obj: Any, now: float) -> tuple[dict[str, Any] | None, str | None, str]:
        """What ``decode`` does after parsing, for an object that was never JSON (a row of an
        Arrow batch): ``(event, None, "")`` or ``(None, reason, detail)``."""
        try:
            return self._validate(obj, now), None, ""
        except _Invalid as bad:
            return None, bad.reason, bad.detail

    def _validate(self, obj: Any, now: float) -> dict[str, Any]:
        if type(obj) is not dict:
            raise _Invalid("not_object", f"expected a JSON object, got {_json_type(obj)}")
        lim = self.limits
        _required_str(obj, "event_id", 256)
        typ = _required_str(obj, "type", 64)
        if typ not in EVENT_TYPES:
            raise _Invalid("unknown_type", f"type {typ!r} is not one of {sorted(EVENT_TYPES)}")
        _required_str(obj, "model", 256)
        obj["ts"] = _timestamp(obj, now + lim.max_future_skew_s)
        for name in ("request_id", "model_version"):
            _optional_str(obj, name, 256)
        if typ == FEEDBACK_TYPE:
            if obj.get("request_id") is None:
                raise _Invalid("missing_field", "feedback needs request_id to find its prediction")
            kind = _required_str(obj, "kind", 64)
            if kind not in FEEDBACK_KINDS:
                raise _Invalid("unknown_kind", f"kind {kind!r} is not one of {sorted(FEEDBACK_KINDS)}")
            _optional_str(obj, "reason", lim.max_string_length)
            _optional_str(obj, "comment", lim.max_string_length)
            value = obj.get("value")
            if type(value) is str:
                if len(value) > lim.max_string_length:
                    raise _Invalid("too_large", f"value is {len(value)} characters; at most {lim.max_string_length}")
            elif value is not None and type(value) not in _SCALARS:
                _check_depth(value, lim.max_depth, "value")
            known = _FEEDBACK_FIELDS
        else:
            _flat_object(obj, "features", lim.max_features, lim.max_string_length)
            _flat_object(obj, "prediction", lim.max_features, lim.max_string_length)
            _flat_object(obj, "segment", lim.max_features, lim.max_string_length)
            latency = obj.get("latency_ms")
            if latency is not None:
                if type(latency) not in _NUMBERS:
                    raise _Invalid("wrong_type", f"latency_ms must be a number, got {_json_type(latency)}")
                if latency < 0:
                    raise _Invalid("bad_value", f"latency_ms {latency} is negative")
            status = obj.get("status")
            if status is not None:
                if type(status) is not str:
                    raise _Invalid("wrong_type", f"status must be a string, got {_json_type(status)}")
                if status not in STATUSES:
                    raise _Invalid("bad_value", f"status {status!r} is not one of {sorted(STATUSES)}")
            known = _TRACKING_FIELDS
        for name, extra in obj.items():
            if type(extra) is dict or type(extra) is list:
                if name not in known:
                    _check_depth(extra, lim.max_depth, name)
            elif type(extra) is str and len(extra) > lim.max_string_length and name not in known:
                raise _Invalid("too_large", f"{name} is {len(extra)} characters; at most {lim.max_string_length}")
        _check_names(obj, tracking=typ != FEEDBACK_TYPE)
        return obj


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _NUMBERS):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _required_str(obj: dict[str, Any], name: str, max_len: int) -> str:
    value = obj.get(name)
    if value is None:
        raise _Invalid("missing_field", f"{name} is required")
    if type(value) is not str:
        raise _Invalid("wrong_type", f"{name} must be a string, got {_json_type(value)}")
    if not value:
        raise _Invalid("bad_value", f"{name} must not be empty")
    if len(value) > max_len:
        raise _Invalid("too_large", f"{name} is {len(value)} characters; at most {max_len}")
    return value


def _optional_str(obj: dict[str, Any], name: str, max_len: int) -> None:
    value = obj.get(name)
    if value is None:
        return
    if type(value) is not str:
        raise _Invalid("wrong_type", f"{name} must be a string, got {_json_type(value)}")
    if len(value) > max_len:
        raise _Invalid("too_large", f"{name} is {len(value)} characters; at most {max_len}")


def _flat_object(obj: dict[str, Any], name: str, max_items: int, max_len: int) -> None:
    """``features``, ``prediction`` and ``segment``: an object of scalars."""
    value = obj.get(name)
    if value is None:
        return
    if type(value) is not dict:
        raise _Invalid("wrong_type", f"{name} must be an object, got {_json_type(value)}")
    if len(value) > max_items:
        raise _Invalid("too_large", f"{name} has {len(value)} entries; at most {max_items}")
    for key, item in value.items():
        if len(key) > MAX_KEY_LENGTH:
            raise _Invalid("too_large", f"a key of {name} is {len(key)} characters; at most {MAX_KEY_LENGTH}")
        kind = type(item)
        if kind is str:
            if len(item) > max_len:
                raise _Invalid("too_large", f"{name}.{key} is {len(item)} characters; at most {max_len}")
        elif kind not in _SCALARS:
            raise _Invalid(
                "wrong_type",
                f"{name}.{key} is {_json_type(item)}; values must be numbers, strings, booleans or null",
            )


def _unprintable(where: str, text: str) -> None:
    found = UNPRINTABLE.search(text)
    if found is not None:  # the detail names the character, never shows it (it may be a bidi override)
        raise _Invalid("bad_value", f"{where} holds U+{ord(found.group()):04X}, a control or format character; "
                                    "names must be printable")


def _check_names(obj: dict[str, Any], tracking: bool = True) -> None:
    """Names that become metric labels, store columns or file names must be printable:
    ``model``, ``model_version`` and, of a tracking event (already validated), the names in
    ``features``, ``prediction`` and ``segment``, and the segment's string values. Free
    text (a comment) is not searched."""
    for name in ("model", "model_version"):
        value = obj.get(name)
        if type(value) is str:
            _unprintable(name, value)
    if not tracking:
        return
    for name in ("features", "prediction", "segment"):
        names = obj.get(name)
        if names:
            _unprintable(f"a name in {name}", "".join(names))  # one search over all of them
    segment = obj.get("segment")
    if segment:
        _unprintable("a value in segment", "".join(v for v in segment.values() if type(v) is str))


def _timestamp(obj: dict[str, Any], latest: float) -> float:
    raw = obj.get("ts")
    if raw is None:
        raise _Invalid("missing_field", "ts is required")
    if type(raw) in _NUMBERS:
        ts = float(raw)
    elif type(raw) is str:
        try:
            parsed = datetime.fromisoformat(raw.upper())  # RFC 3339 allows a lowercase t and z
        except ValueError:
            raise _Invalid("bad_timestamp", f"ts {raw!r} is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise _Invalid("bad_timestamp", f"ts {raw!r} has no UTC offset (add Z or +00:00)")
        ts = parsed.timestamp()
    else:
        raise _Invalid("wrong_type", f"ts must be a number or an RFC 3339 string, got {_json_type(raw)}")
    if ts > 1e11:
        unit = "milliseconds" if ts < 1e14 else "micro- or nanoseconds"
        raise _Invalid("bad_timestamp", f"ts {raw} looks like {unit}; the contract wants epoch seconds")
    if ts < MIN_TS:
        raise _Invalid("bad_timestamp", f"ts {raw} is before 2000-01-01")
    if ts > latest:
        raise _Invalid("bad_timestamp", f"ts {raw} is more than collect.max_future_skew_s ahead")
    return ts


def _check_depth(value: Any, max_depth: int, where: str) -> None:
    """Reject containers nested deeper than ``max_depth`` (the top level counts 1)."""
    level = [value]
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise _Invalid("too_deep", f"{where} is nested deeper than {max_depth} levels")
        nxt: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            nxt.extend(c for c in children if type(c) is dict or type(c) is list)
        level = nxt


def _reject_constant(name: str) -> Any:
    raise _Invalid("non_finite_number", f"{name} is not a JSON number")


def _classify_json_error(value: bytes, exc: orjson.JSONDecodeError) -> tuple[str, str]:
    """Say why orjson refused a message, in our reasons."""
    msg = str(exc)
    if "depth limit" in msg:
        return "too_deep", "nesting exceeds the JSON parser's limit"
    if "infinity" in msg:
        return "non_finite_number", "a number overflows to infinity"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as err:
        return "not_utf8", f"invalid UTF-8 at byte {err.start}"
    try:
        # The stdlib parser accepts NaN/Infinity: re-parse only to tell them apart
        # from other syntax errors (this is the rare, bad-input path).
        json.loads(text, parse_constant=_reject_constant)
    except _Invalid as bad:
        return bad.reason, bad.detail
    except (ValueError, RecursionError):
        pass
    return "not_json", msg[:200]


def is_finite_number(value: Any) -> bool:
    """True for an int or float (not a bool) that is finite."""
    return type(value) in _NUMBERS and math.isfinite(value)
