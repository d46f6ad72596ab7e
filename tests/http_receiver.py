"""A real HTTP server on 127.0.0.1 standing for Slack, Teams and a generic webhook: it
records each request's path, headers and body, and can answer 500 to the next N
requests, hang (answer nothing until released), or be stopped (connections refused)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int
    requests: list[Request] = field(default_factory=list)  # answered 2xx
    refused: list[Request] = field(default_factory=list)  # answered 500
    hung: list[Request] = field(default_factory=list)  # never answered
    fail_next: int = 0
    hang: threading.Event | None = None  # while not set, requests get no answer
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str | None = None) -> list[Any]:
        return [r.json() for r in self.requests if path is None or r.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.path, dict(self.headers.items()), self.rfile.read(length))
            if receiver.hang is not None and not receiver.hang.is_set():
                receiver.hang.wait(30)  # the client timed out long ago: no answer at all
                receiver.hung.append(request)
                self.close_connection = True
                return
            with receiver.lock:
                failing = receiver.fail_next > 0
                if failing:
                    receiver.fail_next -= 1
                    receiver.refused.append(request)
                else:
                    receiver.requests.append(request)
            self.send_response(500 if failing else 200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"boom" if failing else b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def http_receiver(receiver: Receiver | None = None) -> Iterator[Receiver]:
    """Serve for the block on 127.0.0.1: on `receiver`'s port, keeping its records (a
    receiver that went down and came back), or on a free port with a new one."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", receiver.port if receiver else 0), BaseHTTPRequestHandler
    )
    server.daemon_threads = True
    receiver = receiver or Receiver(server.server_address[1])
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hang is not None:
            receiver.hang.set()
        server.shutdown()
        server.server_close()
        thread.join()
