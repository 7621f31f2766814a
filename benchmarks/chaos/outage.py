"""The broker down: what the embedded broker allows, and the closest real thing.

The embedded Tansu broker keeps everything in memory (this build has no PostgreSQL or
S3 storage: ``--storage-engine postgres://...`` answers ``FeatureNotEnabled``), so a
stopped broker comes back empty: its topics, messages and committed offsets are gone,
and no daemon could resume from it. What a client sees of a broker process that stops
and starts again with its data is a port that refuses connections and cuts the open
ones, then accepts them again: ``TcpProxy`` does exactly that in front of a broker
that advertises the proxy's port (every client connection, bootstrap and data, goes
through it). The producer stops while the broker is down (a real one would buffer) and
sends the rest when it is back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.chaos import harness as H
from monitor.broker import EmbeddedBroker, free_port


class TcpProxy:
    """Forwards ``port`` to ``target``; ``down()`` refuses new connections and cuts the open
    ones, ``up()`` accepts again on the same port."""

    def __init__(self, target: int, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port, self.target = host, port, target
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True).start()
        return self

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._open = self._open, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down
            try:
                upstream = socket.create_connection((self.host, self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    upstream.close()
                    return
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), name="proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def halves(stream: H.Stream, share: float) -> tuple[H.Stream, H.Stream]:
    """The stream cut where its event time passes ``share``: what is sent before the
    outage, and after (together, the whole stream)."""
    cut = H.START + share * stream.seconds

    def at(events: list[Any]) -> int:
        return next((i for i, e in enumerate(events) if isinstance(e, dict) and e["ts"] >= cut), len(events))

    t, f = at(stream.tracking), at(stream.feedback)
    return (H.Stream(stream.tracking[:t], stream.feedback[:f], stream.seconds * share),
            H.Stream(stream.tracking[t:], stream.feedback[f:], stream.seconds * (1 - share)))


def broker_down(stream: H.Stream, clean: H.Outcome, kind: str, folder: Path, down_s: float,
                timeout_s: float) -> H.RunResult:
    """The broker unreachable for ``down_s`` seconds while the daemon is reading: it must stay
    up and live, say on ``/readyz`` that the broker is the problem, count the outage, and
    resume by itself, losing nothing."""
    proxy_port = free_port()
    broker = EmbeddedBroker(log_path=folder / "broker-down-tansu.log", advertised_port=proxy_port)
    broker.start()
    proxy = TcpProxy(broker.port, proxy_port).up()
    bootstrap = f"127.0.0.1:{proxy_port}"
    notes: list[str] = []
    facts: dict[str, Any] = {}
    try:
        first, second = halves(stream, 0.6)
        with H._faulted_run(bootstrap, stream, kind, folder, 0.0, "broker_down") as (_, settings, _p, daemon,
                                                                                     offsets):
            before = H.Producer(bootstrap, settings, first).start()
            before.join()
            daemon.start()
            # Cut while it reads: once a third of what was sent is committed.
            H.wait_until(lambda: daemon.alive() and offsets.total() >= first.size // 3, timeout_s,
                         "a third of the first part committed", poll_s=0.02)
            proxy.down()
            down_at = time.monotonic()
            # Down for down_s, and until /readyz has said why (a commit in flight may take its
            # timeout to give up): /healthz must answer all along.
            reason, live = "", []
            while time.monotonic() - down_at < down_s or not reason:
                if time.monotonic() - down_at > down_s + 90:
                    raise H.ChaosError(f"/readyz did not report the broker within {down_s + 90:.0f}s; "
                                       f"it said {H._ready(daemon)[1][:300]!r}")
                daemon.alive()
                reason = reason or _broker_problem(daemon)
                health = daemon.get("/healthz")
                live.append(health is not None and health.status_code == 200)
                time.sleep(0.5)
            notes.append(f"`/readyz` while down: 503 `{reason.strip()[:200]}`")
            outages = _metric(daemon, "model_monitor_broker_outages_total")
            facts.update(readyz=reason, live_polls=len(live), live_ok=sum(live), outages=outages,
                         alive=daemon.running, down_s=time.monotonic() - down_at)
            notes.append(f"`/healthz` answered 200 to {sum(live)} of {len(live)} polls while down "
                         f"({facts['down_s']:.0f} s); model_monitor_broker_outages_total {outages:g}")
            proxy.up()
            back = time.monotonic()
            H.wait_until(lambda: daemon.alive() and H._ready(daemon)[0], timeout_s, "/readyz to be ready again")
            recover = [time.monotonic() - back]
            rest = H.Producer(bootstrap, settings, second).start()
            rest.join()
            ends = dict(before.ends)
            for tp, n in rest.ends.items():
                ends[tp] = max(ends.get(tp, 0), n)
            H._finish(daemon, bootstrap, settings, offsets, ends, timeout_s)
            result = H.outcome(bootstrap, settings)
    finally:
        proxy.down()
        broker.stop()
    return H.RunResult("broker_down", kind, stream.size, 1, 1, recover, H.compare(clean, result), notes, facts)


def _broker_problem(daemon: H.Daemon) -> str:
    ready, text = H._ready(daemon)
    return text if not ready and "broker: " in text else ""


def _metric(daemon: H.Daemon, name: str) -> float:
    r = daemon.get("/metrics")
    if r is None:
        return float("nan")
    for line in r.text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
