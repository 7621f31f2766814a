"""The README's front door: `monitor demo` catches every injected fault and exits 0."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_demo_detects_every_injected_fault_and_cleans_up():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    result = subprocess.run([sys.executable, "-m", "monitor", "demo", "--duration", "60", "--metrics-port", "0"],
                            capture_output=True, timeout=180, env=env, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, out[-4000:] + result.stderr.decode()[-4000:]
    assert len(re.findall(r"detected +[\d.]+s after injection", out)) == 6, out
    assert "NOT DETECTED" not in out
    assert re.search(r"alerts: \d+ \(0 not tied to an injected fault\)", out), out
    assert re.search(r"retraining queue: [1-9][\d,]* samples", out), out
    assert "severe_drift" in out
    folder = re.search(r"logs +(\S+)/daemon.log", out).group(1)
    assert not os.path.exists(folder), "the temporary folder is removed"
    host, port = re.search(r"broker +([\d.]+):(\d+)", out).groups()
    with pytest.raises(ConnectionRefusedError):  # the demo's broker is gone
        socket.create_connection((host, int(port)), timeout=2).close()
