"""The layering of DESIGN.md, checked: data flows one way and detectors/ stays pure."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"common", "monitor", "collectors", "detectors", "retrain"}
#: What each package may import of ours: every one may import ``common``, which imports nothing of ours.
ALLOWED = {
    "common": {"common"},
    "detectors": {"detectors", "common"},
    "collectors": {"collectors", "common"},
    "retrain": {"retrain", "collectors", "common"},
    "monitor": OURS,
}
#: Modules that do I/O, a clock or randomness: never in detectors/.
IMPURE = {"socket", "asyncio", "threading", "subprocess", "sqlalchemy", "aiokafka", "kafka", "httpx", "requests",
          "os", "time", "random", "pathlib", "io", "logging", "faust", "urllib", "http"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_what_the_design_allows(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        ours = imports(path) & OURS
        assert ours <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {sorted(ours - ALLOWED[package])}"


@pytest.mark.parametrize("package", ["detectors", "common"])  # detectors/ may import common/
def test_detectors_do_no_io(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        impure = imports(path) & IMPURE
        assert not impure, f"{path.relative_to(ROOT)} imports {sorted(impure)}"


@pytest.mark.parametrize("module", ["common", "detectors", "collectors", "retrain", "monitor"])
def test_exported_names_exist(module):
    mod = importlib.import_module(module)
    for name in getattr(mod, "__all__", ()):
        assert hasattr(mod, name), f"{module}.__all__ names {name}, which does not exist"


def test_importing_the_packages_has_no_side_effects():
    code = ("import logging, threading, prometheus_client;"
            "import common, common.errors, monitor, collectors, detectors, retrain, monitor.cli, monitor.service;"
            "assert threading.active_count() == 1, threading.enumerate();"
            "assert not logging.getLogger().handlers;"
            "assert not [n for n in prometheus_client.REGISTRY._names_to_collectors if n.startswith('model_monitor')]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
