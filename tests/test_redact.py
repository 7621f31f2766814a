"""PII redaction (collectors/redact.py): what is removed, what is kept, and how events are copied.

Check digits are computed here by independent implementations of ISO 7064 MOD 11-2 and
Luhn, so a wrong checksum in the module cannot hide behind test data made with it.
"""

from __future__ import annotations

import copy
import re

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
    # US numbers in national writing (a real area code: 555 is no area code, so the
    # fictional "(555) 123-4567" is no number libphonenumber accepts).
    "(415) 555-2671",
    "415-555-2671",
    "415.555.2671",
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


def test_identity_shaped_number_with_a_wrong_check_digit_is_kept_though_luhn_valid():
    # 18 digits starting with 4 is no card's length (Visa is 13, 16 or 19), so passing
    # Luhn by chance does not make it a card.
    text = f"number {BAD_ID_LUHN_OK} on file"
    assert redact(text) == (text, {})


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
    "ipv6": "2001:db8::8a2e:370:7334",
    "cn_passport": "E12345678",
    "hk_id": "A123456(3)",
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


# -- the writings of each kind that the issue names ------------------------------------------------


@pytest.mark.parametrize("number", [
    "(021)34818226", "010-46025642", "（0755）86013388", "0755 8601 3388", "02134818226", "+86 21 3481 8226",
    "+86-10-46025642", "0086 21 34818226", "86-21-34818226", "+86 (0)21 3481 8226",  # fixed lines
    "8619559665425", "86 13800138000", "(+86)13800138000", "１３８００１３８０００",  # mobiles
    "+14155552671", "+44 20 7946 0958", "+81 90-1234-5678", "+49 30 12345678", "+33 6 12 34 56 78",
    "+852 9123 4567", "(852) 9123 4567", "0044 20 7946 0958", "001 415 555 2671",  # international
    "020 7946 0958", "090-1234-5678", "0151 23456789", "06 12 34 56 78",  # national writings abroad
])
def test_phone_numbers_in_every_writing_are_redacted(number):
    out, counts = redact(f"请打 {number}，谢谢")
    assert out == "请打 [PHONE]，谢谢"
    assert counts == {"phone": 1}


def test_phone_number_glued_to_chinese_text_is_redacted():
    assert redact("座机(021)34818226或者手机8619559665425找我")[0] == "座机[PHONE]或者手机[PHONE]找我"


def test_two_numbers_with_one_space_between_are_two_numbers():
    out, counts = redact("电话: +65 9424 6605 028-53023145 please call back")
    assert out == "电话: [PHONE] [PHONE] please call back"
    assert counts == {"phone": 2}


@pytest.mark.parametrize("text", [
    "at 1763800000123 and 1763800000",  # timestamps in milliseconds and seconds
    "订单号 2025112212345678 已发货",  # a date-based order number
    "ORD-2025-000123, order 251122-123456789012345",
    "快递单号 SF1234567890123, EMS EA123456789CN, 1Z999AA10123456784",
    "日期 08.04.2019 和 2025/11/22",  # read in Germany's plan, 08.04.2019 is a valid number
    "Chrome 131.0.6778.86, app v3.9.8.25, 版本 3.2.1.15",  # the last two would be valid IPv4
    "定位 31.2304, 121.4737; lat 22.543100 lng 114.057900",
    "item 100012345678, 交易单号 4200001234202511221234567890",
    "train G1234次 and flight CA1234",
])
def test_look_alikes_are_kept(text):
    assert redact(text) == (text, {})


@pytest.mark.parametrize(("text", "kind"), [
    ("身份证号 110105 19491231 002X 已提交", "cn_id"),  # grouped 6-8-4
    ("身份证号１１０１０５１９４９１２３１００２Ｘ", "cn_id"),  # full-width
    ("老身份证号 110105491231002", "cn_id"),  # first generation: 15 digits, no check digit
    ("护照号 E12345678", "cn_passport"),
    ("passport EA1234567 please", "cn_passport"),
    ("old passport G12345678.", "cn_passport"),
    ("HKID A123456(3)", "hk_id"),
    ("香港身份證 A123456（3）", "hk_id"),
    ("HKID A1234563 ok", "hk_id"),
    ("邮箱 用户@例子.中国", "email"),
    ("mail müller@beispiel.de now", "email"),
    ("邮箱li.wei＠163.com", "email"),
    ("from 2001:0db8:85a3:0000:0000:8a2e:0370:7334 today", "ipv6"),
    ("IP:2001:db8::1，谢谢", "ipv6"),
    ("link-local fe80::1ff:fe23:4567:890a%eth0 here", "ipv6"),
    ("mapped ::ffff:192.0.2.128 here", "ipv6"),
])
def test_other_kinds_in_their_writings_are_redacted(text, kind):
    out, counts = redact(text)
    assert counts == {kind: 1}
    assert PLACEHOLDERS[kind] in out


@pytest.mark.parametrize("text", [
    "ID 11010519491231002X9",  # one more digit
    "HKID A123456(4)",  # wrong check digit
    "code E1234567 and E123456789",  # one digit short, one too many
    "old id 110105491331002",  # month 13
    "time 14:30:05 and MAC 00:1A:2B:3C:4D:5E",
])
def test_near_misses_of_other_kinds_are_kept(text):
    assert redact(text) == (text, {})


def test_email_keeps_the_chinese_word_before_it():
    assert redact("邮箱li.wei@example.cn请回复")[0] == "邮箱[EMAIL]请回复"


# -- pseudonyms -----------------------------------------------------------------------------------


PSEUDONYM = r"\[PHONE:[0-9a-f]{10}\]"


def test_a_pseudonym_is_a_keyed_hash_stable_for_the_value_and_secret():
    r = Redactor(pseudonymise=["phone"], secret=b"s1")
    out, counts = r.redact_text("call 13800138000")
    assert re.fullmatch(rf"call {PSEUDONYM}", out)
    assert counts == {"phone": 1}
    assert r.redact_text("call 13800138000")[0] == out
    assert Redactor(pseudonymise=["phone"], secret=b"s1").redact_text("call 13800138000")[0] == out
    assert Redactor(pseudonymise=["phone"], secret=b"s2").redact_text("call 13800138000")[0] != out
    assert r.redact_text("call 13900139000")[0] != out


def test_two_writings_of_one_value_give_one_pseudonym():
    r = Redactor(pseudonymise=["phone", "email", "cn_id"], secret=b"k")
    phones = {r.redact_text(f"call {n}")[0] for n in ("13800138000", "+86 138 0013 8000", "0086-138-0013-8000",
                                                        "8613800138000", "１３８００１３８０００")}
    assert len(phones) == 1
    assert r.redact_text("Li.Wei@Example.CN")[0] == r.redact_text("li.wei@example.cn")[0]
    assert r.redact_text("11010519491231002x")[0] == r.redact_text("110105 19491231 002X")[0]


def test_kinds_not_pseudonymised_keep_their_placeholder():
    r = Redactor(pseudonymise=["email"], secret=b"k")
    out, _ = r.redact_text("li.wei@example.cn 13800138000")
    assert re.fullmatch(r"\[EMAIL:[0-9a-f]{10}\] \[PHONE\]", out)


def test_pseudonymised_text_is_not_redacted_again():
    r = Redactor(pseudonymise=list(KINDS), secret=b"k")
    out, _ = r.redact_text(" ".join(SAMPLE.values()))
    assert r.redact_text(out) == (out, {})


def test_pseudonymising_without_a_secret_is_refused():
    with pytest.raises(ValueError, match="secret"):
        Redactor(pseudonymise=["phone"])


def test_the_secret_comes_from_the_environment_or_a_file(tmp_path):
    from monitor.config import load_settings, render_toml  # noqa: PLC0415

    settings = load_settings(toml_text='[redact]\npseudonymise = ["phone"]',
                             environ={"MONITOR_REDACT_SECRET": "hunter2"})
    from_env = Redactor.from_settings(settings.redact).redact_text("13800138000")[0]
    key = tmp_path / "key"
    key.write_text("hunter2\n")
    settings2 = load_settings(toml_text=f'[redact]\npseudonymise = ["phone"]\nsecret_file = "{key}"', environ={})
    assert Redactor.from_settings(settings2.redact).redact_text("13800138000")[0] == from_env
    assert "hunter2" not in render_toml(settings)
    assert 'secret = "<set>"' in render_toml(settings)
    assert "hunter2" not in repr(settings)


def test_pseudonymise_settings_are_checked():
    from common.errors import ConfigError  # noqa: PLC0415
    from monitor.config import load_settings  # noqa: PLC0415

    with pytest.raises(ConfigError, match="MONITOR_REDACT_SECRET"):
        load_settings(toml_text='[redact]\npseudonymise = ["phone"]', environ={})
    with pytest.raises(ConfigError, match="'name'"):
        load_settings(toml_text='[redact]\npseudonymise = ["name"]', environ={"MONITOR_REDACT_SECRET": "k"})
    with pytest.raises(ConfigError, match="secret_file"):
        load_settings(toml_text='[redact]\npseudonymise = ["phone"]\nsecret_file = "/nonexistent/key"', environ={})
    with pytest.raises(ConfigError, match="'XX'"):
        load_settings(toml_text='[redact]\nphone_regions = ["CN", "XX"]', environ={})


# -- a recogniser the user brings ----------------------------------------------------------------


class NamesRecognizer:
    """A stand-in for an NER model: knows two names."""

    def find(self, text):
        out = []
        for name in ("Li Wei", "王芳"):
            at = text.find(name)
            if at >= 0:
                out.append((at, at + len(name), "person"))
        return out


