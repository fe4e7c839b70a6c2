"""A local HTTP server on 127.0.0.1 whose answers tests script: files, faults, stalls.

Each path maps to a ``Route``. Faults are consumed one request at a time, so a test
can say "fail twice with 503, then cut the connection once, then serve the file".
Every request is recorded (method, path, Range header) for the test to count.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    support_range: bool = True
    cut_after: int | None = None  # close the connection after this many bytes (once)
    stall_after: int | None = None  # stop sending (sleep) after this many bytes (once)
    stall_seconds: float = 5.0
    failures: list = field(default_factory=list)  # statuses to answer first, one per GET
    bodies: list = field(default_factory=list)  # bodies to serve first, one per full GET
    headers: dict = field(default_factory=dict)  # extra headers (GET and HEAD)
    chunk_delay: float = 0.0  # seconds between 1 KiB chunks: a slow server
    head_failures: list = field(default_factory=list)  # statuses to answer first, one per HEAD
    raw_failures: list = field(default_factory=list)  # raw bytes (not HTTP) to answer first, one per GET


class Request(NamedTuple):
    method: str
    path: str
    range: str | None


class FileServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real servers (clients must honour Content-Length)

            def log_message(self, *args):
                pass

            def _route(self) -> Route | None:
                with server._lock:
                    server.requests.append(Request(self.command, self.path, self.headers.get("Range")))
                route = server.routes.get(self.path)
                if route is None:
                    self._error(404)
                return route

            def _error(self, status: int) -> None:
                body = f"error {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _headers(self, route: Route) -> None:
                for name, value in route.headers.items():
                    self.send_header(name, value)

            def do_HEAD(self):
                route = self._route()
                if route is None:
                    return
                if route.head_failures:
                    self._error(route.head_failures.pop(0))
                    return
                self.send_response(route.status)
                self._headers(route)
                self.send_header("Content-Length", str(len(route.body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self):
                route = self._route()
                if route is None:
                    return
                if route.raw_failures:
                    self.wfile.write(route.raw_failures.pop(0))
                    self.close_connection = True
                    return
                if route.failures:
                    self._error(route.failures.pop(0))
                    return
                range_header = self.headers.get("Range")
                body, start = route.body, 0
                if range_header and route.support_range:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self._error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    if route.bodies:
                        body = route.bodies.pop(0)
                    self.send_response(route.status)
                self._headers(route)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                limit = route.cut_after if route.cut_after is not None else route.stall_after
                if limit is not None and limit < len(payload):
                    stall = route.stall_after is not None
                    route.cut_after = route.stall_after = None  # the next request succeeds
                    self.wfile.write(payload[:limit])
                    self.wfile.flush()
                    if stall:
                        time.sleep(route.stall_seconds)
                    self.close_connection = True
                    return
                if route.chunk_delay:
                    for i in range(0, len(payload), 1024):
                        self.wfile.write(payload[i : i + 1024])
                        self.wfile.flush()
                        time.sleep(route.chunk_delay)
                else:
                    self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def count(self, path: str, method: str = "GET") -> int:
        """Number of ``method`` requests received for ``path``."""
        return sum(1 for r in self.requests if r.path == path and r.method == method)

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
