"""Remove personal data from events before anything is stored.

Found in free text (see :mod:`collectors.pii` for how): e-mail addresses (also
internationalised ones), phone numbers of every country (libphonenumber's "valid"
numbers: mainland mobile and fixed-line numbers in every usual writing, and national
writings of the ``phone_regions``), PRC resident identity numbers (18 digits, check
digit verified; the old 15-digit ones by their date of birth), mainland passport
numbers, Hong Kong identity card numbers (check digit verified), bank card numbers
(Luhn and issuer ranges), IPv4 and IPv6 addresses. Each becomes a typed placeholder,
so a retraining set still shows that *something* was there; a kind listed in
``pseudonymise`` becomes a keyed hash of its value instead, the same for the same
value wherever it is written. Configured fields are replaced whole. A recogniser the
user brings (an NER model for names and addresses) can add spans of its own kinds.

>>> r = Redactor()
>>> r.redact_text("mail li.wei@example.cn or call 138 0013 8000 from 10.1.2.3")
('mail [EMAIL] or call [PHONE] from [IPV4]', {'email': 1, 'phone': 1, 'ipv4': 1})
>>> r.redact_text("card 4111 1111 1111 1111, order 4111 1111 1111 1112")[0]
'card [BANK_CARD], order 4111 1111 1111 1112'
>>> r.redact_text("ID 11010519491231002X, 座机(021)34818226")[0]
'ID [CN_ID], 座机[PHONE]'
>>> p = Redactor(pseudonymise=["phone"], secret=b"k")
>>> p.redact_text("call 138 0013 8000")[0] == p.redact_text("call +86-13800138000")[0]
True
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from collectors.pii import (
    DEFAULT_PHONE_REGIONS,
    FINDERS,
    PHONE_REGIONS,
    PRIORITY,
    Found,
    cn_id_valid,
    find_all,
    hk_id_valid,
    luhn_valid,
    phone_finder,
)
from common.errors import ConfigError

__all__ = ["DEFAULT_PHONE_REGIONS", "FIELD_PLACEHOLDER", "KINDS", "PHONE_REGIONS", "PLACEHOLDERS", "Recognizer",
           "Redactor", "cn_id_valid", "hk_id_valid", "load_recognizer", "luhn_valid"]

log = logging.getLogger(__name__)

#: The kinds found by our own finders; each is a label of model_monitor_redactions_total.
KINDS = ("email", "cn_id", "bank_card", "phone", "ipv4", "ipv6", "cn_passport", "hk_id")
PLACEHOLDERS = {
    "email": "[EMAIL]",
    "cn_id": "[CN_ID]",
    "bank_card": "[BANK_CARD]",
    "phone": "[PHONE]",
    "ipv4": "[IPV4]",
    "ipv6": "[IPV6]",
    "cn_passport": "[CN_PASSPORT]",
    "hk_id": "[HK_ID]",
}
FIELD_PLACEHOLDER = "[REDACTED]"
#: Environment variable holding the pseudonymisation key (``redact.secret``).
SECRET_ENV = "MONITOR_REDACT_SECRET"
#: Fields never rewritten: closed vocabularies, and the identifiers that samples are
#: keyed by (rewriting an id could make two samples one). Keep personal data out of ids.
_KEPT_FIELDS = frozenset({"type", "kind", "status", "ts", "event_id", "request_id"})
#: A placeholder or pseudonym already in a text: never searched again (redaction is idempotent).
_WRITTEN = re.compile(r"\[[A-Z][A-Z0-9_]*(?::[0-9a-f]{10})?\]")
#: Kinds a recogniser may report: short lower-case names (they become metric labels).
_USER_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
assert set(PRIORITY) == set(KINDS) == set(PLACEHOLDERS)


@runtime_checkable
class Recognizer(Protocol):
    """A recogniser the user brings (``redact.recognizer``): an NER model, a dictionary.

    ``find`` returns ``(start, end, kind)`` for each personal value in ``text``;
    ``kind`` is a short lower-case name (``"person"``, ``"address"``) that becomes the
    placeholder (``[PERSON]``) and a label of ``model_monitor_redactions_total``. Spans
    that overlap a value our own finders took are dropped. It is called once per
    string stored, from one thread. If it raises, that string is stored as
    ``[REDACTED]`` (counted as ``field``) and the error is logged once.
    """

    def find(self, text: str) -> Iterable[tuple[int, int, str]]: ...


def load_recognizer(spec: str) -> Recognizer:
    """Import ``"package.module:factory"`` and call the factory with no arguments.

    >>> load_recognizer("collectors.redact:_NoRecognizer").find("Li Wei")
    []
    >>> load_recognizer("collectors.redact")
    Traceback (most recent call last):
    ...
    common.errors.ConfigError: redact.recognizer must be "package.module:factory", got 'collectors.redact'
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f'redact.recognizer must be "package.module:factory", got {spec!r}')
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"redact.recognizer {spec!r} cannot be loaded: {exc}") from None
    try:
        recognizer = factory()
    except Exception as exc:
        raise ConfigError(f"redact.recognizer {spec!r} failed to start: {exc!r}") from None
    if not isinstance(recognizer, Recognizer):
        raise ConfigError(f"redact.recognizer {spec!r} returned {type(recognizer).__name__}, which has no find(text)")
    return recognizer


