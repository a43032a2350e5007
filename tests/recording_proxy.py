"""An HTTP proxy for the tests that records every InfluxDB write request it forwards.

InfluxDB silently overwrites a point written twice, so only the requests themselves show
whether the gateway sent a reading more than once. The proxy can also refuse to forward
(answering 503, or dropping the connection) to simulate an outage between the two.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class WriteRecord:
    lines: list[str]
    status: int
    received_at: float  # time.monotonic() when the request arrived


@dataclass
class RecordingProxy:
    """Forwards to ``upstream``; ``writes`` lists each /api/v2/write body and its status."""

    upstream: str
    writes: list[WriteRecord] = field(default_factory=list)
    fail_with: int | None = None  # answer this status instead of forwarding
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.fail_with is not None:
                    self.send_response(proxy.fail_with)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                try:
                    r = httpx.request(
                        self.command,
                        proxy.upstream + self.path,
                        content=body,
                        headers=headers,
                        timeout=30,
                    )
                except httpx.HTTPError:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/api/v2/write"):
                    text = body.decode("utf-8")
                    with proxy._lock:
                        proxy.writes.append(
                            WriteRecord(
                                [ln for ln in text.split("\n") if ln], r.status_code, arrived
                            )
                        )
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(r.content)  # the client may have been killed meanwhile

            do_GET = do_POST = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def accepted_lines(self) -> list[str]:
        with self._lock:
            return [ln for w in self.writes if w.status == 204 for ln in w.lines]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
