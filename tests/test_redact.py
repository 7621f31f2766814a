"""PII redaction (collectors/redact.py): what is removed, what is kept, and how events are copied.

Check digits are computed here by independent implementations of ISO 7064 MOD 11-2 and
Luhn, so a wrong checksum in the module cannot hide behind test data made with it.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.redact import FIELD_PLACEHOLDER, KINDS, PLACEHOLDERS, Redactor, cn_id_valid, luhn_valid

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check_digit(first17: str) -> str:
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the one check digit that makes it Luhn-valid."""
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


def luhn_break(number: str) -> str:
    """``number`` with its last digit changed so that Luhn fails."""
    return next(number[:-1] + d for d in "0123456789" if not luhn_ok(number[:-1] + d))


VALID_IDS = [f + id_check_digit(f) for f in ("11010519491231002", "31011519850612345", "51010820001231009",
                                             "44030419900307123")]
# Shaped like an identity number (region, date, sequence) but with a wrong check digit.
BAD_ID_LUHN_OK = next(s for s in ("44030419900307123" + d for d in "0123456789")
                      if s[-1] != id_check_digit(s[:17]) and luhn_ok(s))
BAD_ID_LUHN_BAD = next(s for s in ("44030419900307123" + d for d in "0123456789")
                       if s[-1] != id_check_digit(s[:17]) and not luhn_ok(s))

VISA = "4111111111111111"
MASTERCARD = "5500005555555559"
AMEX = "378282246310005"
UNIONPAY_19 = luhn_complete("621700123456789012")


def redact(text, **kwargs):
    return Redactor(**kwargs).redact_text(text)


# -- the check digits -----------------------------------------------------------------------


def test_test_data_is_what_it_claims():
    assert all(luhn_ok(n) for n in (VISA, MASTERCARD, AMEX, UNIONPAY_19))
    assert len(UNIONPAY_19) == 19
    assert VALID_IDS[0] == "11010519491231002X"  # the example of GB 11643-1999
    assert BAD_ID_LUHN_OK[-1] != id_check_digit(BAD_ID_LUHN_OK[:17])
    assert luhn_ok(BAD_ID_LUHN_OK)
    assert not luhn_ok(BAD_ID_LUHN_BAD)
    assert not luhn_ok("2025112200123")  # the invoice number of test_ordinary_text_is_left_alone


@pytest.mark.parametrize("number", VALID_IDS)
def test_cn_id_valid_accepts_the_right_check_digit(number):
    assert cn_id_valid(number)
    assert cn_id_valid(number.lower())


@pytest.mark.parametrize("number", VALID_IDS)
def test_cn_id_valid_rejects_every_other_check_digit(number):
    for d in "0123456789X":
        if d != number[-1]:
            assert not cn_id_valid(number[:17] + d)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=2, max_size=19))
def test_luhn_valid_agrees_with_an_independent_implementation(digits):
    assert luhn_valid(digits) == luhn_ok(digits)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=17, max_size=17), st.sampled_from("0123456789X"))
def test_cn_id_valid_agrees_with_an_independent_implementation(first17, last):
    assert cn_id_valid(first17 + last) == (id_check_digit(first17) == last)


# -- e-mail -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Please reply to li.wei@example.cn about my order.",
    "contact: john.smith+shop@mail.example.co.uk, thanks",
    "我的邮箱是 zhang_san-99@163.com 请回复",
    "QQ mail 13800138000@qq.com works too",
    "MAIL ME AT Support@Example.COM!",
])
def test_email_in_a_sentence_is_redacted(text):
    out, counts = redact(text)
    assert "[EMAIL]" in out
    assert "@" not in out
    assert counts == {"email": 1}


def test_email_keeps_the_surrounding_text():
    out, _ = redact("Please reply to li.wei@example.cn about my order.")
    assert out == "Please reply to [EMAIL] about my order."


# -- phone numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("number", [
    "13800138000",
    "138 0013 8000",
    "138-0013-8000",
    "+86 138 0013 8000",
    "+86-138-0013-8000",
    "+8613800138000",
    "+86 13800138000",
    "19912345678",
    "+44 20 7946 0958",
    "+1 415 555 2671",
    "+852 2123 4567",
    "(555) 123-4567",
    "555-123-4567",
    "555.123.4567",
])
def test_phone_number_in_a_sentence_is_redacted(number):
    out, counts = redact(f"You can call me on {number} after 6pm.")
    assert out == "You can call me on [PHONE] after 6pm."
    assert counts == {"phone": 1}


def test_phone_number_in_chinese_text_is_redacted():
    out, counts = redact("请联系我，手机13800138000，谢谢")
    assert out == "请联系我，手机[PHONE]，谢谢"
    assert counts == {"phone": 1}


