"""Real SMTP servers for the mail tests: aiosmtpd on 127.0.0.1 and a free port, recording
every message it accepts. Options: refuse some recipients (550), answer the first N
connections with 421, require STARTTLS + AUTH with a trustme certificate, or implicit TLS."""

from __future__ import annotations

import email
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

SERVER_NAME = "runreport-test-smtp"


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class ServerLog:
    """What the server saw, shared between its connection threads and the test."""

    received: list[ReceivedMail] = field(default_factory=list)
    connections: int = 0
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)
    refused_rcpts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class RecordingHandler:
    def __init__(self, server_log: ServerLog, refuse: set[str]) -> None:
        self.log = server_log
        self.refuse = {address.lower() for address in refuse}

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address.lower() in self.refuse:
            with self.log.lock:
                self.log.refused_rcpts.append(address)
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        mail = ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), envelope.content)
        with self.log.lock:
            self.log.received.append(mail)
        return "250 2.0.0 Message accepted for delivery"


class PasswordCheck:
    """An aiosmtpd authenticator accepting one user and password."""

    def __init__(self, server_log: ServerLog, user: str, password: str) -> None:
        self.log, self.user, self.password = server_log, user, password

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user = data.login.decode()
        accepted = user == self.user and data.password.decode() == self.password
        with self.log.lock:
            self.log.logins.append((user, accepted))
        # handled=False: aiosmtpd itself answers a failure with 535
        return AuthResult(success=accepted, handled=False)


class _CountingSMTP(SMTP):
    """Counts connections; answers the first `busy_connections` with 421 and hangs up, as
    an overloaded server does."""

    def __init__(self, handler: Any, server: SmtpServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._server = server

    async def _handle_client(self) -> None:
        with self._server.log.lock:
            self._server.log.connections += 1
            busy = self._server.busy_connections > 0
            if busy:
                self._server.busy_connections -= 1
        if busy:
            await self.push("421 4.3.2 Service not available, try again later")
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, server: SmtpServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server = server

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, self._server, **self.SMTP_kwargs)


@dataclass
class SmtpServer:
    host: str
    port: int
    log: ServerLog
    busy_connections: int = 0

    @property
    def received(self) -> list[ReceivedMail]:
        return self.log.received


@dataclass
class Tls:
    """A throwaway CA and a certificate for 127.0.0.1 and localhost it signed."""

    cafile: Path
    server_context: ssl.SSLContext


def make_tls(folder: Path) -> Tls:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    cafile = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return Tls(cafile, server_context)


@contextmanager
def smtp_server(
    port: int,
    *,
    refuse: set[str] | None = None,
    busy_connections: int = 0,
    starttls: Tls | None = None,
    implicit_tls: Tls | None = None,
    login: tuple[str, str] | None = None,
) -> Iterator[SmtpServer]:
    """An aiosmtpd server on 127.0.0.1:`port` for the duration of the block.

    `starttls` requires STARTTLS before anything else; `login` requires AUTH (over TLS)."""
    server_log = ServerLog()
    server = SmtpServer("127.0.0.1", port, server_log)
    kwargs: dict[str, Any] = {"server_hostname": SERVER_NAME, "auth_require_tls": True}
    if starttls:
        kwargs.update(tls_context=starttls.server_context, require_starttls=True)
    if implicit_tls:
        kwargs["ssl_context"] = implicit_tls.server_context
    if login:
        kwargs.update(authenticator=PasswordCheck(server_log, *login), auth_required=True)
    controller = _Controller(
        server,
        handler=RecordingHandler(server_log, refuse or set()),
        hostname="127.0.0.1",
        port=port,
        **kwargs,
    )
    controller.start()
    # The controller's own readiness probe was a connection; count only the client's.
    server_log.connections = 0
    server.busy_connections = busy_connections
    try:
        yield server
    finally:
        controller.stop()
