"""A seeded corpus of bilingual feedback text with personal values and look-alikes.

Each text is a comment as Chinese and international users write them: one or two
personal values, each of a known kind and written one of the ways people write it,
and usually one look-alike (an order number, a timestamp, a price, ...) that a
redactor must leave alone. Every value is made from the numbering plans and formats
themselves (operator prefixes, area codes, check digits computed here, independently
of ``collectors.redact``), never from our detectors' patterns.

>>> texts = corpus(200, seed=1)
>>> t = texts[0]
>>> all(t.text[v.start:v.end] == v.value for v in (*t.values, *t.lookalikes))
True
>>> corpus(5, seed=3) == corpus(5, seed=3)
True
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

#: Benchmark kinds (finer than redaction kinds) and the redaction kind each belongs to.
KINDS = {
    "phone_cn_mobile": "phone",
    "phone_cn_fixed": "phone",
    "phone_intl": "phone",
    "cn_id": "cn_id",
    "cn_id_15": "cn_id",
    "cn_passport": "cn_passport",
    "hk_id": "hk_id",
    "bank_card": "bank_card",
    "email": "email",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
}
LOOKALIKES = ("order_no", "tracking_no", "timestamp", "date", "price", "sku", "version", "coordinates",
              "transaction_id", "flight_train")


@dataclass(frozen=True)
class Span:
    kind: str
    value: str
    start: int
    end: int


@dataclass(frozen=True)
class Text:
    text: str
    values: tuple[Span, ...]
    lookalikes: tuple[Span, ...]


_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def _group(s: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for size in sizes:
        out.append(s[i:i + size])
        i += size
    if i < len(s):
        out.append(s[i:])
    return sep.join(p for p in out if p)


# -- phones: mainland China ---------------------------------------------------------------

# Mobile prefixes in use (MIIT allocations of China Mobile, Unicom, Telecom, Broadnet and MVNOs).
_CN_MOBILE = ("130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "145", "147", "149", "150",
              "151", "152", "153", "155", "156", "157", "158", "159", "162", "165", "166", "167", "170", "171",
              "172", "173", "175", "176", "177", "178", "180", "181", "182", "183", "184", "185", "186", "187",
              "188", "189", "190", "191", "192", "193", "195", "196", "197", "198", "199")
# Area codes: the 2-digit ones (8-digit local numbers) and a spread of 3-digit ones.
_CN_AREA_2 = ("10", "20", "21", "22", "23", "24", "25", "27", "28", "29")
_CN_AREA_3 = ("311", "351", "371", "411", "431", "451", "512", "531", "532", "551", "571", "574", "591", "592",
              "731", "755", "756", "757", "769", "771", "791", "851", "871", "898", "931", "991")


def cn_mobile(r: random.Random) -> str:
    n = r.choice(_CN_MOBILE) + _digits(r, 8)
    style = r.random()
    if style < 0.25:
        return n
    if style < 0.35:
        return _group(n, (3, 4, 4), " ")
    if style < 0.45:
        return _group(n, (3, 4, 4), "-")
    if style < 0.52:
        return "+86 " + _group(n, (3, 4, 4), " ")
    if style < 0.58:
        return "+86" + n
    if style < 0.63:
        return "+86-" + _group(n, (3, 4, 4), "-")
    if style < 0.70:
        return "0086" + r.choice(("", " ", "-")) + n
    if style < 0.80:
        return "86" + r.choice(("", "", " ", "-")) + n  # the country code without its plus
    if style < 0.85:
        return "(+86)" + n
    if style < 0.90:
        return "+86 " + n
    if style < 0.95:
        return n.translate(_FULLWIDTH)  # typed with a Chinese IME in full-width mode
    return _group(n, (3, 8), " ")


def cn_fixed(r: random.Random) -> str:
    if r.random() < 0.55:
        area, local = r.choice(_CN_AREA_2), r.choice("2345678") + _digits(r, 7)
    else:
        area, local = r.choice(_CN_AREA_3), r.choice("2345678") + _digits(r, r.choice((6, 7, 7)))
    style = r.random()
    if style < 0.2:
        text = f"0{area}-{local}"
    elif style < 0.35:
        text = f"(0{area}){local}"
    elif style < 0.42:
        text = f"（0{area}）{local}"  # full-width brackets
    elif style < 0.50:
        text = f"0{area} {local}"
    elif style < 0.57:
        text = f"0{area}{local}"
    elif style < 0.64:
        text = f"0{area}-{_group(local, (4,), '-')}"
    elif style < 0.72:
        text = f"+86 {area} {local}"
    elif style < 0.78:
        text = f"+86-{area}-{local}"
    elif style < 0.84:
        text = f"0086 {area} {local}"
    elif style < 0.90:
        text = f"86-{area}-{local}"
    elif style < 0.95:
        text = f"(0{area}) {_group(local, (4,), ' ')}"
    else:
        text = f"+86 (0){area} {local}"
    return text


# -- phones: elsewhere --------------------------------------------------------------------

_US_AREA = ("212", "213", "206", "305", "312", "347", "404", "408", "415", "503", "512", "602", "617", "646",
            "650", "702", "713", "718", "805", "917", "919", "949")
_DE_MOBILE = ("151", "152", "157", "160", "162", "163", "170", "171", "172", "173", "174", "175", "176", "177",
              "178", "179")


def _us(r: random.Random) -> tuple[str, str]:
    area = r.choice(_US_AREA)
    exchange = r.choice("23456789") + r.choice("0123456789") + r.choice("23456789")
    line = _digits(r, 4)
    return "1", area + exchange + line


def intl_phone(r: random.Random) -> str:
    """A number outside the mainland, in E.164, international or national writing."""
    country = r.choice(("US", "GB", "JP", "DE", "FR", "HK", "SG", "TW"))
    if country == "US":
        cc, nsn = _us(r)
        national = r.choice((f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}", f"{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}",
                             f"{nsn[:3]}.{nsn[3:6]}.{nsn[6:]}"))
        spaced = r.choice((f"+1 {nsn[:3]} {nsn[3:6]} {nsn[6:]}", f"+1 ({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}",
                           f"+1-{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}"))
    elif country == "GB":
        if r.random() < 0.5:
            nsn = "7" + r.choice("456789") + _digits(r, 8)
            national = f"0{nsn[:4]} {nsn[4:]}"
            spaced = f"+44 {nsn[:4]} {nsn[4:]}"
        else:
            nsn = "20" + r.choice("378") + _digits(r, 7)
            national = f"020 {nsn[2:6]} {nsn[6:]}"
            spaced = r.choice((f"+44 20 {nsn[2:6]} {nsn[6:]}", f"+44 (0)20 {nsn[2:6]} {nsn[6:]}"))
        cc = "44"
    elif country == "JP":
        if r.random() < 0.6:
            nsn = r.choice(("90", "80", "70")) + r.choice("123456789") + _digits(r, 7)
            national = f"0{nsn[:2]}-{nsn[2:6]}-{nsn[6:]}"
            spaced = f"+81 {nsn[:2]}-{nsn[2:6]}-{nsn[6:]}"
        else:
            nsn = "3" + r.choice("3456") + _digits(r, 7)
            national = f"03-{nsn[1:5]}-{nsn[5:]}"
            spaced = f"+81 3 {nsn[1:5]} {nsn[5:]}"
        cc = "81"
    elif country == "DE":
        if r.random() < 0.6:
            prefix = r.choice(_DE_MOBILE)
            # 015x and 0176 take 8 more digits, the others 7
            nsn = prefix + r.choice("123456789") + _digits(r, 7 if prefix.startswith("15") or prefix == "176" else 6)
            national = f"0{nsn[:3]} {nsn[3:]}"
            spaced = f"+49 {nsn[:3]} {nsn[3:]}"
        else:
            nsn = "30" + r.choice("2345678") + _digits(r, 7)
            national = f"030 {nsn[2:]}"
            spaced = f"+49 30 {nsn[2:]}"
        cc = "49"
    elif country == "FR":
        # 01-05 geographic, 06 and 07 mobile (07 allocated from 073)
        nsn = r.choice(("1", "2", "3", "4", "5", "6", "6", "7")) + _digits(r, 8)
        if nsn[0] == "7":
            nsn = "7" + r.choice("345678") + nsn[2:]
        pairs = " ".join(nsn[i:i + 2] for i in range(1, 9, 2))
        national = f"0{nsn[0]} {pairs}"
        spaced = f"+33 {nsn[0]} {pairs}"
        cc = "33"
    elif country == "HK":
        nsn = r.choice("569") + _digits(r, 7)  # mobile numbers; fixed lines start 2 or 3
        cc, national, spaced = "852", "", r.choice((f"+852 {nsn[:4]} {nsn[4:]}", f"(852) {nsn[:4]} {nsn[4:]}",
                                                     f"+852-{nsn}"))
    elif country == "SG":
        nsn = r.choice(("8", "9")) + r.choice("12345678") + _digits(r, 6)
        cc, national, spaced = "65", "", f"+65 {nsn[:4]} {nsn[4:]}"
    else:
        nsn = "9" + _digits(r, 8)
        cc, national, spaced = "886", "", f"+886 {nsn[:3]} {nsn[3:6]} {nsn[6:]}"
    style = r.random()
    if style < 0.3:
        return f"+{cc}{nsn}"  # E.164
    if style < 0.4:
        return f"00{cc} {nsn}" if country != "US" else f"001 {nsn[:3]} {nsn[3:6]} {nsn[6:]}"  # dialled from China
    if style < 0.7 or not national:
        return spaced
    return national


# -- identity documents -------------------------------------------------------------------

# Province-level codes and a few real prefecture/county codes under them.
_REGIONS = ("110101", "110105", "110108", "120101", "130102", "140105", "150102", "210102", "220102", "230102",
            "310101", "310104", "310115", "320102", "320505", "330102", "330106", "340102", "350203", "360102",
            "370102", "370202", "410102", "420106", "430104", "440103", "440304", "440305", "450103", "460105",
            "500103", "510104", "510107", "520102", "530102", "540102", "610103", "620102", "630102", "640104",
            "650102")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _birth(r: random.Random, first: int, last: int) -> str:
    y, m = r.randint(first, last), r.randint(1, 12)
    d = r.randint(1, (31, 29 if y % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1])
    return f"{y:04d}{m:02d}{d:02d}"


def cn_id(r: random.Random) -> str:
    body = r.choice(_REGIONS) + _birth(r, 1940, 2008) + _digits(r, 3)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    number = body + check
    style = r.random()
    if check == "X" and style < 0.2:
        return number[:-1] + "x"
    if style < 0.9:
        return number
    if style < 0.95:
        return f"{number[:6]} {number[6:14]} {number[14:]}"
    return number.translate(_FULLWIDTH)


def cn_id_15(r: random.Random) -> str:
    """The first-generation identity number (before 1999): no check digit, a 2-digit year."""
    return r.choice(_REGIONS) + _birth(r, 1930, 1984)[2:] + _digits(r, 3)


def cn_passport(r: random.Random) -> str:
    """Ordinary passports: E + 8 digits, E + a letter + 7 digits (since 2017), G + 8 (before 2012)."""
    style = r.random()
    if style < 0.5:
        number = "E" + _digits(r, 8)
    elif style < 0.8:
        number = "E" + r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + _digits(r, 7)
    else:
        number = "G" + _digits(r, 8)
    return number.lower() if r.random() < 0.05 else number


def hk_id(r: random.Random) -> str:
    letters = r.choice("ABCDEGHKMPRVYZ") if r.random() < 0.9 else r.choice(("XA", "WX", "XG", "CA"))
    digits = _digits(r, 6)
    values = ([36] if len(letters) == 1 else []) + [ord(c) - 55 for c in letters] + [int(c) for c in digits]
    rest = sum(v * w for v, w in zip(values, (9, 8, 7, 6, 5, 4, 3, 2), strict=True)) % 11
    check = "0" if rest == 0 else ("A" if rest == 1 else str(11 - rest))
    style = r.random()
    if style < 0.6:
        return f"{letters}{digits}({check})"
    if style < 0.75:
        return f"{letters}{digits}（{check}）"
    if style < 0.9:
        return f"{letters}{digits}{check}"
    return f"{letters}{digits} ({check})"


# -- money, e-mail, network ---------------------------------------------------------------

def _luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(prefix + d)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v - 9 if v > 9 else v
        if total % 10 == 0:
            return prefix + d
    raise AssertionError("unreachable")


def bank_card(r: random.Random) -> str:
    brand = r.random()
    if brand < 0.45:  # UnionPay debit cards of mainland banks: 62 BINs, 16 or 19 digits
        bin_ = r.choice(("622202", "622848", "621700", "622588", "621226", "623668", "621483", "622908"))
        number = _luhn_complete(bin_ + _digits(r, r.choice((9, 12, 12)) ))
    elif brand < 0.65:
        number = _luhn_complete("4" + _digits(r, 14))
    elif brand < 0.8:
        prefix = r.choice(("51", "52", "53", "54", "55")) if r.random() < 0.8 else str(r.randint(2221, 2720))
        number = _luhn_complete(prefix + _digits(r, 15 - len(prefix)))
    elif brand < 0.9:
        number = _luhn_complete(r.choice(("34", "37")) + _digits(r, 12))
    else:
        number = _luhn_complete("35" + r.choice(("28", "30", "66", "89")) + _digits(r, 11))
    style = r.random()
    if len(number) == 15:  # American Express is grouped 4-6-5
        return number if style < 0.4 else _group(number, (4, 6, 5), " " if style < 0.8 else "-")
    if style < 0.4:
        return number
    if style < 0.85:
        return _group(number, (4, 4, 4, 4), " ")
    return _group(number, (4, 4, 4, 4), "-")


_LOCAL = ("li.wei", "zhangsan", "wang_fang88", "chen.jing", "liu-yang", "john.smith", "maria.garcia", "yuki.tanaka",
          "m.mueller", "sophie.martin", "a.b", "x2024", "13812345678", "support+shop", "zhao.lei.1990", "Kevin.Ho")
_DOMAINS = ("163.com", "126.com", "qq.com", "foxmail.com", "sina.com", "gmail.com", "outlook.com", "yahoo.co.jp",
            "example.cn", "mail.example.com.cn", "company.com.hk", "web.de", "orange.fr", "hotmail.co.uk",
            "aliyun.com", "sjtu.edu.cn")
_IDN = ("用户@例子.中国", "李伟@公司.中国", "josé@correo.es", "müller@beispiel.de", "andré.dupont@exemple.fr",
        "info@münchen.de", "客服@淘宝.com", "soporte@españa.es", "しょう@例え.jp", "zhang@中文网.cn")


def email(r: random.Random) -> str:
    style = r.random()
    if style < 0.12:
        return r.choice(_IDN)
    local = r.choice(_LOCAL)
    if r.random() < 0.3:
        local += str(r.randint(1, 9999))
    address = f"{local}@{r.choice(_DOMAINS)}"
    if style < 0.2:
        return address.upper() if r.random() < 0.3 else address.replace("@", "＠")  # full-width at sign
    return address


def ipv4(r: random.Random) -> str | tuple[str, str, str]:
    style = r.random()
    if style < 0.3:
        a = f"{r.choice((10, 192, 172))}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    else:
        a = f"{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(0, 255)}"
    if r.random() < 0.15:
        return "", a, f":{r.choice((80, 443, 8080, 3306, 22))}"
    return a


def ipv6(r: random.Random) -> str | tuple[str, str, str]:
    groups = ["2001", "0db8" if r.random() < 0.3 else f"{r.randint(0x2400, 0x2a0f):x}"]
    groups += [f"{r.randint(0, 0xffff):x}" for _ in range(6)]
    style = r.random()
    if style < 0.25:
        text = ":".join(g.zfill(4) for g in groups)
    elif style < 0.55:
        text = ":".join(groups[:3]) + "::" + ":".join(groups[-2:])
    elif style < 0.65:
        text = ":".join(groups[:2]) + "::" + groups[-1]
    elif style < 0.75:
        text = "fe80::" + ":".join(groups[-4:]) + r.choice(("", "%eth0", "%en0"))
    elif style < 0.85:  # a URL's host with its port: the brackets and port are not the value
        return "http://[", ":".join(groups[:3]) + "::" + groups[-1], f"]:{r.choice((443, 8080))}/"
    elif style < 0.92:
        text = f"::ffff:{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    else:
        text = ":".join(groups).upper()
    return text


#: Each makes a value, or (text before it, the value, text after it) when its writing
#: wraps it in characters that are not personal (a URL's brackets, a port).
VALUE_MAKERS: dict[str, Callable[[random.Random], str | tuple[str, str, str]]] = {
    "phone_cn_mobile": cn_mobile, "phone_cn_fixed": cn_fixed, "phone_intl": intl_phone, "cn_id": cn_id,
    "cn_id_15": cn_id_15, "cn_passport": cn_passport, "hk_id": hk_id, "bank_card": bank_card, "email": email,
    "ipv4": ipv4, "ipv6": ipv6,
}


# -- look-alikes --------------------------------------------------------------------------

def lookalike(r: random.Random, kind: str) -> str:
    y, mo, d = r.randint(2019, 2026), r.randint(1, 12), r.randint(1, 28)
    h, mi, s = r.randint(0, 23), r.randint(0, 59), r.randint(0, 59)
    if kind == "order_no":
        return r.choice((
            f"{y}{mo:02d}{d:02d}{_digits(r, r.choice((8, 10)))}",  # date-based, 16-18 digits
            r.choice("1234") + _digits(r, 18),  # marketplace order number, 19 digits
            f"{y % 100:02d}{mo:02d}{d:02d}-{_digits(r, 15)}",
            r.choice("23") + _digits(r, 11),  # 12 digits
            f"DD{y}{mo:02d}{d:02d}{_digits(r, 6)}",
            f"E{y}{mo:02d}{d:02d}{_digits(r, 9)}",
        ))
    if kind == "tracking_no":
        return r.choice((
            "SF" + r.choice("1234") + _digits(r, 12), "YT" + _digits(r, 13), "75" + _digits(r, 12),
            "77" + _digits(r, 13), "JDV" + _digits(r, 12), "E" + r.choice("ABCMSL") + _digits(r, 9) + "CN",
            "1Z" + _digits(r, 3) + "A" + r.choice("ABCDEFG") + _digits(r, 10), r.choice("123456789") + _digits(r, 11),
        ))
    if kind == "timestamp":
        return r.choice((
            str(r.randint(1_600_000_000, 1_790_000_000)), str(r.randint(1_600_000_000_000, 1_790_000_000_000)),
            f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}", f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}+08:00",
            f"{y}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d}", f"{h:02d}:{mi:02d}:{s:02d}",
            f"{y}{mo:02d}{d:02d} {h:02d}:{mi:02d}",
        ))
    if kind == "date":
        return r.choice((f"{y}-{mo:02d}-{d:02d}", f"{y}/{mo}/{d}", f"{y}年{mo}月{d}日", f"{mo}/{d}/{y}",
                         f"{d:02d}.{mo:02d}.{y}", f"{y}.{mo:02d}.{d:02d}"))
    if kind == "price":
        amount = r.randint(1, 99999)
        cents = r.randint(0, 99)
        return r.choice((f"¥{amount:,}.{cents:02d}", f"{amount}元", f"${amount:,}.{cents:02d}", f"RMB {amount:,}",
                         f"€{amount}.{cents:02d}", f"{amount}.{cents:02d}元", f"￥{amount}"))
    if kind == "sku":
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        return r.choice((f"SKU-{_digits(r, 6)}-{r.choice(('XL', 'M', 'S', 'L'))}", "100" + _digits(r, r.randint(9, 11)),
                         f"{r.choice(letters)}{r.choice(letters)}-{_digits(r, 5)}",
                         f"item {r.choice('123456789')}{_digits(r, 11)}",  # numeric ids have no leading zero
                         f"ISBN 978-7-{_digits(r, 3)}-{_digits(r, 5)}-{r.randint(0, 9)}"))
    if kind == "version":
        return r.choice((f"v{r.randint(1, 12)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
                         f"{r.randint(100, 131)}.0.{r.randint(4000, 6999)}.{r.randint(10, 250)}",
                         f"10.0.{r.randint(17000, 22631)}.{r.randint(100, 4000)}",
                         f"iOS {r.randint(12, 18)}.{r.randint(0, 7)}.{r.randint(1, 3)}",
                         f"8.0.{r.randint(30, 55)}", f"v{r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}."
                         f"{r.randint(1, 99)}", f"版本 {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}."
                         f"{r.randint(1, 99)}"))
    if kind == "coordinates":
        lat, lng = r.uniform(18, 50), r.uniform(75, 134)
        return r.choice((f"{lat:.4f}, {lng:.4f}", f"{lat:.4f}°N {lng:.4f}°E", f"lat {lat:.6f} lng {lng:.6f}",
                         f"({lng:.6f},{lat:.6f})"))
    if kind == "transaction_id":
        return r.choice((f"4200{_digits(r, 6)}{y}{mo:02d}{d:02d}{_digits(r, 10)}",
                         f"{y}{mo:02d}{d:02d}2200{_digits(r, 16)}", f"TXN{_digits(r, 14)}", _digits(r, 20)))
    if kind == "flight_train":
        return r.choice((f"G{r.randint(1, 9999)}", f"D{r.randint(1, 9999)}", f"{r.choice(('CA', 'MU', 'CZ', 'HU'))}"
                         f"{r.randint(100, 9999)}", f"K{r.randint(1, 9999)}次"))
    raise ValueError(kind)


# -- the texts ----------------------------------------------------------------------------

_CONTEXT = {
    "phone_cn_mobile": ("手机", "电话", "我的手机号是", "联系方式：", "call me at", "my number is", "tel:", "打",
                        "手机号码"),
    "phone_cn_fixed": ("座机", "办公室电话", "公司电话：", "office line", "tel", "请打", "固话"),
    "phone_intl": ("my phone", "call", "WhatsApp", "reach me on", "国外号码", "电话", "mobile:"),
    "cn_id": ("身份证号", "身份证：", "ID number", "证件号码", "my ID is", "实名认证用的"),
    "cn_id_15": ("老身份证号", "身份证", "旧证件号码", "old ID card"),
    "cn_passport": ("护照号", "passport no.", "护照：", "passport", "证件"),
    "hk_id": ("香港身份证", "HKID", "HK ID card", "身份證號碼", "ID"),
    "bank_card": ("银行卡号", "卡号：", "card number", "退款到这张卡", "refund to card", "我的卡"),
    "email": ("邮箱", "email:", "发到", "contact", "mail me at", "电子邮件"),
    "ipv4": ("IP", "IP地址", "from", "登录IP：", "server", "我的IP是"),
    "ipv6": ("IPv6", "IP", "地址", "from", "client address"),
}
_OPENERS = ("", "", "你好，", "客服你好，", "Hi, ", "投诉：", "Hello team, ", "急！", "再次反馈：", "Dear support, ")
_MIDDLES = ("，麻烦尽快处理", "，谢谢", " thanks", "。", "，一直没人联系我", " please call back", "，推荐结果完全不对",
            " — the recommendations are useless", "，物流太慢了", "", " 谢谢！", "，别再推送了")
_LOOK_CONTEXT = {
    "order_no": ("订单号", "order", "订单", "order #"), "tracking_no": ("快递单号", "tracking", "运单号"),
    "timestamp": ("时间", "at", "下单时间", "time"), "date": ("日期", "on", "于"), "price": ("价格", "paid", "花了"),
    "sku": ("商品", "SKU", "item"), "version": ("app", "版本", "Chrome", "version"),
    "coordinates": ("定位", "location", "坐标"), "transaction_id": ("交易单号", "transaction", "支付流水"),
    "flight_train": ("航班", "车次", "flight", "train"),
}


def _join(r: random.Random, context: str, value: str) -> str:
    """Context and value, sometimes with no space between (as Chinese text is written)."""
    if not context:
        return value
    if context.endswith(("：", ":")):
        return context + r.choice(("", " ")) + value
    if context[-1].isascii():  # English is written with a space or a colon after the word
        return context + r.choice((" ", ": ", ":", " ")) + value
    return context + r.choice(("", "", " ", "：", ": ")) + value


def corpus(n: int, seed: int = 2027) -> list[Text]:
    """``n`` texts, the kinds of personal value taken in turn, look-alikes at random."""
    r = random.Random(seed)
    kinds = list(KINDS)
    texts: list[Text] = []
    for i in range(n):
        parts: list[tuple[str, str | None, bool]] = [(r.choice(_OPENERS), None, False)]
        chosen = [kinds[i % len(kinds)]]
        if r.random() < 0.3:
            chosen.append(r.choice(kinds))
        items: list[tuple[str, str | tuple[str, str, str], bool]] = [(k, VALUE_MAKERS[k](r), True) for k in chosen]
        for _ in range(r.choice((0, 1, 1, 1, 2))):
            k = r.choice(LOOKALIKES)
            items.append((k, lookalike(r, k), False))
        r.shuffle(items)
        for j, (kind, made, personal) in enumerate(items):
            before, value, after = made if isinstance(made, tuple) else ("", made, "")
            context = r.choice(_CONTEXT[kind] if personal else _LOOK_CONTEXT[kind]) if r.random() < 0.85 else ""
            joined = _join(r, context, before + value)
            head = joined[: len(joined) - len(value)]
            if j:
                parts.append((r.choice(("，", ", ", "; ", " ", "。", "，还有")), None, False))
            parts.append((head, None, False))
            parts.append((value, kind, personal))
            parts.append((after, None, False))
        parts.append((r.choice(_MIDDLES), None, False))
        text, values, looks, pos = "", [], [], 0
        for piece, kind, personal in parts:
            if kind is not None:
                (values if personal else looks).append(Span(kind, piece, pos, pos + len(piece)))
            text += piece
            pos += len(piece)
        texts.append(Text(text, tuple(values), tuple(looks)))
    return texts