def test_two_phone_numbers_side_by_side():
    out, counts = redact("numbers: 13800138000 13900139000")
    assert out == "numbers: [PHONE] [PHONE]"
    assert counts == {"phone": 2}


@pytest.mark.parametrize("text", [
    "room 12 on floor 345",  # too few digits
    "+1 2 3",  # a '+' with a few digits is not a phone number
    "scores +1 23 456 today",  # six digits: fewer than any phone number's seven
    "build 1234567",  # seven bare digits: no phone pattern
    "ticket 12800138000",  # 11 digits starting 12: not a mainland mobile prefix
])
def test_short_or_unshaped_numbers_are_not_phones(text):
    assert redact(text) == (text, {})


@pytest.mark.parametrize("number", ["0086 138 0013 8000", "008613800138000", "0086-138-0013-8000"])
def test_phone_number_with_0086_prefix_is_redacted(number):
    assert redact(f"call {number} please")[0] == "call [PHONE] please"


# -- PRC resident identity numbers ---------------------------------------------------------------


@pytest.mark.parametrize("number", VALID_IDS)
def test_valid_identity_number_is_redacted(number):
    out, counts = redact(f"my ID number is {number}, please check")
    assert out == "my ID number is [CN_ID], please check"
    assert counts == {"cn_id": 1}


def test_identity_number_with_lowercase_x_is_redacted():
    out, counts = redact("身份证号 11010519491231002x 已提交")
    assert out == "身份证号 [CN_ID] 已提交"
    assert counts == {"cn_id": 1}


def test_identity_number_with_a_wrong_check_digit_is_kept():
    text = f"reference {BAD_ID_LUHN_BAD} attached"
    assert redact(text) == (text, {})
    bad_x = VALID_IDS[2][:17] + "X"  # its true check digit is a digit
    assert redact(f"ref {bad_x}") == (f"ref {bad_x}", {})


def test_identity_shaped_number_that_is_a_valid_card_is_redacted_as_a_card():
    out, counts = redact(f"number {BAD_ID_LUHN_OK} on file")
    assert out == "number [BANK_CARD] on file"
    assert counts == {"bank_card": 1}


def test_identity_shaped_valid_card_is_kept_when_cards_are_not_redacted():
    text = f"number {BAD_ID_LUHN_OK} on file"
    assert redact(text, kinds=["cn_id"]) == (text, {})


def test_identity_number_inside_a_longer_digit_run_is_not_an_identity_number():
    text = f"serial 9{VALID_IDS[0][:-1]}"  # 18 digits, but shifted: no valid identity number in it
    assert "[CN_ID]" not in redact(text)[0]


# -- bank cards --------------------------------------------------------------------------------


def spaced(number, sep, group=4):
    return sep.join(number[i:i + group] for i in range(0, len(number), group))


@pytest.mark.parametrize("card", [VISA, MASTERCARD, AMEX, UNIONPAY_19])
@pytest.mark.parametrize("sep", ["", " ", "-"])
def test_luhn_valid_card_is_redacted(card, sep):
    number = spaced(card, sep) if sep else card
    out, counts = redact(f"I paid with card {number} yesterday.")
    assert out == "I paid with card [BANK_CARD] yesterday."
    assert counts == {"bank_card": 1}


@pytest.mark.parametrize("card", [VISA, MASTERCARD, AMEX, UNIONPAY_19])
@pytest.mark.parametrize("sep", ["", " ", "-"])
def test_luhn_invalid_card_is_kept(card, sep):
    bad = luhn_break(card)
    number = spaced(bad, sep) if sep else bad
    text = f"order number {number} shipped"
    assert redact(text) == (text, {})


def test_card_in_chinese_text_is_redacted():
    out, counts = redact(f"银行卡号{UNIONPAY_19}，请退款")
    assert out == "银行卡号[BANK_CARD]，请退款"
    assert counts == {"bank_card": 1}


def test_card_followed_by_its_cvv_is_redacted():
    out, _ = redact("card 4111 1111 1111 1111 123 please refund")
    assert "4111" not in out


def test_phone_followed_by_a_number_is_redacted():
    out, _ = redact("call 13800138000 1234 times")
    assert "13800138000" not in out


# -- IPv4 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["10.1.2.3", "192.168.1.20", "255.255.255.255", "0.0.0.0", "8.8.8.8"])
def test_valid_ipv4_is_redacted(ip):
    out, counts = redact(f"request came from {ip} via the proxy")
    assert out == "request came from [IPV4] via the proxy"
    assert counts == {"ipv4": 1}