def test_a_recognizer_adds_its_own_kinds():
    r = Redactor(recognizer=NamesRecognizer())
    out, counts = r.redact_text("Li Wei (li.wei@example.cn) and 王芳 called")
    assert out == "[PERSON] ([EMAIL]) and [PERSON] called"
    assert counts == {"person": 2, "email": 1}


def test_a_recognizer_span_overlapping_ours_is_dropped_and_odd_kinds_are_other():
    class Greedy:
        def find(self, text):
            return [(0, len(text), "person"), (0, 2, "Not A Label!"), (5, 2, "person")]

    out, counts = Redactor(recognizer=Greedy()).redact_text("ab 13800138000")
    assert out == "[OTHER] [PHONE]"
    assert counts == {"other": 1, "phone": 1}


def test_a_recognizer_kind_can_be_pseudonymised():
    r = Redactor(recognizer=NamesRecognizer(), pseudonymise=["person"], secret=b"k")
    assert re.fullmatch(r"\[PERSON:[0-9a-f]{10}\] called", r.redact_text("Li Wei called")[0])


def test_recognizer_is_loaded_from_its_spec():
    from collectors.redact import load_recognizer  # noqa: PLC0415
    from common.errors import ConfigError  # noqa: PLC0415

    assert load_recognizer("collectors.redact:_NoRecognizer").find("Li Wei") == []
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_recognizer("no_such_module_here:factory")
    with pytest.raises(ConfigError, match="no find"):
        load_recognizer("collections:OrderedDict")


# -- which parts of an event are scanned ----------------------------------------------------------


def test_free_text_features_and_segments_are_scanned_by_default():
    event = {"type": "prediction", "features": {"query": "call 13800138000", "price": 12.5},
             "segment": {"city": "li.wei@example.cn"}}
    out = Redactor().redact_event(event)
    assert out["features"] == {"query": "call [PHONE]", "price": 12.5}
    assert out["segment"] == {"city": "[EMAIL]"}


def test_scan_limits_the_parts_searched():
    event = feedback_event()
    counts = {}
    out = Redactor(scan=["comment", "features.email"]).redact_event(event, counts)
    assert out["comment"] == "Call me on [PHONE] or mail [EMAIL]"
    assert out["features"]["email"] == "[EMAIL]"
    assert out["reason"] == event["reason"]
    assert out["segment"] == event["segment"] and out["segment"] is not event["segment"]
    assert counts == {"phone": 1, "email": 2}


def test_the_pipeline_builds_its_redactor_from_the_settings():
    from monitor.config import load_settings  # noqa: PLC0415

    settings = load_settings(toml_text='[redact]\nkinds = ["email"]\nscan = ["comment"]', environ={})
    r = Redactor.from_settings(settings.redact)
    assert r.kinds == ("email",)
    out = r.redact_event({"type": "feedback", "comment": "li.wei@example.cn", "reason": "li.wei@example.cn"})
    assert out == {"type": "feedback", "comment": "[EMAIL]", "reason": "li.wei@example.cn"}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789０１８ +-()（）.:@aEXx转:[]", max_size=60))
def test_digit_heavy_text_is_redacted_idempotently_and_never_fails(text):
    redactor = Redactor(pseudonymise=["phone"], secret=b"k")
    out, counts = redactor.redact_text(text)
    assert redactor.redact_text(out) == (out, {})
    assert sum(counts.values()) == len(redactor.find(text))


def test_a_failing_recognizer_fails_closed(caplog):
    class Broken:
        def find(self, text):
            raise RuntimeError("model not loaded")

    r = Redactor(recognizer=Broken())
    assert r.redact_text("Li Wei called") == (FIELD_PLACEHOLDER, {"field": 1})
    assert r.redact_text("again") == (FIELD_PLACEHOLDER, {"field": 1})
    assert sum("redact.recognizer failed" in m for m in caplog.messages) == 1
    assert Redactor(recognizer=Broken()).redact_text("") == ("", {})


def test_a_recognizer_factory_that_fails_is_a_config_error(tmp_path, monkeypatch):
    from collectors.redact import load_recognizer  # noqa: PLC0415
    from common.errors import ConfigError  # noqa: PLC0415

    (tmp_path / "brokenrec.py").write_text("def factory():\n    raise OSError('no model file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="failed to start"):
        load_recognizer("brokenrec:factory")


def test_names_that_are_personal_data_are_redacted_too():
    """A feature or segment named by what a user typed (an e-mail as a key) is stored redacted;
    two keys redacted alike keep both values."""
    out = Redactor().redact_event({"event_id": "e", "features": {"x": 1, "li.wei@example.cn": 2, "wang@example.cn": 3},
                                   "segment": {"13900139000": "k"}})
    assert out["features"] == {"x": 1, "[EMAIL]": 2, "[EMAIL]#2": 3}
    assert out["segment"] == {"[PHONE]": "k"}
