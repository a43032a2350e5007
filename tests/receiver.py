"""A recording HTTP receiver for apprise's ``json://`` posts, that a test can take down
(connection refused) and bring back on the same port, or script to answer errors."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OK_BODY = json.dumps(
    {
        "errcode": 0,
        "errmsg": "ok",
        "code": 0,
        "access_token": "tok",
        "expires_in": 7200,
        "result": {"message_id": 1, "status": "ok"},
    }
).encode()


@dataclass
class Recorded:
    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """An HTTP server on 127.0.0.1 that records requests and answers as scripted.

    ``statuses[path_prefix]`` is a list of statuses answered in turn (the last one repeats);
    paths without a script get 200. ``stop()`` takes it down (connections refused);
    ``start()`` after it, with ``port`` kept, brings it back on the same port.
    """

    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.requests.append(Recorded(self.command, self.path, body))
                    status = 200
                    for prefix, script in owner.statuses.items():
                        if self.path.startswith(prefix):
                            status = script.pop(0) if len(script) > 1 else script[0]
                            break
                reply = OK_BODY if status < 300 else b'{"error": "scripted"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = do_GET = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def payloads(self) -> list[Any]:
        """The JSON bodies received (apprise's ``title``, ``message``...), in arrival order."""
        with self._lock:
            return [r.json() for r in self.requests]

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"