def test_ipv4_with_a_port_is_redacted():
    assert redact("server 10.0.0.1:8080 is down")[0] == "server [IPV4]:8080 is down"


@pytest.mark.parametrize("text", ["address 256.1.1.1 is invalid", "only 1.2.3 here", "host 1.2.3.999",
                                  "see 10.0.0.1.5 twice"])
def test_invalid_ipv4_is_kept(text):
    assert redact(text) == (text, {})


def test_ipv4_at_the_end_of_a_sentence_is_redacted():
    assert redact("My IP is 192.168.1.20. Thanks")[0] == "My IP is [IPV4]. Thanks"


# -- ordinary text is not mangled ---------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "The shoes cost 12.50 and the socks 3.99; total 1,299.00 yuan.",
    "Order #20251122001 shipped on 2025-11-22 at 10:30.",
    "Order number ORD-2025-000123 was refunded.",
    "App version 2.3.1 (build 2025.11.22) crashed.",
    "Windows 10.0.19045.2965, Chrome/120.0.6099.109",
    "Rated 4.5 out of 5 by 1234 users, 98.7% positive.",
    "Coordinates 31.2304, 121.4737 are in Shanghai.",
    "Between 1999 and 2024 we sold 100 200 300 units.",
    "ISBN 978-3-16-148410-0 is out of print.",
    "Temperature rose +2.5 degrees.",
    "Call back in 15 minutes, ticket 12345.",
    "Invoice 2025112200123 is due.",  # 13 digits, Luhn-invalid
])
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == (text, {})


def test_signed_decimals_are_not_a_phone_number():
    text = "hourly temps +21.5 22.0 22.5 23.0 today"
    assert redact(text) == (text, {})


# -- placeholders, counts, kinds ----------------------------------------------------------------


def test_placeholders_are_typed_and_counted_by_kind():
    text = (f"Mail li.wei@example.cn or wang@example.com, call 138 0013 8000, ID {VALID_IDS[0]}, "
            f"card {spaced(VISA, ' ')}, from 10.1.2.3 and 10.1.2.4.5")
    out, counts = redact(text)
    assert out == ("Mail [EMAIL] or [EMAIL], call [PHONE], ID [CN_ID], card [BANK_CARD], "
                   "from [IPV4] and 10.1.2.4.5")
    assert counts == {"email": 2, "phone": 1, "cn_id": 1, "bank_card": 1, "ipv4": 1}


def test_placeholders_cover_every_kind():
    assert set(PLACEHOLDERS) == set(KINDS)
    assert len(set(PLACEHOLDERS.values())) == len(KINDS)


def test_text_without_personal_data_gives_no_counts():
    assert redact("the recommendation was irrelevant") == ("the recommendation was irrelevant", {})
    assert redact("") == ("", {})


SAMPLE = {
    "email": "li.wei@example.cn",
    "phone": "13800138000",
    "cn_id": VALID_IDS[1],
    "bank_card": VISA,
    "ipv4": "10.1.2.3",
}


@pytest.mark.parametrize("only", KINDS)
def test_kinds_subset_disables_the_others(only):
    text = " | ".join(f"{k}: {v}" for k, v in SAMPLE.items())
    out, counts = redact(text, kinds=[only])
    assert counts == {only: 1}
    for kind, value in SAMPLE.items():
        if kind == only:
            assert value not in out
            assert PLACEHOLDERS[kind] in out
        else:
            assert value in out


def test_no_kinds_redacts_nothing():
    text = " | ".join(SAMPLE.values())
    assert redact(text, kinds=[]) == (text, {})


def test_unknown_kind_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="passport"):
        Redactor(kinds=["email", "passport"])


# -- events -----------------------------------------------------------------------------------


def feedback_event():
    return {
        "event_id": "f-1", "type": "feedback", "ts": 1_763_800_005.0, "model": "recsys",
        "request_id": "r-1", "kind": "complaint",
        "reason": "charged twice on card 4111 1111 1111 1111",
        "comment": "Call me on 138 0013 8000 or mail li.wei@example.cn",
        "value": {"corrected": "ship to 10.1.2.3", "notes": ["ID " + VALID_IDS[0], 42, None]},
        "features": {"email": "li.wei@example.cn", "age": 31, "query": "running shoes"},
        "prediction": {"label": "contact 13900139000", "score": 0.8},
        "segment": {"region": "east", "ip": "10.0.0.7", "vip": True},
    }


