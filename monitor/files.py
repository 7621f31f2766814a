"""Checks on the files a command is asked to write, made before any work is done."""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import FatalError, OutputError


def check_writable_file(path: str, what: str, error: type[FatalError] = OutputError) -> None:
    """Raise ``error`` naming ``what`` when ``path`` cannot be written as a file.

    >>> check_writable_file("/no/such/folder/out.jsonl", "--alerts-out")
    Traceback (most recent call last):
    ...
    common.errors.OutputError: --alerts-out /no/such/folder/out.jsonl: the folder /no/such/folder does not exist
    """
    target = Path(path)
    if target.is_dir():
        raise error(f"{what} {path} is a folder; give a file name")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise error(f"{what} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise error(f"{what} {path}: not writable")
