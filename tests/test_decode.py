"""Decoding and validation against the event contract (collectors/decode.py).

Every bad-input reason of the contract is produced by at least one realistic message;
valid events come out normalised; nothing raises on bad input.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from collectors.contract import BAD_INPUT_REASONS, EVENT_TYPES, FEEDBACK_KINDS
from collectors.decode import MIN_TS, Decoder, Limits, _Invalid, is_finite_number
from collectors.redact import Redactor

NOW = 1_763_800_000.0  # 2025-11-22T08:26:40Z, passed to every decode as the batch clock
TS = 1_763_798_400.0  # 2025-11-22T08:00:00Z


def prediction(**overrides):
    event = {
        "event_id": "e-1", "type": "prediction", "ts": TS, "model": "recsys", "model_version": "v12",
        "request_id": "r-1", "features": {"price": 12.5, "category": "shoes", "new_user": True, "coupon": None},
        "prediction": {"score": 0.83, "label": "click"}, "latency_ms": 42.0, "status": "ok",
        "segment": {"region": "east", "new_user": True},
    }
    event.update(overrides)
    return event


def feedback(**overrides):
    event = {
        "event_id": "f-1", "type": "feedback", "ts": TS + 5, "model": "recsys", "request_id": "r-1",
        "kind": "thumbs_down", "reason": "irrelevant", "comment": "these shoes are not what I searched for",
        "value": None,
    }
    event.update(overrides)
    return event


def without(event, name):
    return {k: v for k, v in event.items() if k != name}


def raw(obj) -> bytes:
    return json.dumps(obj).encode()


def nested(depth, leaf="x"):
    """A JSON value with ``depth`` levels of containers (the outermost counts 1)."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def decode(message, limits=None, now=NOW):
    return Decoder(limits or Limits()).decode(message, now=now)


# -- every bad-input reason ---------------------------------------------------------------

SMALL = Limits(max_message_bytes=2048, max_features=5, max_string_length=64, max_depth=4)

