"""PII redaction benchmark: ``benchmarks/run pii [--texts N] [--seed S] [--peers ours,presidio] [--no-write]``.

Every redactor reads the same seeded corpus (``corpus.py``: bilingual feedback text,
personal values of 11 kinds in the ways people write them, and look-alikes that must
survive) in one run. A personal value counts as redacted when every letter and
digit of it lies inside a span the redactor replaces; a look-alike counts as kept
when no character of it does. Texts per second is the redactor's own time per text
(finding the spans), best of three passes, on one core.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.pii.corpus import KINDS, LOOKALIKES, Text, corpus
from benchmarks.pii.peers import PEERS, Peer, Spans
from benchmarks.results import replace_section

ROOT = Path(__file__).resolve().parents[2]
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
TITLE = "## Personal data redaction"
RECALL_TARGET, KEPT_TARGET = 0.995, 0.98


class Score:
    def __init__(self) -> None:
        self.values: Counter[str] = Counter()
        self.caught: Counter[str] = Counter()
        self.looks: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()
        self.misses: list[tuple[str, str, str]] = []
        self.damaged: list[tuple[str, str, str]] = []
        self.texts_per_s = 0.0


def covered(spans: Spans, start: int, end: int, text: str) -> bool:
    """Every letter and digit of ``text[start:end]`` inside one of ``spans``."""
    return all(any(s <= i < e for s, e in spans) for i in range(start, end) if text[i].isalnum())


def touched(spans: Spans, start: int, end: int) -> bool:
    return any(s < end and start < e for s, e in spans)


def score(peer: Peer, texts: list[Text]) -> Score:
    out = Score()
    best = float("inf")
    found: list[Spans] = []
    for _ in range(3):
        started = time.process_time()
        found = [peer(t.text) for t in texts]
        best = min(best, time.process_time() - started)
    out.texts_per_s = len(texts) / best if best else float("inf")
    for t, spans in zip(texts, found, strict=True):
        for v in t.values:
            out.values[v.kind] += 1
            if covered(spans, v.start, v.end, t.text):
                out.caught[v.kind] += 1
            else:
                out.misses.append((v.kind, v.value, t.text))
        for lk in t.lookalikes:
            out.looks[lk.kind] += 1
            if touched(spans, lk.start, lk.end):
                out.damaged.append((lk.kind, lk.value, t.text))
            else:
                out.kept[lk.kind] += 1
    return out


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "-"


def render(scores: dict[str, Score], command: str, n_texts: int, seed: int, seconds: float) -> str:
    names = list(scores)
    first = scores[names[0]]
    lines = [TITLE, "",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} ({platform.python_implementation()} "
             f"{platform.python_version()}), in {seconds:.0f} s, by:", "", "```sh", command, "```", "",
             f"{n_texts:,} texts (seed {seed}), {sum(first.values.values()):,} personal values, "
             f"{sum(first.looks.values()):,} look-alikes. A value is redacted when every letter and digit of it "
             "is inside a replaced span; a look-alike is kept when none of it is. See benchmarks/README.md.", "",
             "| kind | values | " + " | ".join(f"{n} recall" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for kind in KINDS:
        lines.append(f"| {kind} | {first.values[kind]:,} | "
                     + " | ".join(pct(scores[n].caught[kind], scores[n].values[kind]) for n in names) + " |")
    lines.append("| **all kinds** | " + f"{sum(first.values.values()):,} | " + " | ".join(
        f"**{pct(sum(scores[n].caught.values()), sum(scores[n].values.values()))}**" for n in names) + " |")
    lines += ["", "| look-alike | texts | " + " | ".join(f"{n} kept" for n in names) + " |",
              "|---|---|" + "---|" * len(names)]
    for kind in LOOKALIKES:
        lines.append(f"| {kind} | {first.looks[kind]:,} | "
                     + " | ".join(pct(scores[n].kept[kind], scores[n].looks[kind]) for n in names) + " |")
    lines.append("| **all look-alikes** | " + f"{sum(first.looks.values()):,} | " + " | ".join(
        f"**{pct(sum(scores[n].kept.values()), sum(scores[n].looks.values()))}**" for n in names) + " |")
    lines += ["", "| redactor | texts/s (one core) |", "|---|---|"]
    lines += [f"| {n} | {scores[n].texts_per_s:,.0f} |" for n in names]
    ours = scores.get("ours")
    if ours is not None:
        worst = min(KINDS, key=lambda k: ours.caught[k] / max(1, ours.values[k]))
        worst_recall = ours.caught[worst] / max(1, ours.values[worst])
        kept = sum(ours.kept.values()) / max(1, sum(ours.looks.values()))
        lines += ["", f"- Recall at least {100 * RECALL_TARGET:.1f}% for every kind: lowest is {worst} at "
                  f"{100 * worst_recall:.1f}% ({'met' if worst_recall >= RECALL_TARGET else 'NOT met'}).",
                  f"- At least {100 * KEPT_TARGET:.0f}% of the look-alikes kept: {100 * kept:.1f}% "
                  f"({'met' if kept >= KEPT_TARGET else 'NOT met'})."]
        for name in names[1:]:
            peer = scores[name]
            better = [k for k in KINDS if ours.caught[k] * peer.values[k] > peer.caught[k] * ours.values[k]]
            worse = [k for k in KINDS if ours.caught[k] * peer.values[k] < peer.caught[k] * ours.values[k]]
            peer_kept = sum(peer.kept.values()) / max(1, sum(peer.looks.values()))
            lines.append(f"- Against {name}: recall higher on {len(better)} kinds, lower on {len(worse)}"
                         f"{' (' + ', '.join(worse) + ')' if worse else ''}; look-alikes kept {100 * kept:.1f}% "
                         f"against {100 * peer_kept:.1f}% ({'met' if not worse and kept > peer_kept else 'NOT met'}).")
        lines += ["", "Read these numbers with the corpus in mind: its values are written the ways listed in "
                  "benchmarks/README.md, and ours was developed looking at what it missed on other seeds of the "
                  "same generator, so a kind at 100% here is a kind with no writing in the corpus that ours "
                  "misses, not a promise about every text. Not in the corpus, and not redacted: numbers without "
                  "their area code (`3481 8226`), numbers in words or Chinese numerals (`一三八...`), "
                  "addresses obfuscated as `li.wei at example.cn`, values split by other text, and names and "
                  "street addresses (see the README's \"Personal data\")."]
        if ours.misses:
            lines += ["", "What ours missed (up to 10):", ""]
            lines += [f"- {k}: `{v}` in `{t}`" for k, v, t in ours.misses[:10]]
        if ours.damaged:
            lines += ["", "Look-alikes ours redacted (up to 10):", ""]
            lines += [f"- {k}: `{v}` in `{t}`" for k, v, t in ours.damaged[:10]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run pii", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=8000, help="texts in the corpus (default 8000)")
    parser.add_argument("--seed", type=int, default=2027,
                        help="corpus seed (default 2027; the redactor was developed looking at seeds 16, 7 and 2026)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {', '.join(PEERS)}")
    parser.add_argument("--no-write", action="store_true", help="print the tables; do not update RESULTS.md")
    parser.add_argument("--show", type=int, default=0, help="print this many misses and damaged look-alikes "
                                                            "of each redactor to stderr")
    args = parser.parse_args(argv)
    names = [n for n in args.peers.split(",") if n]
    unknown = set(names) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}")
    argv = sys.argv[1:] if argv is None else argv
    command = "benchmarks/run pii" + (" " + " ".join(argv) if argv else "")
    started = time.perf_counter()
    texts = corpus(args.texts, args.seed)
    scores = {}
    for name in names:
        scores[name] = s = score(PEERS[name](), texts)
        for k, v, t in s.misses[: args.show]:
            print(f"{name} MISSED {k}: {v!r} in {t!r}", file=sys.stderr)
        for k, v, t in s.damaged[: args.show]:
            print(f"{name} DAMAGED {k}: {v!r} in {t!r}", file=sys.stderr)
    section = render(scores, command, args.texts, args.seed, time.perf_counter() - started)
    print(section)
    if not args.no_write:
        RESULTS_MD.write_text(replace_section(RESULTS_MD.read_text(), section, TITLE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
