"""The redactors measured: ours, and Presidio's analyzer as a team would set it up here.

Each is a function from a text to the character spans it would replace. Presidio
(``presidio-analyzer``) runs its pattern recognisers behind its own ``AnalyzerEngine``
with the ``NoOpNlpEngine`` (no spaCy model can be downloaded here, so no NER and no
context words from the text): the predefined e-mail, phone (libphonenumber, given
the same regions as ours), credit-card and IP recognisers, plus the Chinese
recognisers a user would add, since Presidio has none: mainland mobile numbers,
fixed-line numbers with an area code, 18- and 15-digit resident identity numbers
(with a date of birth; the 18-digit ones checked by their check digit), mainland
passports, Hong Kong identity cards (check digit verified) and UnionPay cards of
19 digits (Luhn verified; Presidio's card pattern stops at 17), as regular
expressions with boundaries on both sides, the way Presidio's own country
recognisers are written.
"""

from __future__ import annotations

from collections.abc import Callable

from collectors.pii import DEFAULT_PHONE_REGIONS
from collectors.redact import Redactor

Spans = list[tuple[int, int]]
Peer = Callable[[str], Spans]


def ours() -> Peer:
    redactor = Redactor()

    def spans(text: str) -> Spans:
        return [(f.start, f.end) for f in redactor.find(text)]

    return spans


def presidio() -> Peer:
    import tldextract  # noqa: PLC0415
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry  # noqa: PLC0415
    from presidio_analyzer.nlp_engine import NoOpNlpEngine  # noqa: PLC0415
    from presidio_analyzer.predefined_recognizers import (  # noqa: PLC0415
        CreditCardRecognizer,
        EmailRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    # Presidio's e-mail check asks tldextract for the domain, which would fetch the public
    # suffix list over the network first; there is none here: use the snapshot it ships.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

    class CnIdRecognizer(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool | None:
            if len(pattern_text) != 18:
                return None  # the 15-digit number has no check digit
            return "10X98765432"[sum(int(c) * w for c, w in zip(pattern_text, weights, strict=False)) % 11] == \
                pattern_text[17].upper()

    class UnionPayRecognizer(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            digits = [int(c) for c in pattern_text if c.isdigit()]
            total = sum(d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d) for i, d in enumerate(reversed(digits)))
            return total % 10 == 0

    class HkIdRecognizer(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            core = "".join(c for c in pattern_text if c.isalnum())
            letters, digits, check = core[:-7], core[-7:-1], core[-1]
            values = ([36] if len(letters) == 1 else []) + [ord(c) - 55 for c in letters] + [int(c) for c in digits]
            rest = sum(v * w for v, w in zip(values, (9, 8, 7, 6, 5, 4, 3, 2), strict=False)) % 11
            return check == ("0" if rest == 0 else "A" if rest == 1 else str(11 - rest))

    registry = RecognizerRegistry(supported_languages=["en"])
    for r in (EmailRecognizer(), CreditCardRecognizer(), IpRecognizer(),
              PhoneRecognizer(supported_regions=DEFAULT_PHONE_REGIONS)):
        registry.add_recognizer(r)
    # Written as a careful user writes them: boundaries on both sides, dates and check
    # digits where the number has them (the usual published regular expressions).
    chinese = {
        "CN_MOBILE": [Pattern("cn mobile", r"(?<!\d)(?:(?:\+|00)?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)", 0.5)],
        "CN_FIXED": [Pattern("cn fixed line", r"(?<![\dA-Za-z])(?:\(0\d{2,3}\)|0\d{2,3}[ -]?)\d{7,8}(?!\d)", 0.4)],
        "CN_ID": [Pattern("cn id 18", r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])"
                                      r"(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\dA-Za-z])", 0.5),
                  Pattern("cn id 15", r"(?<![\dA-Za-z])[1-9]\d{7}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}"
                                      r"(?![\dA-Za-z])", 0.3)],
        "CN_PASSPORT": [Pattern("cn passport", r"(?<![A-Za-z0-9])(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7})(?![A-Za-z0-9])", 0.4)],
        # Presidio's card pattern takes at most 17 digits: mainland debit cards have 19.
        "CN_BANK_CARD": [Pattern("unionpay", r"(?<![\dA-Za-z])62\d{2}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?(?!\d)", 0.4)],
        "HK_ID": [Pattern("hk id", r"(?<![A-Za-z0-9])[A-Z]{1,2}\d{6}\s?[(（]?[0-9A][)）]?(?![A-Za-z0-9])", 0.4)],
    }
    for entity, patterns in chinese.items():
        cls = {"CN_ID": CnIdRecognizer, "HK_ID": HkIdRecognizer, "CN_BANK_CARD": UnionPayRecognizer}.get(
            entity, PatternRecognizer)
        registry.add_recognizer(cls(supported_entity=entity, patterns=patterns, supported_language="en"))
    engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])

    def spans(text: str) -> Spans:
        return [(r.start, r.end) for r in analyzer.analyze(text, language="en", score_threshold=0.0)]

    return spans


PEERS: dict[str, Callable[[], Peer]] = {"ours": ours, "presidio": presidio}