BAD_MESSAGES = [
    # (id, message bytes, limits or None, expected reason)
    ("empty-bytes", b"", None, "empty"),
    ("tombstone-none", None, None, "empty"),
    ("oversized-default", raw(feedback(comment="x" * 300_000)), None, "oversized"),
    ("oversized-small-limit", raw(prediction(features={f"f{i}": i for i in range(200)})), SMALL, "oversized"),
    ("latin1-comment", raw(feedback(comment="PLACEHOLDER")).replace(b"PLACEHOLDER", "café".encode("latin-1")),
     None, "not_utf8"),
    ("invalid-utf8-lead-byte", b"\xff\xfe{}", None, "not_utf8"),
    ("truncated-json", raw(prediction())[:-7], None, "not_json"),
    ("trailing-comma", b'{"event_id": "e-1", "type": "prediction",}', None, "not_json"),
    ("single-quotes", b"{'event_id': 'e-1'}", None, "not_json"),
    ("plain-text-log-line", b"2025-11-22 08:00:00 INFO prediction served", None, "not_json"),
    ("two-objects", raw(prediction()) + raw(prediction()), None, "not_json"),
    ("NaN-feature", raw(prediction()).replace(b'"price": 12.5', b'"price": NaN'), None, "non_finite_number"),
    ("Infinity-latency", raw(prediction()).replace(b'"latency_ms": 42.0', b'"latency_ms": Infinity'), None,
     "non_finite_number"),
    ("minus-Infinity-score", raw(prediction()).replace(b'"score": 0.83', b'"score": -Infinity'), None,
     "non_finite_number"),
    ("1e999-overflows", raw(prediction()).replace(b'"price": 12.5', b'"price": 1e999'), None,
     "non_finite_number"),
    ("deep-feedback-value", raw(feedback(kind="correction", value=nested(9))), None, "too_deep"),
    ("deep-feedback-value-small-limit", raw(feedback(kind="label", value=nested(5))), SMALL, "too_deep"),
    ("past-orjson-depth-limit", b'{"event_id": "e-1", "value": ' + b"[" * 1100 + b"]" * 1100 + b"}", None,
     "too_deep"),
    ("bare-array-past-orjson-limit", b"[" * 5000 + b"]" * 5000, None, "too_deep"),
    ("array-of-events", raw([prediction(), prediction()]), None, "not_object"),
    ("json-string", b'"prediction"', None, "not_object"),
    ("json-number", b"42", None, "not_object"),
    ("json-null", b"null", None, "not_object"),
    ("missing-event_id", raw(without(prediction(), "event_id")), None, "missing_field"),
    ("missing-type", raw(without(prediction(), "type")), None, "missing_field"),
    ("missing-model", raw(without(prediction(), "model")), None, "missing_field"),
    ("null-model", raw(prediction(model=None)), None, "missing_field"),
    ("missing-ts", raw(without(prediction(), "ts")), None, "missing_field"),
    ("feedback-missing-request_id", raw(without(feedback(), "request_id")), None, "missing_field"),
    ("feedback-null-request_id", raw(feedback(request_id=None)), None, "missing_field"),
    ("feedback-missing-kind", raw(without(feedback(), "kind")), None, "missing_field"),
    ("model-is-number", raw(prediction(model=7)), None, "wrong_type"),
    ("event_id-is-number", raw(prediction(event_id=12345)), None, "wrong_type"),
    ("type-is-list", raw(prediction(type=["prediction"])), None, "wrong_type"),
    ("ts-is-bool", raw(prediction(ts=True)), None, "wrong_type"),
    ("ts-is-object", raw(prediction(ts={"seconds": TS})), None, "wrong_type"),
    ("request_id-is-number", raw(prediction(request_id=1001)), None, "wrong_type"),
    ("model_version-is-number", raw(prediction(model_version=12)), None, "wrong_type"),
    ("latency-is-string", raw(prediction(latency_ms="42ms")), None, "wrong_type"),
    ("latency-is-bool", raw(prediction(latency_ms=True)), None, "wrong_type"),
    ("features-is-list", raw(prediction(features=[12.5, "shoes"])), None, "wrong_type"),
    ("feature-value-is-object", raw(prediction(features={"price": {"amount": 12.5}})), None, "wrong_type"),
    ("segment-value-is-list", raw(prediction(segment={"regions": ["east", "west"]})), None, "wrong_type"),
    ("prediction-is-string", raw(prediction(prediction="click")), None, "wrong_type"),
    ("comment-is-number", raw(feedback(comment=5)), None, "wrong_type"),
    ("kind-is-number", raw(feedback(kind=1)), None, "wrong_type"),
    ("unknown-type", raw(prediction(type="purchase")), None, "unknown_type"),
    ("type-wrong-case", raw(prediction(type="Prediction")), None, "unknown_type"),
    ("unknown-kind", raw(feedback(kind="thumbs_sideways")), None, "unknown_kind"),
    ("negative-latency", raw(prediction(latency_ms=-3.5)), None, "bad_value"),
    ("bad-status", raw(prediction(status="timeout")), None, "bad_value"),
    ("empty-event_id", raw(prediction(event_id="")), None, "bad_value"),
    ("empty-model", raw(prediction(model="")), None, "bad_value"),
    ("ts-in-milliseconds", raw(prediction(ts=1_763_798_400_000)), None, "bad_timestamp"),
    ("ts-in-microseconds", raw(prediction(ts=1_763_798_400_000_000)), None, "bad_timestamp"),
    ("ts-before-2000", raw(prediction(ts=915_148_800)), None, "bad_timestamp"),  # 1999-01-01
    ("ts-zero", raw(prediction(ts=0)), None, "bad_timestamp"),
    ("ts-far-future", raw(prediction(ts=NOW + 3 * 86_400)), None, "bad_timestamp"),
    ("ts-rfc3339-without-offset", raw(prediction(ts="2025-11-22T08:00:00")), None, "bad_timestamp"),
    ("ts-date-only", raw(prediction(ts="2025-11-22")), None, "bad_timestamp"),
    ("ts-not-a-date", raw(prediction(ts="yesterday at noon")), None, "bad_timestamp"),
    ("ts-rfc3339-before-2000", raw(prediction(ts="1999-12-31T23:59:59Z")), None, "bad_timestamp"),
    ("too-many-features", raw(prediction(features={f"f{i}": float(i) for i in range(201)})), None, "too_large"),
    ("too-many-features-small-limit", raw(prediction(features={f"f{i}": i for i in range(6)})), SMALL,
     "too_large"),
    ("over-long-feature-string", raw(prediction(features={"query": "q" * 4097})), None, "too_large"),
    ("over-long-comment", raw(feedback(comment="c" * 4097)), None, "too_large"),
    ("over-long-model-name", raw(prediction(model="m" * 257)), None, "too_large"),
    ("over-long-segment-string", raw(prediction(segment={"ua": "u" * 65})), SMALL, "too_large"),
]