class _NoRecognizer:
    """Finds nothing: the shape of a recogniser, for the docs and tests."""

    def find(self, text: str) -> list[tuple[int, int, str]]:
        return []


class Redactor:
    """Rewrites text and events so that no configured kind of personal data survives.

    ``kinds`` chooses the finders (all by default); ``fields`` names event fields
    replaced whole, as dotted paths (``"features.email"``, ``"segment.ip"``);
    ``scan`` names the parts of an event whose strings are searched (``"*"``: every
    field but the identifiers and closed vocabularies); ``pseudonymise`` names kinds
    replaced by ``[KIND:hash]`` (HMAC-SHA256 of the value's normal form under
    ``secret``) instead of a placeholder; ``recognizer`` adds spans of its own kinds.
    """

    def __init__(self, kinds: Iterable[str] = KINDS, fields: Iterable[str] = (), *,
                 scan: Iterable[str] = ("*",), pseudonymise: Iterable[str] = (), secret: bytes | None = None,
                 phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
                 recognizer: Recognizer | None = None) -> None:
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown redaction kinds {sorted(unknown)}; choose from {list(KINDS)}")
        self.fields = tuple(fields)
        self._field_paths = [tuple(f.split(".")) for f in self.fields]
        self._scan = _path_tree(scan)
        self.pseudonymise = frozenset(pseudonymise)
        if self.pseudonymise and not secret:
            raise ValueError("pseudonymising needs a secret (redact.secret, MONITOR_REDACT_SECRET or "
                             "redact.secret_file)")
        self._secret = secret or b""
        self._finders = FINDERS if tuple(phone_regions) == DEFAULT_PHONE_REGIONS else {
            **FINDERS, "phone": phone_finder(phone_regions)}
        self.recognizer = recognizer
        self._recognizer_failed = False

    @classmethod
    def from_settings(cls, settings: Any) -> Redactor:
        """A redactor from the ``[redact]`` settings (``monitor.config.RedactSettings``).

        The secret is read here, from ``redact.secret`` (or ``MONITOR_REDACT_SECRET``)
        or else ``redact.secret_file``; a recogniser is imported here.
        """
        secret: bytes | None = settings.secret.encode() if settings.secret else None
        if secret is None and settings.secret_file:
            try:
                secret = Path(settings.secret_file).read_bytes().strip()
            except OSError as exc:
                raise ConfigError(f"redact.secret_file cannot be read: {exc.strerror}") from None
        recognizer = load_recognizer(settings.recognizer) if settings.recognizer else None
        return cls(settings.kinds, settings.fields, scan=settings.scan, pseudonymise=settings.pseudonymise,
                   secret=secret, phone_regions=settings.phone_regions, recognizer=recognizer)

    def find(self, text: str) -> list[Found]:
        """The personal values in ``text`` that this redactor replaces, in text order."""
        written = [(m.start(), m.end()) for m in _WRITTEN.finditer(text)] if "[" in text else []
        found = find_all(text, self.kinds, self._finders, written)
        if self.recognizer is not None and text:
            taken = written + [(f.start, f.end) for f in found]
            try:
                spans = list(self.recognizer.find(text))
            except Exception:
                # Fail closed: a string the recogniser could not read is not stored at all.
                if not self._recognizer_failed:
                    log.exception("redact.recognizer failed; strings it cannot read are stored as %s",
                                  FIELD_PLACEHOLDER)
                    self._recognizer_failed = True
                return [Found("field", 0, len(text), "")]
            for start, end, kind in spans:
                if not 0 <= start < end <= len(text) or any(start < e and s < end for s, e in taken):
                    continue
                name = kind if _USER_KIND.fullmatch(kind or "") else "other"
                taken.append((start, end))
                found.append(Found(name, start, end, " ".join(text[start:end].lower().split())))
            found.sort(key=lambda f: f.start)
        return found

    def replacement(self, found: Found) -> str:
        """The placeholder of ``found``, or its pseudonym if its kind is pseudonymised.

        >>> r = Redactor(pseudonymise=["email"], secret=b"k")
        >>> r.replacement(Found("email", 0, 3, "li.wei@example.cn"))
        '[EMAIL:af67acb087]'
        >>> r.replacement(Found("phone", 0, 3, "+8613800138000"))
        '[PHONE]'
        """
        if found.kind == "field":
            return FIELD_PLACEHOLDER
        label = PLACEHOLDERS.get(found.kind) or f"[{found.kind.upper()}]"
        if found.kind not in self.pseudonymise:
            return label
        digest = hmac.new(self._secret, f"{found.kind}:{found.normal}".encode(), hashlib.sha256).hexdigest()
        return f"{label[:-1]}:{digest[:10]}]"

    def redact_text(self, text: str) -> tuple[str, dict[str, int]]:
        """Return the text with personal data replaced, and counts by kind."""
        counts: dict[str, int] = {}
        found = self.find(text)
        if not found:
            return text, counts
        pieces, pos = [], 0
        for f in found:
            pieces += [text[pos:f.start], self.replacement(f)]
            pos = f.end
            counts[f.kind] = counts.get(f.kind, 0) + 1
        pieces.append(text[pos:])
        return "".join(pieces), counts

    def redact_event(self, event: dict[str, Any], counts: dict[str, int] | None = None) -> dict[str, Any]:
        """A redacted deep copy of ``event``; the original is not changed.

        ``counts`` (if given) is increased by kind, ``"field"`` for whole fields.
        """
        tally: dict[str, int] = counts if counts is not None else {}
        scan = self._scan
        out = {k: (_copy(v) if k in _KEPT_FIELDS or (scan is not None and k not in scan)
                   else self._redact_value(v, tally, None if scan is None else scan[k]))
               for k, v in event.items()}
        for path in self._field_paths:
            parent: Any = out
            for part in path[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and parent.get(path[-1]) is not None:
                parent[path[-1]] = FIELD_PLACEHOLDER
                tally["field"] = tally.get("field", 0) + 1
        return out

    def _redact_key(self, key: Any, tally: dict[str, int], taken: dict[str, Any]) -> Any:
        if not isinstance(key, str):
            return key
        text, found = self.redact_text(key)
        if not found:
            return key
        for kind, n in found.items():
            tally[kind] = tally.get(kind, 0) + n
        return _unique(text, taken)  # two keys redacted alike must not overwrite each other

    def _redact_value(self, value: Any, tally: dict[str, int], scan: dict[str, Any] | None) -> Any:
        """``value`` copied, its strings redacted where ``scan`` (None: everywhere) says."""
        if isinstance(value, str):
            if scan:  # a path goes deeper than this string: it is not one of the scanned parts
                return value
            text, found = self.redact_text(value)
            for kind, n in found.items():
                tally[kind] = tally.get(kind, 0) + n
            return text
        if isinstance(value, dict):
            if not scan:  # keys too: a feature or segment may be named by what a user typed
                out: dict[str, Any] = {}
                for k, v in value.items():
                    key = self._redact_key(k, tally, out)
                    out[key] = self._redact_value(v, tally, None)
                return out
            return {k: (self._redact_value(v, tally, scan[k] or None) if k in scan else _copy(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_value(v, tally, scan) for v in value]
        return value


def _unique(key: str, taken: dict[str, Any]) -> str:
    """``key``, or ``key#2``, ``key#3``... if a redacted key before it already took it."""
    if key not in taken:
        return key
    n = 2
    while f"{key}#{n}" in taken:
        n += 1
    return f"{key}#{n}"


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _path_tree(paths: Iterable[str]) -> dict[str, Any] | None:
    """Dotted paths as a tree (an empty dict: everything below); None for ``"*"``.

    >>> _path_tree(["comment", "features.query", "features.note"])
    {'comment': {}, 'features': {'query': {}, 'note': {}}}
    >>> _path_tree(["*"]) is None
    True
    """
    tree: dict[str, Any] = {}
    for path in paths:
        if path == "*":
            return None
        node = tree
        parts = path.split(".")
        for i, part in enumerate(parts):
            if part in node and not node[part]:
                break  # a shorter path already takes everything below
            node = node.setdefault(part, {})
            if i == len(parts) - 1:
                node.clear()
    return tree
