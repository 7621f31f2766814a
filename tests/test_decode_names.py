"""Names that become metric labels, store columns or file names must be printable.

A ``model`` of one NUL, or of fifty right-to-left overrides, is bad input (``bad_value``)
on both decode paths: msgspec's fast one (tracking events) and the Python validator
(feedback, unusual fields). Free text (a comment) may hold anything.
"""

from __future__ import annotations

import json
import sys
import unicodedata

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.contract import BAD_INPUT_REASONS
from collectors.decode import UNPRINTABLE, Decoder, Limits

NOW = 1_763_800_000.0
TS = 1_763_798_400.0
UNPRINTABLE_CATEGORIES = ("Cc", "Cf")
#: The ones the issue names, and a few more everyone meets: NUL, escapes, DEL, bidi and zero-width.
NAMED = ["\x00", "\x1b", "\n", "\x7f", "\x85", "\u202e", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",
         "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\u00ad", "\U000e0041"]


def prediction(**overrides):
    event = {"event_id": "e-1", "type": "prediction", "ts": TS, "model": "recsys", "model_version": "v12",
             "request_id": "r-1", "features": {"price": 12.5, "category": "shoes"},
             "prediction": {"score": 0.83, "label": "click"}, "latency_ms": 42.0, "status": "ok",
             "segment": {"region": "east", "new_user": True}}
    event.update(overrides)
    return event


def feedback(**overrides):
    event = {"event_id": "f-1", "type": "feedback", "ts": TS + 5, "model": "recsys", "model_version": "v12",
             "request_id": "r-1", "kind": "thumbs_down", "comment": "not what I searched for"}
    event.update(overrides)
    return event


#: Where a name sits in an event, as a function that puts ``name`` there.
PLACES = {
    "model": lambda make, name: make(model=name),
    "model_version": lambda make, name: make(model_version=name),
    "feature name": lambda make, name: make(features={name: 1.0}),
    "prediction field": lambda make, name: make(prediction={name: 0.5}),
    "segment key": lambda make, name: make(segment={name: "east"}),
    "segment value": lambda make, name: make(segment={"region": name}),
}
TRACKING_ONLY = {"feature name", "prediction field", "segment key", "segment value"}
#: Each message through each branch: JSON escapes (json.dumps), raw UTF-8 (orjson), and
#: feedback (the Python validator).
ENCODINGS = {"escaped": lambda obj: json.dumps(obj).encode(), "utf-8": orjson.dumps}


def decode(message: bytes) -> tuple[dict | None, str | None, str]:
    return Decoder(Limits()).decode(message, NOW)


def test_the_pattern_covers_every_control_and_format_character_of_this_python():
    missing = [f"U+{c:04X}" for c in range(sys.maxunicode + 1)
               if unicodedata.category(chr(c)) in UNPRINTABLE_CATEGORIES and not UNPRINTABLE.match(chr(c))]
    assert not missing, f"add these to collectors.decode.UNPRINTABLE (Unicode {unicodedata.unidata_version})"
    wrong = [f"U+{c:04X}" for c in range(sys.maxunicode + 1)
             if UNPRINTABLE.match(chr(c)) and unicodedata.category(chr(c)) not in (*UNPRINTABLE_CATEGORIES, "Cn")]
    assert not wrong, "only control and format characters (or ones a later Unicode assigns as such)"


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("kind", "place"), [("prediction", p) for p in PLACES]
                         + [("feedback", p) for p in PLACES if p not in TRACKING_ONLY])
def test_a_control_or_format_character_in_a_name_is_bad_input(kind, place, encoding):
    make = prediction if kind == "prediction" else feedback
    for char in NAMED:
        for name in (char, char * 50, f"rec{char}sys"):
            event, reason, detail = decode(ENCODINGS[encoding](PLACES[place](make, name)))
            assert (event, reason) == (None, "bad_value"), (place, repr(name), detail)
            assert f"U+{ord(char):04X}" in detail and char not in detail  # named, not shown


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", ["recsys", "café-推荐", "модель", "ranker v2 (beta)", "😀", "a" * 256])
def test_printable_names_in_any_script_are_taken(name, encoding):
    for place, put in PLACES.items():
        _, reason, detail = decode(ENCODINGS[encoding](put(prediction, name)))
        assert reason is None, (place, detail)
    assert decode(ENCODINGS[encoding](feedback(model=name)))[1] is None


def test_free_text_may_hold_control_and_format_characters():
    event, reason, _ = decode(orjson.dumps(feedback(comment="\u202e\u200b\x00 yes\n", reason="x\ty")))
    assert reason is None and event is not None and event["comment"].startswith("\u202e")
    event, reason, _ = decode(orjson.dumps(prediction(features={"query": "tab\there \u202e"})))
    assert reason is None and event is not None


def test_bad_value_is_a_documented_reason():
    assert "bad_value" in BAD_INPUT_REASONS


_printable = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs")), min_size=1, max_size=40)
_unprintable = st.characters(whitelist_categories=("Cc", "Cf"))


@settings(max_examples=300, deadline=None)
@given(prefix=_printable, bad=_unprintable, suffix=st.text(max_size=5), place=st.sampled_from(sorted(PLACES)),
       encoding=st.sampled_from(sorted(ENCODINGS)), as_feedback=st.booleans())
def test_any_unprintable_character_anywhere_in_a_name_is_refused_on_both_paths(prefix, bad, suffix, place, encoding,
                                                                               as_feedback):
    if as_feedback and place in TRACKING_ONLY:
        as_feedback = False
    make = feedback if as_feedback else prediction
    name = prefix + bad + suffix
    event, reason, detail = decode(ENCODINGS[encoding](PLACES[place](make, name)))
    assert (event, reason) == (None, "bad_value"), (place, repr(name), detail)


@settings(max_examples=300, deadline=None)
@given(name=_printable, place=st.sampled_from(sorted(PLACES)), encoding=st.sampled_from(sorted(ENCODINGS)))
def test_any_printable_name_is_taken_and_comes_out_unchanged(name, place, encoding):
    obj = PLACES[place](prediction, name)
    event, reason, detail = decode(ENCODINGS[encoding](obj))
    assert reason is None, detail
    assert event is not None
    assert {k: v for k, v in event.items() if k != "ts"} == {k: v for k, v in obj.items() if k != "ts"}