@pytest.mark.parametrize(("message", "limits", "reason"), [case[1:] for case in BAD_MESSAGES],
                         ids=[case[0] for case in BAD_MESSAGES])
def test_bad_input_reason(message, limits, reason):
    event, got, detail = decode(message, limits)
    assert event is None
    assert got == reason, detail
    assert isinstance(detail, str)
    assert detail


def test_every_bad_input_reason_has_a_realistic_message():
    # not_arrow is of Arrow messages only: tests/test_arrow.py has its realistic messages.
    assert {case[-1] for case in BAD_MESSAGES} | {"not_arrow"} == set(BAD_INPUT_REASONS)


@pytest.mark.parametrize(("message", "fragment"), [
    (raw(prediction(ts=1_763_798_400_000)), "milliseconds"),
    (raw(prediction(ts="2025-11-22T08:00:00")), "no UTC offset"),
    (raw(prediction(ts=915_148_800)), "before 2000"),
    (raw(prediction(ts=NOW + 3 * 86_400)), "max_future_skew_s"),
    (raw(prediction(model=7)), "model"),
    (raw(prediction(latency_ms=-3.5)), "-3.5"),
    (raw(prediction(features={f"f{i}": 1 for i in range(201)})), "201"),
    (raw(prediction(features={"query": "q" * 4097})), "features.query"),
    (raw(feedback(kind="thumbs_sideways")), "thumbs_sideways"),
    (b"\xff\xfe{}", "byte 0"),
    (raw(feedback(value=nested(9))), "value"),
])
def test_detail_says_what_is_wrong(message, fragment):
    _, reason, detail = decode(message)
    assert reason is not None
    assert fragment in detail


def test_oversized_is_checked_before_parsing():
    limits = Limits(max_message_bytes=100)
    message = b"x" * 101  # not JSON either: the size decides
    assert decode(message, limits)[1] == "oversized"
    assert decode(b"x" * 100, limits)[1] == "not_json"


# -- limits are inclusive ---------------------------------------------------------------------


def test_feature_count_at_the_limit_is_valid():
    limits = Limits(max_features=5)
    assert decode(raw(prediction(features={f"f{i}": i for i in range(5)})), limits)[1] is None
    assert decode(raw(prediction(features={f"f{i}": i for i in range(6)})), limits)[1] == "too_large"


def test_string_length_at_the_limit_is_valid():
    limits = Limits(max_string_length=64)
    assert decode(raw(feedback(comment="c" * 64)), limits)[1] is None
    assert decode(raw(feedback(comment="c" * 65)), limits)[1] == "too_large"
    assert decode(raw(prediction(features={"q": "q" * 64})), limits)[1] is None
    assert decode(raw(prediction(features={"q": "q" * 65})), limits)[1] == "too_large"


def test_depth_at_the_limit_is_valid():
    limits = Limits(max_depth=4)
    assert decode(raw(feedback(kind="correction", value=nested(4))), limits)[1] is None
    assert decode(raw(feedback(kind="correction", value=nested(5))), limits)[1] == "too_deep"


def test_message_size_at_the_limit_is_valid():
    message = raw(prediction())
    assert decode(message, Limits(max_message_bytes=len(message)))[1] is None
    assert decode(message, Limits(max_message_bytes=len(message) - 1))[1] == "oversized"


def test_future_skew_boundary():
    skew = 60.0
    limits = Limits(max_future_skew_s=skew)
    assert decode(raw(prediction(ts=NOW + skew)), limits)[1] is None
    assert decode(raw(prediction(ts=NOW + skew + 0.5)), limits)[1] == "bad_timestamp"
    # ``now`` is what bounds it, not the wall clock
    assert decode(raw(prediction(ts=NOW + skew + 0.5)), limits, now=NOW + 1)[1] is None


def test_min_ts_boundary():
    assert decode(raw(prediction(ts=MIN_TS)))[0]["ts"] == MIN_TS
    assert decode(raw(prediction(ts=MIN_TS - 0.001)))[1] == "bad_timestamp"


# -- valid events ----------------------------------------------------------------------


def test_valid_prediction_is_returned_as_decoded():
    event, reason, detail = decode(raw(prediction()))
    assert (reason, detail) == (None, "")
    assert event == prediction()


def test_valid_feedback_is_returned_as_decoded():
    event, reason, _ = decode(raw(feedback()))
    assert reason is None
    assert event == feedback()


@pytest.mark.parametrize(("ts", "expected"), [
    (1_763_798_400, 1_763_798_400.0),
    (1_763_798_400.123, 1_763_798_400.123),
    ("2025-11-22T08:00:00Z", 1_763_798_400.0),
    ("2025-11-22T08:00:00+00:00", 1_763_798_400.0),
    ("2025-11-22T16:00:00+08:00", 1_763_798_400.0),
    ("2025-11-22T03:00:00-05:00", 1_763_798_400.0),
    ("2025-11-22T08:00:00.250Z", 1_763_798_400.25),
])
def test_timestamp_is_normalised_to_float_epoch_seconds(ts, expected):
    event, reason, detail = decode(raw(prediction(ts=ts)))
    assert reason is None, detail
    assert type(event["ts"]) is float
    assert event["ts"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("typ", sorted(EVENT_TYPES - {"feedback"}))
def test_every_tracking_type_is_valid(typ):
    event, reason, _ = decode(raw(prediction(type=typ)))
    assert reason is None
    assert event["type"] == typ


@pytest.mark.parametrize("kind", sorted(FEEDBACK_KINDS))
def test_every_feedback_kind_is_valid(kind):
    event, reason, _ = decode(raw(feedback(kind=kind)))
    assert reason is None
    assert event["kind"] == kind


def test_minimal_tracking_event_is_valid():
    minimal = {"event_id": "e-9", "type": "click", "ts": TS, "model": "recsys"}
    event, reason, _ = decode(raw(minimal))
    assert reason is None
    assert event == minimal


@pytest.mark.parametrize("name", ["model_version", "request_id", "features", "prediction", "segment",
                                  "latency_ms", "status"])
def test_optional_tracking_fields_may_be_null(name):
    event, reason, detail = decode(raw(prediction(**{name: None})))
    assert reason is None, detail
    assert event.get(name) is None  # null and absent are the same to every reader


@pytest.mark.parametrize("name", ["reason", "comment", "value", "model_version"])
def test_optional_feedback_fields_may_be_null(name):
    event, reason, detail = decode(raw(feedback(**{name: None})))
    assert reason is None, detail
    assert event.get(name) is None  # null and absent are the same to every reader


def test_feature_values_may_be_any_scalar():
    features = {"n": 3, "x": -0.5, "s": "shoes", "b": False, "missing": None, "big": 2**62}
    event, reason, _ = decode(raw(prediction(features=features)))
    assert reason is None
    assert event["features"] == features


def test_label_feedback_may_carry_a_structured_value():
    value = {"label": "click", "scores": [0.1, 0.9]}
    event, reason, _ = decode(raw(feedback(kind="label", value=value)))
    assert reason is None
    assert event["value"] == value


def test_status_error_and_zero_latency_are_valid():
    event, reason, _ = decode(raw(prediction(status="error", latency_ms=0)))
    assert reason is None
    assert (event["status"], event["latency_ms"]) == ("error", 0)


def test_unicode_text_is_valid():
    event, reason, _ = decode(raw(feedback(comment="推荐的鞋子不对 👟")))
    assert reason is None
    assert event["comment"] == "推荐的鞋子不对 👟"


def test_unknown_scalar_fields_are_kept():
    event, reason, _ = decode(raw(prediction(experiment="exp-42", shard=3)))
    assert reason is None
    assert (event["experiment"], event["shard"]) == ("exp-42", 3)


def test_deep_unknown_field_is_rejected_when_the_event_has_many_fields():
    wide = prediction(**{f"x{i}": i for i in range(6)}, debug=nested(9))
    assert len(wide) > 15
    assert decode(raw(wide))[1] == "too_deep"


def test_is_finite_number():
    assert is_finite_number(1)
    assert is_finite_number(-2.5)
    assert not is_finite_number(True)
    assert not is_finite_number(float("nan"))
    assert not is_finite_number(float("inf"))
    assert not is_finite_number("1")
    assert not is_finite_number(None)


# -- regressions: bugs of 56797a2, fixed in decode.py since ------------------------------------


@pytest.mark.parametrize("status", [["ok"], {"code": 500}, 1, True])
def test_status_of_the_wrong_type_is_a_reason_not_an_exception(status):
    # Was: `status not in STATUSES` hashed a list or object and raised TypeError out of decode().
    event, reason, _ = decode(raw(prediction(status=status)))
    assert event is None
    assert reason == "wrong_type"


def test_deep_unknown_field_is_rejected():
    # Was: unknown fields were depth-checked only when the event had more than 15 keys.
    assert len(prediction(debug=None)) < 15
    assert decode(raw(prediction(debug=nested(9))))[1] == "too_deep"
    assert decode(raw(prediction(debug=nested(8))))[1] is None


@pytest.mark.parametrize(("event", "name"), [
    (prediction(value=nested(9)), "prediction.value"),
    (prediction(comment=nested(9)), "prediction.comment"),
    (feedback(features=nested(9)), "feedback.features"),
    (feedback(segment=nested(9)), "feedback.segment"),
], ids=["prediction.value", "prediction.comment", "feedback.features", "feedback.segment"])
def test_deep_field_of_the_other_event_type_is_rejected(event, name):
    # Was: a field known to one event type was neither validated nor depth-checked on the other.
    assert decode(raw(event))[1] == "too_deep", name


DEEP = b"[" * 600 + b"1" + b"]" * 600  # well inside orjson's limit of 1024


@pytest.mark.parametrize("message", [
    raw(prediction()).replace(b'"status": "ok"', b'"status": "ok", "debug": ' + DEEP),
    raw(feedback()).replace(b'"value": null', b'"value": null, "features": ' + DEEP),
], ids=["prediction-unknown-field", "thumbs-down-with-features"])
def test_what_decodes_can_be_redacted(message):
    # Was: such a message decoded, then Redactor.redact_event (recursive) raised RecursionError
    # on it: a poison message for the pipeline, which redacts every flagged sample.
    event, reason, _ = decode(message)
    if event is not None:
        Redactor().redact_event(event)
    assert reason == "too_deep"


@pytest.mark.parametrize("event", [
    feedback(kind="correction", value="v" * 4097),
    prediction(note="n" * 4097),
    feedback(debug="d" * 4097),
], ids=["feedback-value", "prediction-unknown-field", "feedback-unknown-field"])
def test_over_long_string_anywhere_at_the_top_is_too_large(event):
    # Was: feedback `value` strings (and unknown fields) were not held to max_string_length.
    assert decode(raw(event))[1] == "too_large"
    shorter = {k: (v[:4096] if isinstance(v, str) and len(v) > 4096 else v) for k, v in event.items()}
    assert decode(raw(shorter))[1] is None


# -- properties -------------------------------------------------------------------------------


def _check_outcome(outcome):
    event, reason, detail = outcome
    assert isinstance(detail, str)
    if event is None:
        assert reason in BAD_INPUT_REASONS
        assert detail
    else:
        assert reason is None
        assert detail == ""
        assert type(event) is dict
        assert type(event["ts"]) is float


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_decode_never_raises_on_arbitrary_bytes(message):
    _check_outcome(Decoder(Limits(max_message_bytes=300)).decode(message, now=NOW))


_JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
                 | st.sampled_from(["prediction", "feedback", "ok", "label", "2025-11-22T08:00:00Z", TS]))
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
_FIELDS = ["event_id", "type", "ts", "model", "model_version", "request_id", "features", "prediction",
           "latency_ms", "status", "segment", "kind", "reason", "comment", "value", "extra"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([prediction(), feedback()]), st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=6))
