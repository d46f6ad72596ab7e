"""A real HTTP reverse proxy on 127.0.0.1 in front of a real `mlflow server`, standing for
the gateway a team puts before it: it forwards every request as it came (method, path,
headers, body) and answers some paths itself with a refusal, as a gateway's rules do."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_HEADERS = {"host", "connection", "transfer-encoding", "content-length"}


@dataclass(frozen=True)
class Proxy:
    port: int

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def reverse_proxy(upstream: str, refused_paths: tuple[str, ...]) -> Iterator[Proxy]:
    """Forward to `upstream`; a path starting with one of `refused_paths` gets 403 and
    MLflow's error body (PERMISSION_DENIED)."""

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if self.path.startswith(refused_paths):
                body = json.dumps(
                    {"error_code": "PERMISSION_DENIED", "message": "Forbidden by the gateway"}
                ).encode()
                self._answer(403, {"Content-Type": "application/json"}, body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            request = urllib.request.Request(
                upstream + self.path,
                data=self.rfile.read(length) if length else None,
                headers={k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS},
                method=self.command,
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    self._answer(response.status, dict(response.headers), response.read())
            except urllib.error.HTTPError as error:
                self._answer(error.code, dict(error.headers), error.read())

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in HOP_HEADERS:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Proxy(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
