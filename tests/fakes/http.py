"""The base of the fake services: a ThreadingHTTPServer on 127.0.0.1 with a fault queue."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

MAX_DELAY = 5.0  # a fault never holds a server thread longer than this


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    at: float
    target: str = ""  # the request line's target: path and query string as sent

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class Fault:
    """Answer the next `times` matching requests with `status` (and `headers`), after `delay`
    seconds. `process=True`: handle the request normally at once, then answer after `delay` (the
    write happened, but the client may time out waiting for the answer). `slow=True`: wait
    `delay`, then handle the request normally (a slow server). `body` may be a function of the
    request: a server that echoes what it was sent (headers, URL) in its error."""

    times: int = 1
    status: int = 500
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    process: bool = False
    slow: bool = False
    method: str | None = None
    path: str | None = None  # substring of the path
    body: str | Callable[[Request], str] = '{"errorMessages": ["injected fault"]}'

    def matches(self, req: Request) -> bool:
        return (self.method is None or self.method == req.method) and (
            self.path is None or self.path in req.path
        )


class FakeService(ABC):
    """Subclasses implement `handle(req) -> (status, payload, headers)`."""

    name = "fake"

    def __init__(self, port: int = 0, user: str | None = None, password: str | None = None):
        self.port, self.user, self.password = port, user, password
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.outage: Fault | None = None
        self.in_flight = 0
        self._server = self._thread = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeService":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()  # headers and body are separate writes: no Nagle delay
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self):
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- faults ------------------------------------------------------------------------------

    def fail(self, times: int = 1, status: int = 500, **kwargs) -> None:
        with self.lock:
            self.faults.append(Fault(times=times, status=status, **kwargs))

    def down(self, status: int = 503, **kwargs) -> None:
        """Every request fails until `up()`."""
        with self.lock:
            self.outage = Fault(times=10**9, status=status, **kwargs)

    def up(self) -> None:
        with self.lock:
            self.outage = None

    def _fault_for(self, req: Request) -> Fault | None:
        with self.lock:
            if self.outage is not None:
                return self.outage
            for fault in self.faults:
                if fault.matches(req):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # --- requests ----------------------------------------------------------------------------

    def authorized(self, req: Request) -> bool:
        if self.user is None:
            return True
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return req.headers.get("authorization") == f"Basic {expected}"

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and (path is None or path in r.path)
            )

    def wait_idle(self, timeout: float = MAX_DELAY + 1) -> None:
        """Wait until no request is being answered (late answers of timed-out requests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.in_flight == 0:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: requests still in flight after {timeout} s")

    @abstractmethod
    def handle(self, req: Request):
        """Answer one request: (status, body[, headers])."""

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        req = Request(
            h.command,
            parts.path,
            {k: v[0] for k, v in parse_qs(parts.query).items()},
            {k.lower(): v for k, v in h.headers.items()},
            body,
            time.monotonic(),
            target=h.path,
        )
        with self.lock:
            self.requests.append(req)
            self.in_flight += 1
        try:
            self._answer(h, req)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, h: BaseHTTPRequestHandler, req: Request) -> None:
        fault = self._fault_for(req)
        if fault is not None and fault.slow:
            time.sleep(min(fault.delay, MAX_DELAY))
            fault = None
        if fault is not None and not fault.process:
            time.sleep(min(fault.delay, MAX_DELAY))
            payload = fault.body(req) if callable(fault.body) else fault.body
            status, headers = fault.status, fault.headers
        elif not self.authorized(req):
            status, payload, headers = 401, {"error": "unauthorized"}, {}
        else:
            try:
                status, payload, headers = self.handle(req)
            except Exception as exc:  # a bug in the fake shows as a 500 with its text
                status, payload, headers = 500, {"fake_error": repr(exc)}, {}
            if fault is not None:
                time.sleep(min(fault.delay, MAX_DELAY))
        data = (
            payload
            if isinstance(payload, bytes)
            else (payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        )
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, str(v))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass
