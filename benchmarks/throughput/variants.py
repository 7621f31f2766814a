"""Settings variants for side-by-side runs: ``--set detect.sample_rate=0.25``.

A variant is ``SECTION.KEY=VALUE`` pairs separated by commas; a benchmark hands it to
the process it measures as ``MONITOR_SECTION_KEY`` environment variables, which the
daemon reads over its config file.

>>> environ("detect.sample_rate=0.25,detect.check_every=100")
{'MONITOR_DETECT_SAMPLE_RATE': '0.25', 'MONITOR_DETECT_CHECK_EVERY': '100'}
>>> environ("detect.sample_rate=0")
Traceback (most recent call last):
...
ValueError: --set detect.sample_rate=0: detect.sample_rate must be >= 0.001; got 0.0
"""

from __future__ import annotations

import re

from common.errors import ConfigError
from monitor.config import load_settings

HELP = ("settings of one run, SECTION.KEY=VALUE[,...], e.g. detect.sample_rate=0.25 (repeatable: one run each; "
        "default: the defaults)")


def environ(variant: str) -> dict[str, str]:
    """The environment variables that give a process this variant's settings;
    ``ValueError`` naming what is wrong if the settings would not load."""
    if not variant:
        return {}
    pairs = [a.split("=", 1) for a in variant.split(",")]
    if not all(len(p) == 2 and re.fullmatch(r"[a-z]+\.[a-z_]+", p[0]) for p in pairs):
        raise ValueError(f"--set takes SECTION.KEY=VALUE[,...], got {variant!r}")
    env = {"MONITOR_" + key.replace(".", "_").upper(): value for key, value in pairs}
    try:
        load_settings(environ=env)
    except ConfigError as exc:
        raise ValueError(f"--set {variant}: {exc}") from None
    return env
