"""Remove personal data from events before anything is stored.

Detectors in free text: e-mail addresses, phone numbers (international ``+``
numbers, mainland China mobile numbers, and dashed or dotted national numbers),
PRC resident identity numbers (checksum verified), bank card numbers (Luhn
verified) and IPv4 addresses. Each match becomes a typed placeholder, so a retraining
set still shows that *something* was there. Configured fields are replaced whole.

>>> r = Redactor()
>>> r.redact_text("mail li.wei@example.cn or call 138 0013 8000 from 10.1.2.3")
('mail [EMAIL] or call [PHONE] from [IPV4]', {'email': 1, 'phone': 1, 'ipv4': 1})
>>> r.redact_text("card 4111 1111 1111 1111, order 4111 1111 1111 1112")[0]
'card [BANK_CARD], order 4111 1111 1111 1112'
>>> r.redact_text("ID 11010519491231002X")[0]
'ID [CN_ID]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

KINDS = ("email", "cn_id", "bank_card", "phone", "ipv4")
PLACEHOLDERS = {
    "email": "[EMAIL]",
    "cn_id": "[CN_ID]",
    "bank_card": "[BANK_CARD]",
    "phone": "[PHONE]",
    "ipv4": "[IPV4]",
}
FIELD_PLACEHOLDER = "[REDACTED]"
#: Fields never rewritten: closed vocabularies, and the identifiers that samples are
#: keyed by (rewriting an id could make two samples one). Keep personal data out of ids.
_KEPT_FIELDS = frozenset({"type", "kind", "status", "ts", "event_id", "request_id"})

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# One pass per kind, in this order: the checked, specific patterns (identity number,
# card) before the looser phone patterns. Placeholders hold no digits, so a later
# pass never matches what an earlier one wrote, and a run that fails one kind's check
# is still seen by the next kind's pattern.
_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "cn_id": r"(?<![\dA-Za-z])\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\dA-Za-z])",
    "bank_card": r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])",
    "phone": (
        r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"  # CN mobile
        r"|(?<![\w+])\+\d{1,3}(?:[ -]|[ -]?\()\d{1,4}\)?(?:[ .-]?\(?\d{1,4}\)?){1,4}(?!\d)"  # +44 20 ...
        r"|(?<![\d(])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\d)"  # (555) 123-4567
    ),
    # An address may end a sentence ("... is 10.0.0.7."), but not run into more digits.
    "ipv4": rf"(?<!\d)(?<!\d\.){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)",
}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


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


def _card_prefix(found: str) -> int:
    """End of the longest Luhn-valid card number (13+ digits) that ``found`` starts with,
    cut at a separator; 0 if there is none."""
    for cut in sorted((m.start() for m in re.finditer(r"[ -]", found)), reverse=True):
        digits = re.sub(r"[ -]", "", found[:cut])
        if len(digits) >= 13 and luhn_valid(digits):
            return cut
    return 0


_VALIDATORS = {
    "cn_id": cn_id_valid,
    "bank_card": lambda s: luhn_valid(re.sub(r"[ -]", "", s)),
    "phone": lambda s: 7 <= sum(c.isdigit() for c in s) <= 15,
}


class Redactor:
    """Rewrites text and events so that no configured kind of personal data survives.

    ``kinds`` chooses the detectors (all by default); ``fields`` names event fields
    replaced whole, as dotted paths (``"features.email"``, ``"segment.ip"``).
    """

    def __init__(self, kinds: Iterable[str] = KINDS, fields: Iterable[str] = ()) -> None:
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown redaction kinds {sorted(unknown)}; choose from {list(KINDS)}")
        self.fields = tuple(fields)
        self._field_paths = [tuple(f.split(".")) for f in self.fields]
        self._passes = [(k, re.compile(_PATTERNS[k])) for k in KINDS if k in self.kinds]

    def redact_text(self, text: str) -> tuple[str, dict[str, int]]:
        """Return the text with personal data replaced, and counts by kind."""
        counts: dict[str, int] = {}
        for kind, pattern in self._passes:
            check = _VALIDATORS.get(kind)

            def replace(match: re.Match[str], kind: str = kind, check: Any = check) -> str:
                found = match.group()
                if check is None or check(found):
                    replacement = PLACEHOLDERS[kind]
                elif kind == "bank_card" and (cut := _card_prefix(found)):
                    replacement = PLACEHOLDERS[kind] + found[cut:]  # "card ... 1111 123": the CVV stays
                else:
                    return found
                counts[kind] = counts.get(kind, 0) + 1
                return replacement

            text = pattern.sub(replace, text)
        return text, counts

    def redact_event(self, event: dict[str, Any], counts: dict[str, int] | None = None) -> dict[str, Any]:
        """A redacted deep copy of ``event``; the original is not changed.

        ``counts`` (if given) is increased by kind, ``"field"`` for whole fields.
        """
        tally: dict[str, int] = counts if counts is not None else {}
        out = {k: (v if k in _KEPT_FIELDS else self._redact_value(v, tally)) for k, v in event.items()}
        for path in self._field_paths:
            parent: Any = out
            for part in path[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and parent.get(path[-1]) is not None:
                parent[path[-1]] = FIELD_PLACEHOLDER
                tally["field"] = tally.get("field", 0) + 1
        return out

    def _redact_value(self, value: Any, tally: dict[str, int]) -> Any:
        if isinstance(value, str):
            text, found = self.redact_text(value)
            for kind, n in found.items():
                tally[kind] = tally.get(kind, 0) + n
            return text
        if isinstance(value, dict):
            return {k: self._redact_value(v, tally) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_value(v, tally) for v in value]
        return value