def test_decode_never_raises_on_event_shaped_json(base, overrides):
    message = raw({**base, **overrides})
    _check_outcome(Decoder(Limits(max_depth=3)).decode(message, now=NOW))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_inside_a_string_field_never_raise(junk):
    message = raw(feedback(comment="PLACEHOLDER")).replace(b"PLACEHOLDER", junk.replace(b'"', b"").replace(b"\\", b""))
    _check_outcome(decode(message))


# -- the fast path (msgspec) agrees with the Python validator -----------------------------

# Values at the edges the validator draws: signs, int64 and uint64, lengths 64 and 256 (SMALL's
# max_string_length and MAX_KEY_LENGTH), 5 entries (SMALL's max_features), the vocabularies.
_numbers = st.one_of(st.integers(-3, 3), st.floats(-2, 2), st.integers(2**63 - 2, 2**64 + 1), st.booleans(),
                     st.floats(TS - 10, NOW + 400), st.integers(int(TS), int(NOW + 400)))
_strings = st.sampled_from(["", "x", "x" * 64, "x" * 65, "x" * 256, "x" * 257, "ok", "error", "prediction",
                            "click", "feedback", "thumbs_down", "2025-11-22T08:00:00Z", "2025-11-22T08:00:00"])
_scalars = st.one_of(st.none(), _numbers, _strings)
_flat = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "f", "k" * 256, "k" * 257]), _scalars,
                        max_size=7)
