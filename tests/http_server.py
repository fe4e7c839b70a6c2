"""A local HTTP server on 127.0.0.1 whose answers tests script: files, faults, stalls."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    support_range: bool = True
    cut_after: int | None = None  # close the connection after this many bytes (once per entry)
    stall_after: int | None = None  # stop sending (sleep) after this many bytes
    stall_seconds: float = 5.0
    failures: list = field(default_factory=list)  # statuses to answer first, one per request


class FileServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                route = server.routes.get(self.path)
                server.requests.append((self.path, self.headers.get("Range")))
                if route is None:
                    self.send_error(404)
                    return
                if route.failures:
                    self.send_error(route.failures.pop(0))
                    return
                body, start = route.body, 0
                range_header = self.headers.get("Range")
                if range_header and route.support_range:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(route.status)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                limit = route.cut_after if route.cut_after is not None else route.stall_after
                if limit is not None and limit < len(payload):
                    self.wfile.write(payload[:limit])
                    self.wfile.flush()
                    if route.stall_after is not None:
                        time.sleep(route.stall_seconds)
                    route.cut_after = route.stall_after = None  # next request succeeds
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