def test_redact_event_redacts_nested_strings_everywhere():
    out = Redactor().redact_event(feedback_event())
    assert out["reason"] == "charged twice on card [BANK_CARD]"
    assert out["comment"] == "Call me on [PHONE] or mail [EMAIL]"
    assert out["value"] == {"corrected": "ship to [IPV4]", "notes": ["ID [CN_ID]", 42, None]}
    assert out["features"] == {"email": "[EMAIL]", "age": 31, "query": "running shoes"}
    assert out["prediction"] == {"label": "contact [PHONE]", "score": 0.8}
    assert out["segment"] == {"region": "east", "ip": "[IPV4]", "vip": True}


def test_redact_event_counts_by_kind_into_the_given_dict():
    counts = {"email": 5}
    Redactor().redact_event(feedback_event(), counts)
    assert counts == {"email": 7, "phone": 2, "bank_card": 1, "ipv4": 2, "cn_id": 1}


def test_redact_event_does_not_mutate_its_input():
    event = feedback_event()
    before = copy.deepcopy(event)
    Redactor(fields=["features.email", "segment.ip"]).redact_event(event)
    assert event == before


def test_redact_event_returns_a_deep_copy():
    event = feedback_event()
    out = Redactor().redact_event(event)
    assert out is not event
    for name in ("value", "features", "prediction", "segment"):
        assert out[name] is not event[name]
    assert out["value"]["notes"] is not event["value"]["notes"]
    out["segment"]["region"] = "west"
    out["value"]["notes"].append("x")
    assert event["segment"]["region"] == "east"
    assert len(event["value"]["notes"]) == 3


def test_redact_event_copies_containers_without_personal_data_too():
    event = {"type": "prediction", "features": {"price": 12.5, "tags": ["a", "b"]}}
    out = Redactor().redact_event(event)
    assert out == event
    assert out["features"] is not event["features"]
    assert out["features"]["tags"] is not event["features"]["tags"]


def test_enum_fields_are_never_rewritten():
    # Not realistic values: they show the rule, since each would be redacted anywhere else.
    event = {"type": "li.wei@example.cn", "kind": "13800138000", "status": "10.1.2.3", "ts": VISA,
             "comment": "li.wei@example.cn"}
    out = Redactor().redact_event(event)
    assert {k: out[k] for k in ("type", "kind", "status", "ts")} == {k: event[k] for k in ("type", "kind",
                                                                                         "status", "ts")}
    assert out["comment"] == "[EMAIL]"


def test_configured_fields_are_replaced_whole():
    counts = {}
    out = Redactor(fields=["features.query", "features.age", "segment.region", "comment"]).redact_event(
        feedback_event(), counts)
    assert out["features"]["query"] == FIELD_PLACEHOLDER
    assert out["features"]["age"] == FIELD_PLACEHOLDER  # a number is replaced too
    assert out["segment"]["region"] == FIELD_PLACEHOLDER
    assert out["comment"] == FIELD_PLACEHOLDER
    assert out["features"]["email"] == "[EMAIL]"  # other fields still go through the text detectors
    assert counts["field"] == 4


def test_configured_fields_that_are_absent_or_null_are_left_alone():
    event = {"type": "prediction", "features": {"age": None}, "segment": "not-an-object"}
    counts = {}
    out = Redactor(fields=["features.age", "features.missing", "segment.ip", "nope.deeper.still"]).redact_event(
        event, counts)
    assert out == event
    assert "field" not in counts


def test_fields_with_no_text_detectors():
    event = {"type": "prediction", "features": {"email": "li.wei@example.cn", "note": "li.wei@example.cn"}}
    out = Redactor(kinds=[], fields=["features.email"]).redact_event(event)
    assert out["features"] == {"email": FIELD_PLACEHOLDER, "note": "li.wei@example.cn"}


def test_identifiers_survive_redaction():
    ids = ["1763800000123456789", "1763800000123456790"]
    ids = [luhn_complete(i[:-1]) for i in ids]  # two snowflake-style ids, Luhn-valid by chance
    assert ids[0] != ids[1]
    redactor = Redactor()
    out = [redactor.redact_event({"event_id": i, "type": "prediction", "request_id": i}) for i in ids]
    assert [o["event_id"] for o in out] == ids
    assert [o["request_id"] for o in out] == ids


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_redact_text_is_idempotent_and_counts_its_placeholders(text):
    redactor = Redactor()
    out, counts = redactor.redact_text(text)
    assert redactor.redact_text(out) == (out, {})
    for kind, placeholder in PLACEHOLDERS.items():
        assert out.count(placeholder) - text.count(placeholder) == counts.get(kind, 0)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(SAMPLE.items())), st.text(alphabet="abc XYZ,;", max_size=20),
       st.text(alphabet="abc XYZ,;", max_size=20))
def test_personal_data_between_words_is_always_redacted(item, before, after):
    kind, value = item
    out, counts = redact(f"{before} {value} {after}")
    assert value not in out
    assert counts == {kind: 1}
