"""The daemon's HTTP endpoints: /metrics, /healthz, /readyz, /status and extra pages (/report).

It runs in its own threads, so a scrape never waits for a batch and ``/healthz`` can
tell that the main loop is stuck (no heartbeat for ``liveness_timeout_s``).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from common.errors import StartupError

log = logging.getLogger(__name__)


class Health:
    """Liveness (the loop beats) and readiness (nothing the service needs is failing).

    Readiness is a set of named problems: each part of the service reports its own
    (``problem("store", "unavailable: ...")``) and clears it (``problem("store", None)``).
    """

    def __init__(self, liveness_timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.liveness_timeout_s = liveness_timeout_s
        self.clock = clock
        self._beat = clock()
        self._problems: dict[str, str] = {"startup": "starting"}
        self._lock = threading.Lock()

    def beat(self) -> None:
        """Called by the main loop every iteration (and while it waits on a retry)."""
        self._beat = self.clock()

    def problem(self, part: str, reason: str | None) -> None:
        """Report (or, with ``None``, clear) what keeps ``part`` from working."""
        with self._lock:
            if reason is None:
                self._problems.pop(part, None)
            else:
                self._problems[part] = reason

    def live(self) -> tuple[bool, str]:
        stalled = self.clock() - self._beat
        if stalled > self.liveness_timeout_s:
            return False, f"main loop has not run for {stalled:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        live, why = self.live()
        if not live:
            return False, why
        with self._lock:
            problems = "; ".join(f"{part}: {reason}" for part, reason in sorted(self._problems.items()))
        return (False, problems) if problems else (True, "ok")


class _BoundedServer(ThreadingHTTPServer):
    """A thread per request, but at most ``max_handlers`` at once: the rest are answered 503."""

    daemon_threads = True
    max_handlers = 16

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._slots = threading.BoundedSemaphore(self.max_handlers)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class StatusServer:
    """A small threaded HTTP server; ``port=0`` binds a free port (see ``.port``).

    A connection that sends nothing for ``REQUEST_TIMEOUT_S`` is closed, and at most
    16 requests are served at once, so idle or slow clients cannot pile up threads.

    ``pages`` adds paths (such as ``/report``) served by a callable that returns the
    body and its content type, called on each request; one that raises is answered
    500 (and logged), and the server goes on.

    The pages show what users wrote, so they are protected: with a ``token`` a request
    must carry ``Authorization: Bearer <token>`` (else 401); without one they are served
    only on a loopback address (else 403, saying how to set one). Every request to a
    page is logged with the client's address and whether it was allowed (never the
    token). ``/metrics``, the probes and ``/status`` stay open: they show counts, not
    what users wrote. Nothing served changes state.
    """

    REQUEST_TIMEOUT_S = 10.0
    BUILTIN = ("/", "/metrics", "/healthz", "/readyz", "/status")

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health,
                 status: Callable[[], dict[str, Any]] | None = None,
                 pages: Mapping[str, Callable[[], tuple[bytes, str]]] | None = None, *, token: str = "") -> None:
        self.registry = registry
        self.health = health
        self.status = status or dict
        self.pages = dict(pages or {})
        self._token = token.encode()  # never logged, never in a message
        self.loopback = is_loopback(host)
        for path in self.pages:
            if path in self.BUILTIN or not path.startswith("/"):
                raise ValueError(f"page path {path!r} must start with / and not be one of {', '.join(self.BUILTIN)}")
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = self.REQUEST_TIMEOUT_S

            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        try:
            self._httpd = _BoundedServer((host, port), Handler)
        except OSError as exc:
            raise StartupError(f"cannot serve HTTP on {host}:{port}: {exc.strerror}; set http.port "
                               "(0 picks a free port) or http.host") from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="monitor-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            self._send(request, 200, encoder(self.registry), content_type)
        elif path == "/healthz":
            ok, why = self.health.live()
            self._send(request, 200 if ok else 503, (why + "\n").encode(), "text/plain")
        elif path == "/readyz":
            ok, why = self.health.ready()
            self._send(request, 200 if ok else 503, (why + "\n").encode(), "text/plain")
        elif path == "/status":
            self._send(request, 200, orjson.dumps(self.status(), option=orjson.OPT_INDENT_2),
                       "application/json")
        elif path in self.pages:
            self._page(request, path)
        elif path == "/":
            body = b"model-monitor\n/metrics  Prometheus metrics\n/healthz  liveness\n/readyz   readiness\n" \
                   b"/status   counts and recent alerts (JSON)\n"
            body += "".join(f"{page:<9} page\n" for page in sorted(self.pages)).encode()
            self._send(request, 200, body, "text/plain")
        else:
            paths = ["/metrics", "/healthz", "/readyz", "/status", *sorted(self.pages)]
            self._send(request, 404, f"not found; try {', '.join(paths[:-1])} or {paths[-1]}\n".encode(),
                       "text/plain")

    def _allowed(self, request: BaseHTTPRequestHandler, path: str) -> bool:
        """Answer 401 or 403 and return False unless the request may see a protected page."""
        client = request.client_address[0] if request.client_address else "?"
        if self._token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # compare_digest: the time taken must not tell how much of a guess was right.
            allowed = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)
            if allowed:
                log.info("http: %s from %s allowed (token)", path, client)
            else:
                log.warning("http: %s from %s refused: no valid bearer token", path, client)
                request.send_response(401)
                request.send_header("WWW-Authenticate", 'Bearer realm="model-monitor"')
                body = f"{path} needs the header Authorization: Bearer <http.token>\n".encode()
                request.send_header("Content-Type", "text/plain")
                request.send_header("Content-Length", str(len(body)))
                request.end_headers()
                request.wfile.write(body)
            return allowed
        if self.loopback:
            log.info("http: %s from %s allowed (loopback, no token)", path, client)
            return True
        log.warning("http: %s from %s refused: no http.token is set and the server listens beyond the loopback "
                    "interface", path, client)
        self._send(request, 403, (
            f"{path} shows what users wrote: it is served beyond the loopback interface only with a token. Set "
            "MONITOR_HTTP_TOKEN (or http.token_file) and send Authorization: Bearer <token>, or bind http.host "
            "to 127.0.0.1.\n").encode(), "text/plain")
        return False

    def _page(self, request: BaseHTTPRequestHandler, path: str) -> None:
        if not self._allowed(request, path):
            return
        try:
            body, content_type = self.pages[path]()
            if not isinstance(body, bytes) or not isinstance(content_type, str):
                raise TypeError(f"a page callable returns (bytes, str), not ({type(body).__name__}, "
                                f"{type(content_type).__name__})")
        except Exception:
            log.exception("http: the page %s failed", path)
            self._send(request, 500, f"{path} failed; see the daemon's log\n".encode(), "text/plain")
            return
        self._send(request, 200, body, content_type)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str) -> None:
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface
