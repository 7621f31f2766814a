"""Rewrite the generated tables of README.md (configuration and metrics) from the code.

Run it after changing a setting or a metric: `.venv/bin/python scripts/update_readme.py`.
tests/test_docs.py fails while the README and the code disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from monitor.config import reference_markdown
from monitor.metrics import metrics_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = {"config": reference_markdown, "metrics": metrics_markdown}


def render(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}:begin --> ... <!-- {name}:end --> block")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    before = README.read_text()
    after = render(before)
    if "--check" in sys.argv:
        sys.exit(0 if after == before else "README.md is out of date: run scripts/update_readme.py")
    README.write_text(after)