_values = st.one_of(st.none(), _numbers, _strings, _flat, st.lists(_scalars, max_size=2),
                    st.dictionaries(st.sampled_from(["a", "b"]), st.one_of(_flat, st.lists(_flat, max_size=2))))
_fields = [*prediction(), "kind", "extra"]


_EDGES = [..., None, -1, -0.5, 0, 0.0, 1.5, 2**63 - 1, 2**63, 2**64, True, TS, int(TS), NOW + 301, TS / 1000,
          "", "x", "x" * 64, "x" * 65, "x" * 257, "ok", "error", "prediction", "click", "feedback",
          "2025-11-22T08:00:00Z", "2025-11-22T08:00:00", {}, {"a": 1}, {"a": "x" * 65}, {"k" * 257: 1},
          {"a": None, "b": True, "c": "s"}, dict.fromkeys("abcdef", 1), {"a": [1]}, {"a": {"b": 1}}, [1], [{"a": 1}]]


@pytest.mark.parametrize("name", _fields)
def test_fast_path_agrees_with_the_validator_on_every_edge_of_a_field(name):
    """A valid prediction with one field set to each edge value (``...`` deletes it)."""
    for value in _EDGES:
        _check_fast_path({k: v for k, v in prediction(**{name: value}).items() if v is not ...})


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(_fields), st.one_of(_values, st.just(...)), max_size=3))
def test_fast_path_agrees_with_the_validator(changes):
    """A valid prediction with a few fields changed (``...`` deletes one): msgspec's fast
    path and the Python validator must accept the same and say the same reason."""
    obj = {k: v for k, v in prediction(**changes).items() if v is not ...}
    assume(_fits_orjson(obj))
    _check_fast_path(obj)


def _check_fast_path(obj: dict) -> None:
    if not _fits_orjson(obj):
        return
    message = orjson.dumps(obj)
    decoder = Decoder(Limits(max_message_bytes=1 << 20, max_features=5, max_string_length=64, max_depth=4))
    event, reason, detail = decoder.decode(message, NOW)
    try:
        expected: dict | None = decoder._validate(orjson.loads(message), NOW)
        why = None
    except _Invalid as bad:
        expected, why = None, bad.reason
    if expected is None:
        assert (event, reason) == (None, why), detail
    else:
        assert reason is None, detail
        assert _present(event) == _present(expected)  # a null field may come out null or absent


def _present(event: dict) -> dict:
    return {k: v for k, v in event.items() if v is not None}


def _fits_orjson(obj) -> bool:
    try:
        orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True
