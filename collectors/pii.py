"""Finding personal values in text: where each one is, of which kind, and its normal form.

One finder per kind; each looks at the whole text and yields :class:`Found` spans.
Patterns find candidates and a check confirms them where the kind has one: the
check digits of PRC and Hong Kong identity numbers, Luhn and the issuer ranges of
payment cards, the address grammar of IPv4 and IPv6 (``ipaddress``), and for phone
numbers Google's libphonenumber (the ``phonenumbers`` package), which knows every
country's numbering plan: a number read without a country code must be valid in the
plan and written as numbers are written there; one written with ``+`` or ``00`` and a
country code need only have a possible length. The normal form is what a pseudonym
is made of, so that two writings of one value give one pseudonym.

>>> [(f.kind, f.normal) for f in find_all("手机 +86 138-0013-8000，邮箱 Li.Wei@Example.cn", PRIORITY)]
[('phone', '+8613800138000'), ('email', 'li.wei@example.cn')]
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import phonenumbers

#: The kinds found here, in the order a text is searched: a span claimed by an earlier
#: kind is not looked at again (an e-mail address's digits are not a phone number, an
#: identity number is not a card, an IP address is not a phone number).
PRIORITY = ("email", "ipv6", "cn_id", "hk_id", "cn_passport", "bank_card", "ipv4", "phone")
#: Regions whose national writing of phone numbers is recognised by default; numbers
#: written with ``+`` or ``00`` and a country code are recognised for every country.
DEFAULT_PHONE_REGIONS = ("CN", "US", "GB", "JP", "DE", "FR")
#: Every region libphonenumber has a numbering plan for.
PHONE_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


@dataclass(frozen=True)
class Found:
    """A personal value at ``text[start:end]``; ``normal`` is its normal form."""

    kind: str
    start: int
    end: int
    normal: str


# Full-width digits, letters, "+" and "@" (typed in a Chinese IME's full-width mode) as
# ASCII, one character for one, so that offsets into the text stay right (NFKC would
# also turn "…" into "...").
_HALF_WIDTH = str.maketrans({chr(c): chr(c - 0xFEE0) for c in (*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B),
                                                               *range(0xFF41, 0xFF5B), 0xFF0B, 0xFF20)})


def _half_width(text: str) -> str:
    """Full-width digits and letters as ASCII, one character for one.

    >>> _half_width("１３８＋Ｘ…")
    '138+X…'
    """
    return text.translate(_HALF_WIDTH)


# -- check digits -------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# First two digits of a resident identity number: the province-level divisions (GB/T 2260).
_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51,
                        52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91})
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def cn_id_valid(number: str) -> bool:
    """ISO 7064 MOD 11-2 check digit of an 18-character PRC resident identity number.

    >>> cn_id_valid("11010519491231002X"), cn_id_valid("110105194912310021")
    (True, False)
    """
    total = sum(int(number[i]) * w for i, w in enumerate(_ID_WEIGHTS))
    return _ID_CHECK[total % 11] == number[17].upper()


def _plausible_birth(province: str, year: int, month: int, day: int) -> bool:
    return int(province) in _PROVINCES and 1 <= month <= 12 and 1 <= day <= _DAYS[month - 1] and year >= 1880


def hk_id_valid(letters: str, digits: str, check: str) -> bool:
    """The mod-11 check character of a Hong Kong identity card number.

    >>> hk_id_valid("A", "123456", "3"), hk_id_valid("A", "123456", "4")
    (True, False)
    """
    values = ([36] if len(letters) == 1 else []) + [ord(c) - 55 for c in letters.upper()] + [int(c) for c in digits]
    rest = sum(v * w for v, w in zip(values, (9, 8, 7, 6, 5, 4, 3, 2), strict=True)) % 11
    return check.upper() == ("0" if rest == 0 else "A" if rest == 1 else str(11 - rest))


def card_number_valid(digits: str) -> bool:
    """Luhn, and the length an issuer's range gives its cards (ISO/IEC 7812 prefixes).

    An identifier that passes Luhn by chance (one in ten do) is not a card unless it
    also starts like one: a millisecond timestamp (``17...``) or a date-based order
    number (``2025...``) never does.

    >>> card_number_valid("4111111111111111"), card_number_valid("1763800000121")
    (True, False)
    """
    n = len(digits)
    if not 12 <= n <= 19 or not luhn_valid(digits):
        return False
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)  # Visa
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # American Express
    if two in {62, 81}:
        return n >= 16  # UnionPay
    if two == 35 or four == 6011 or two in (64, 65):
        return n >= 16  # JCB, Discover
    if two in (36, 38, 39, 30):
        return n >= 14  # Diners Club
    if digits[0] in "56":
        return n >= 16  # Maestro (12 to 19 digits, but issued with 16 or more)
    return False


# -- finders ------------------------------------------------------------------------------

Finder = Callable[[str], Iterator[Found]]
_NOT_AFTER = r"(?<![A-Za-z0-9\-])"
_NOT_BEFORE = r"(?![A-Za-z0-9\-])"
_LOCAL = r"[A-Za-z0-9._%+'\-\u00c0-\u024f\u3040-\u30ff\u4e00-\u9fff]+"
_LABEL = r"[A-Za-z0-9\u00c0-\u024f\u3040-\u30ff\u4e00-\u9fff](?:[A-Za-z0-9\u00c0-\u024f\u3040-\u30ff\u4e00-\u9fff\-]*)"
_EMAIL = re.compile(rf"{_LOCAL}[@＠](?:{_LABEL}\.)+(?:[A-Za-z]{{2,24}}(?![A-Za-z])|[\u4e00-\u9fff]{{2,3}})")
_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _emails(text: str) -> Iterator[Found]:
    for m in _EMAIL.finditer(text):
        found = m.group()
        local = found[: max(found.find("@"), found.find("＠"))]
        # "邮箱li.wei@..." is the word 邮箱 and an ASCII address; "用户@例子.中国" is all address.
        ends = [c.end() for c in _CJK.finditer(local)]
        cut = ends[-1] if ends and ends[-1] < len(local) else 0
        if not local[cut:].strip(".-'"):
            continue
        start = m.start() + cut
        yield Found("email", start, m.end(), _half_width(text[start:m.end()]).lower())


_D = r"[0-9０-９]"
_CN_ID_18 = re.compile(rf"{_NOT_AFTER}({_D}{{6}})[ \-]?({_D}{{8}})[ \-]?({_D}{{3}}[0-9０-９XxＸｘ]){_NOT_BEFORE}")
_CN_ID_15 = re.compile(rf"{_NOT_AFTER}{_D}{{15}}{_NOT_BEFORE}")


def _cn_ids(text: str) -> Iterator[Found]:
    for m in _CN_ID_18.finditer(text):
        number = _half_width("".join(m.groups())).upper()
        if cn_id_valid(number) and _plausible_birth(number[:2], int(number[6:10]), int(number[10:12]),
                                                     int(number[12:14])):
            yield Found("cn_id", m.start(), m.end(), number)
    for m in _CN_ID_15.finditer(text):
        # The first-generation number (issued until 2004) has no check digit: a province,
        # a real date of birth and the right length are all there is to go on.
        number = _half_width(m.group())
        if _plausible_birth(number[:2], 1900 + int(number[6:8]), int(number[8:10]), int(number[10:12])):
            yield Found("cn_id", m.start(), m.end(), number)


_HK_ID = re.compile(r"(?<![A-Za-z0-9])([A-Z]{1,2})([0-9]{6}) ?(?:[(（]([0-9A])[)）]|([0-9A]))(?![A-Za-z0-9])")


def _hk_ids(text: str) -> Iterator[Found]:
    for m in _HK_ID.finditer(text):
        letters, digits, check = m.group(1), m.group(2), m.group(3) or m.group(4)
        if hk_id_valid(letters, digits, check):
            yield Found("hk_id", m.start(), m.end(), letters + digits + check)


# Ordinary passports of the mainland: E + 8 digits, E + a letter (not I or O) + 7 digits
# (since 2017), G + 8 digits (issued until 2012). The number has no check digit of its own.
_PASSPORT = re.compile(r"(?<![A-Za-z0-9])(?:[EeGg][0-9]{8}|[Ee][A-HJ-NP-Za-hj-np-z][0-9]{7})(?![A-Za-z0-9])")


def _passports(text: str) -> Iterator[Found]:
    for m in _PASSPORT.finditer(text):
        yield Found("cn_passport", m.start(), m.end(), m.group().upper())


_CARD = re.compile(rf"{_NOT_AFTER}{_D}(?:[ \-]?{_D}){{11,18}}{_NOT_BEFORE}")


def _cards(text: str) -> Iterator[Found]:
    pos = 0
    while m := _CARD.search(text, pos):
        found = m.group()
        digits = re.sub(r"[ \-]", "", _half_width(found))
        if card_number_valid(digits):
            yield Found("bank_card", m.start(), m.end(), digits)
            pos = m.end()
            continue
        # "card 4111 1111 1111 1111 123": the card, then its security code.
        cuts = [c.start() for c in re.finditer(r"[ \-]", found)]
        for cut in reversed(cuts):
            head = re.sub(r"[ \-]", "", _half_width(found[:cut]))
            if len(head) >= 13 and card_number_valid(head):
                yield Found("bank_card", m.start(), m.start() + cut, head)
                pos = m.start() + cut
                break
        else:
            # "运单号 75933377955390 6212 2698 5886 3018 380": a card may start at the next group.
            pos = m.start() + cuts[0] + 1 if cuts else m.end()


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# An address may end a sentence ("... is 10.0.0.7."), but not run into more digits.
_IPV4 = re.compile(rf"(?<![0-9.])(?<![0-9]\.){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?[0-9])", re.ASCII)
# "v3.9.8.25", "版本 3.9.8.25", "build 10.0.1.2": a version number, not an address.
_VERSION_BEFORE = re.compile(r"(?:(?<![A-Za-z])(?:[vV]|[vV]er\.?|[vV]ersion|[bB]uild|[rR]elease)|版本号?)\s*[:：]?\s*$")


def _ipv4s(text: str) -> Iterator[Found]:
    for m in _IPV4.finditer(text):
        if not _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
            yield Found("ipv4", m.start(), m.end(), m.group())


_IPV6 = re.compile(r"(?<![0-9A-Fa-f.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|"
                   r"[0-9A-Fa-f]{1,4})?(?:%[A-Za-z0-9]{1,16})?(?![0-9A-Fa-f:.])")


def _ipv6s(text: str) -> Iterator[Found]:
    for m in _IPV6.finditer(text):
        start, found = m.start(), m.group()
        # "IPv6:::ffff:..." is "IPv6:" and "::ffff:..."; "IP:2001:db8::1" and "IPv6:2001:db8::1"
        # are a label and its colon, then the address.
        tries = [(start, found)]
        if found.startswith(":::"):
            tries = [(start + 1, found[1:])]
        elif found.startswith(":") and not found.startswith("::"):
            tries = [(start - 1, ":" + found)] if text[start - 1:start] == ":" else [(start + 1, found[1:])]
        elif ":" in found[1:] and not found.startswith("::"):
            cut = found.index(":") + 1
            tries.append((start + cut, found[cut:]) if found[cut:cut + 1] != ":" or found[cut:cut + 2] == "::"
                         else (start + cut - 1, found[cut - 1:]))
        for at, candidate in tries:
            parsed = _ipv6(candidate)
            if parsed is not None:
                yield Found("ipv6", at, m.end(), parsed)
                break


def _ipv6(found: str) -> str | None:
    address = found.partition("%")[0]
    if address.count(":") < 2 or ("::" not in address and address.count(":") != 7):
        return None
    try:
        return ipaddress.IPv6Address(address).compressed
    except ValueError:
        return None


# Phones: a cheap look for seven or more digits in a run (with the separators numbers
# are written with) decides whether libphonenumber's matcher, at tens of microseconds
# a text, runs at all.
_PHONE_HINT = re.compile(r"\d(?:[\s\-.()（）/]{0,3}\d){6}")
_SEPARATOR = re.compile(r"[\s\-.()（）/]")
# How a national number abroad starts: its trunk 0 (Europe, Japan), or North America's
# (415) 555-2671 / 415-555-2671 grouping.
_NATIONAL_HINT = re.compile(r"(?<![0-9])(?:[(（]?0[1-9]|[(（]?[2-9][0-9]{2}[)）]?[ .\-]?[0-9]{3}[ .\-][0-9]{4})")
_NO_TRUNK_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})


def _written_like_a_number(number: phonenumbers.PhoneNumber, raw: str) -> bool:
    """Whether ``raw``, read in a region's national plan, is written as people write
    numbers there: with the country code (``+86 ...``, ``0086 ...``, ``86 ...``), with
    the trunk prefix (``021 ...``, ``090-...``), or as a mobile number (which is
    dialled without one in China and North America). A Guangzhou number written
    without its ``0`` reads the same as an order number ``2025-000123``."""
    if raw.lstrip("(（[ ").startswith(("+", "＋")):
        return True
    digits = re.sub(r"[^0-9]", "", _half_width(raw))
    mobile = phonenumbers.number_type(number) in _NO_TRUNK_TYPES
    if len(digits) > len(str(number.national_number)):
        if digits.startswith("0"):
            return True
        # "8613812345678" is a mobile number with its country code; "863702820817" is a
        # parcel's number more often than Shangqiu's 0370 written with 86 and no plus.
        if digits.startswith(str(number.country_code)):
            return mobile or bool(_SEPARATOR.search(raw))
    return mobile


def phone_finder(regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> Finder:
    """A finder of phone numbers valid in their country's numbering plan.

    The first region is the default for numbers written without a country code. The
    others are tried only on numbers written nationally with separators, starting
    with the trunk ``0`` (``090-1234-5678``, ``020 7946 0958``) or grouped as the
    country groups them (``(415) 555-2671``): a bare run of digits read in every
    country's plan would make phone numbers of timestamps and order numbers. A number
    valid in two plans is found once, under the first region that reads it (so its
    pseudonym follows that reading).

    >>> find = phone_finder()
    >>> [f.normal for f in sorted(find("座机(021)34818226或8619559665425, JP +81 90-1234-5678"), key=lambda f: f.start)]
    ['+862134818226', '+8619559665425', '+819012345678']
    >>> text = "London 07700 900123, Paris 06 12 34 56 78"
    >>> [(text[f.start:f.end], f.normal) for f in find(text)]  # 0770 is also a Chinese area code, 06 Osaka's
    [('07700 900123', '+867700900123'), ('06 12 34 56 78', '+81612345678')]
    >>> list(find("ts 1763800000123, order 2025112212345678, ORD-2025-000123"))
    []
    """
    default, *others = [r.upper() for r in regions] or ["CN"]

    def find(text: str) -> Iterator[Found]:
        for f in _find(text):
            # "(+86)138...": the bracket opened before the country code belongs to the number.
            if text[f.start - 1:f.start] in ("(", "（") and any(c in text[f.start:f.end] for c in ")）"):
                yield Found(f.kind, f.start - 1, f.end, f.normal)
            else:
                yield f

    def _find(text: str) -> Iterator[Found]:
        if not _PHONE_HINT.search(text):
            return
        seen: list[tuple[int, int]] = []
        # The plan-shaped and "+"/"00" numbers first: they are cut where they end, where
        # the matcher reads two numbers with one space between as one candidate.
        if "+" in text or "＋" in text or "00" in text:
            yield from _plus_numbers(text, seen, default)
        if "CN" in (default, *others):
            yield from _cn_by_plan(text, seen)
        readings = [(default, text), *((region, text) for region in others)]
        bracketed = _CC_IN_BRACKETS.sub(_cc_as_plus, text) if "(" in text or "（" in text else text
        if bracketed != text:
            readings.append((default, bracketed))
        for region, reading in readings:
            # The matcher costs tens of microseconds a reading: none once every run of
            # seven digits is inside a number already found.
            left = _mask(text, seen) if seen else text
            if not _PHONE_HINT.search(left) or (region != default and not _NATIONAL_HINT.search(left)):
                continue
            # POSSIBLE finds candidates; each is then held to the rule for how it is written.
            for m in phonenumbers.PhoneNumberMatcher(reading, region, leniency=phonenumbers.Leniency.POSSIBLE):
                raw = m.raw_string
                if _international(raw) and not (raw.startswith("00") and re.match(
                        r"[0-9][ \-]", text[max(0, m.start - 2):m.start])):
                    # "+" or "00" and a country code: a phone number even where the plan
                    # (or our copy of it) does not list the range yet.
                    pass
                elif not phonenumbers.is_valid_number(m.number) or not _written_like_a_number(m.number, raw) or (
                        region != default and not _grouped_as_in(m.number, raw)):
                    continue
                if _inside_identifier(text, m.start, m.end) or _not_a_phone(text, m.start, raw) or any(
                        m.start < e and s < m.end for s, e in seen):
                    continue
                seen.append((m.start, m.end))
                normal = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
                yield Found("phone", m.start, m.end, normal)

    return find


# Mainland numbers by the numbering plan itself, for what libphonenumber's per-city
# metadata does not (yet) know: new mobile prefixes and local number ranges. A mobile
# number is 1[3-9] and nine more digits; a fixed line an area code (10, 2x, or three
# digits from 3xx to 9xx) with its trunk 0 or the country code, and 7 or 8 digits.
_CN_PLAN = re.compile(
    r"(?<![0-9０-９A-Za-z+＋])(?:"
    r"(?:(?:[+＋]|00)?86[ \-]?|[(（][+＋]86[)）] ?)?(?P<mobile>1[3-9][0-9](?:[ \-]?[0-9]{4}){2})"
    r"|(?:(?:[+＋]|00)86[ \-]?(?:[(（]0[)）] ?)?|86-)(?P<area>10|2[0-9]|[3-9][0-9]{2})[ \-]?"
    r"(?P<local>[2-9][0-9]{2,3}[ \-]?[0-9]{3,4})"
    r"|(?:[(（](?P<area2>0(?:10|2[0-9]|[3-9][0-9]{2}))[)）] ?|(?P<area3>0(?:10|2[0-9]|[3-9][0-9]{2}))[ \-]?)"
    r"(?P<local2>[2-9][0-9]{2,3}[ \-]?[0-9]{3,4}))"
    r"(?![0-9０-９A-Za-z])")


def _cn_by_plan(text: str, seen: list[tuple[int, int]]) -> Iterator[Found]:
    for m in _CN_PLAN.finditer(_half_width(text) if not text.isascii() else text):
        if any(m.start() < e and s < m.end() for s, e in seen) or _inside_identifier(text, m.start(), m.end()):
            continue
        if m["mobile"]:
            national = re.sub(r"[ \-]", "", m["mobile"])
        else:
            area = m["area"] or (m["area2"] or m["area3"])[1:]
            national = area + re.sub(r"[ \-]", "", m["local"] or m["local2"])
            if not 9 <= len(national) <= 11 or len(national) - len(area) not in (7, 8):
                continue
        seen.append((m.start(), m.end()))
        yield Found("phone", m.start(), m.end(), "+86" + national)


_DATE = re.compile(r"[0-9]{1,2}[./\-][0-9]{1,2}[./\-](?:19|20)[0-9]{2}"
                   r"|(?:19|20)[0-9]{2}[./\-][0-9]{1,2}[./\-][0-9]{1,2}")
_DOTTED_VERSION = re.compile(r"[0-9]+\.[0-9]\.[0-9]")


def _not_a_phone(text: str, start: int, raw: str) -> bool:
    """A date (``08.04.2019``, read in Germany's plan, is a valid number), a version
    (``131.0.6778.86``, ``版本 3.2.1.5``), or the tail of a dotted number."""
    end = start + len(raw)
    return bool(_DATE.fullmatch(raw) or _DOTTED_VERSION.match(raw)
                or _VERSION_BEFORE.search(text, max(0, start - 12), start)
                or (text[start - 1:start] == "." and text[start - 2:start - 1].isdigit())
                or (text[end:end + 1] == "." and text[end + 1:end + 2].isdigit()))


_PLUS = re.compile(r"(?:[+＋]|(?<![0-9A-Za-z])(?<![0-9][ \-])00)[1-9][0-9 \-().]{5,22}[0-9]")


def _plus_numbers(text: str, seen: list[tuple[int, int]], region: str) -> Iterator[Found]:
    """Numbers after a ``+`` or ``00`` and a country code, cut where the longest valid
    number ends (``+65 9424 6605 028-5302 3145`` is two numbers)."""
    for m in _PLUS.finditer(text):
        if any(s <= m.start() < e for s, e in seen):
            continue
        found = m.group()
        for cut in [len(found), *sorted((s.start() for s in _SEPARATOR.finditer(found)), reverse=True)]:
            try:
                number = phonenumbers.parse(_half_width(found[:cut]), region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                end = m.start() + len(found[:cut].rstrip(" -(."))
                if not any(m.start() < e and s < end for s, e in seen):
                    seen.append((m.start(), end))
                    yield Found("phone", m.start(), end,
                                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
                break


_CC_IN_BRACKETS = re.compile(r"[(（]([1-9][0-9]{0,2})[)）]")


def _cc_as_plus(m: re.Match[str]) -> str:
    """"(852) 9123 4567", as Hong Kong writes it, read as "+852  9123 4567" (same length)."""
    code = m.group(1)
    if int(code) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        return m.group()
    return ("+" + code).ljust(len(m.group()))


def _international(raw: str) -> bool:
    head = raw.lstrip("(（[ ")
    return head.startswith(("+", "＋")) or _half_width(head[:2]) == "00"


def _grouped_as_in(number: phonenumbers.PhoneNumber, raw: str) -> bool:
    """Written with separators, and, unless it starts with a trunk ``0``, grouped as
    the country writes it (``(415) 555-2671``, not ``2025-000123``).

    >>> us = phonenumbers.parse("+14155552671")
    >>> _grouped_as_in(us, "415.555.2671"), _grouped_as_in(us, "4155-552671")
    (True, False)
    """
    digits = _half_width(raw)
    if not _SEPARATOR.search(raw):
        return False
    if re.sub(r"[^0-9]", "", digits).startswith("0"):
        return True
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return _cuts(digits) <= _cuts(national)


def _cuts(text: str) -> set[int]:
    """Where the digit groups of ``text`` end, counted in digits."""
    cuts, n = set(), 0
    for group in re.findall(r"[0-9]+", text):
        n += len(group)
        cuts.add(n)
    return cuts


def _inside_identifier(text: str, start: int, end: int) -> bool:
    """``ORD-2025-000123``, ``2025-000123-A``, ``1Z239AG0075192274``: digits joined to
    letters or digits, directly or by a dash."""
    before, after = text[max(0, start - 2):start], text[end:end + 2]
    if (before[-1:].isascii() and before[-1:].isalnum()) or (after[:1].isascii() and after[:1].isalnum()):
        return True
    return (len(before) == 2 and before[1] == "-" and before[0].isascii() and before[0].isalnum()) or (
        len(after) == 2 and after[0] == "-" and after[1].isascii() and after[1].isalnum())


FINDERS: dict[str, Finder] = {
    "email": _emails, "ipv6": _ipv6s, "cn_id": _cn_ids, "hk_id": _hk_ids, "cn_passport": _passports,
    "bank_card": _cards, "ipv4": _ipv4s, "phone": phone_finder(),
}
_DIGIT = re.compile(r"[0-9０-９]")
# What a text must hold before a kind's finder is worth running, given its digit count:
# most strings stored with a bad case ("android", "v12", "irrelevant") hold none of it.
_WORTH: dict[str, Callable[[str, int], bool]] = {
    "email": lambda text, _: "@" in text or "＠" in text,
    "ipv6": lambda text, _: text.count(":") >= 2,
    "cn_id": lambda _, digits: digits >= 15,
    "hk_id": lambda _, digits: digits >= 6,
    "cn_passport": lambda _, digits: digits >= 7,
    "bank_card": lambda _, digits: digits >= 12,
    "ipv4": lambda text, digits: digits >= 4 and text.count(".") >= 3,
    "phone": lambda _, digits: digits >= 7,
}


def find_all(text: str, kinds: Iterable[str], finders: dict[str, Finder] | None = None,
             claimed: Iterable[tuple[int, int]] = ()) -> list[Found]:
    """Personal values in ``text``, of the given kinds, without overlaps, in text order.

    Kinds are searched in ``PRIORITY`` order; a span that overlaps one already taken
    (or one in ``claimed``) is dropped.
    """
    digits = len(_DIGIT.findall(text))
    if digits < 4 and "@" not in text and "＠" not in text and ":" not in text:
        return []
    finders = finders or FINDERS
    wanted = set(kinds)
    taken: list[tuple[int, int]] = list(claimed)
    out: list[Found] = []
    for kind in PRIORITY:
        if kind not in wanted or not _WORTH[kind](text, digits):
            continue
        for f in finders[kind](_mask(text, taken) if kind == "phone" and taken else text):
            if not any(f.start < e and s < f.end for s, e in taken):
                taken.append((f.start, f.end))
                out.append(f)
    out.sort(key=lambda f: f.start)
    return out


def _mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with the spans blanked out (same length), so that the phone matcher,
    which reads across a span, does not join digits on both sides of one."""
    chars = list(text)
    for s, e in spans:
        chars[s:e] = "|" * (e - s)
    return "".join(chars)
