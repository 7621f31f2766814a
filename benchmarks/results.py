"""benchmarks/RESULTS.md, written by section: each benchmark replaces its own."""

from __future__ import annotations


def replace_section(text: str, section: str, title: str) -> str:
    """``text`` with the section starting at ``title`` (up to the next ``## ``) replaced by
    ``section``, or ``section`` appended when there is none.

    >>> replace_section("# R\\n\\n## A\\nold\\n## B\\nb\\n", "## A\\nnew\\n", "## A")
    '# R\\n\\n## A\\nnew\\n\\n## B\\nb\\n'
    """
    if title in text:
        start = text.index(title)
        nxt = text.find("\n## ", start + len(title))
        return text[:start] + section + (text[nxt:] if nxt != -1 else "\n")
    return text.rstrip() + "\n\n" + section + "\n"
