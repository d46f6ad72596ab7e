"""The report as one email: built from a rendered report folder, sent over SMTP.

The folder is etl/report/render.py output: summary.txt (the plain-text part), email.html (CSS
inlined, images as <img src="cid:NAME.png"> with NAME.png beside it), report.json (the
figures the subject template formats) and one CSV per view (attachments on request).

The message, built with email.message.EmailMessage:

    multipart/mixed                  (only when CSVs are attached)
      multipart/alternative
        text/plain                   summary.txt
        multipart/related
          text/html                  email.html
          image/png ...              inline, Content-ID <NAME.png> for each cid:NAME.png
      text/csv ...                   attachments

The SMTP password comes from RUNREPORT_SMTP_PASSWORD only (a flag would show in `ps`)
and is never logged or shown in a repr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import mimetypes
import os
import re
import smtplib
import socket
import ssl
import string
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from etl.config import SMTP_PORTS, Config, SmtpSecurity, checked, default
from etl.errors import ConfigError, JobFailed
from etl.report.model import SUBJECT_FIELDS
from etl.warehouse.atomic import write_file

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger("runreport")

PASSWORD_ENV = "RUNREPORT_SMTP_PASSWORD"
_CID = re.compile(r"""cid:([^"'\s<>()]+)""")
_ADDR_SPEC = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")

CONNECT_HINT = (
    "Check --smtp-host/--smtp-port (RUNREPORT_SMTP_HOST/RUNREPORT_SMTP_PORT) "
    f"and that the server is up; runreport defaults to {default('smtp_host')}:{SMTP_PORTS['none']}"
)

T = TypeVar("T")


@dataclass(frozen=True)
class MailSettings:
    """Where and how the mail goes. Build it with `from_config`; the defaults and the
    checks of the fields that are settings are those of etl/config.py."""

    to_addrs: tuple[str, ...] = ()
    from_addr: str = ""  # empty: runreport@<this host's FQDN>
    host: str = default("smtp_host")
    port: int = 0  # 0: the usual port for `security` (SMTP_PORTS)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    security: SmtpSecurity = default("smtp_security")
    subject_template: str = default("mail_subject")
    retries: int = default("smtp_retries")  # after the first attempt, for transient failures only
    backoff_seconds: float = default("smtp_backoff")  # doubled after each retry
    timeout: float = default("smtp_timeout")
    cafile: Path | None = None  # a private CA to trust for STARTTLS/SSL; None: the system's

    def __post_init__(self) -> None:
        object.__setattr__(self, "security", checked("smtp_security", self.security))
        if self.port:
            checked("smtp_port", self.port)
        else:
            object.__setattr__(self, "port", SMTP_PORTS[self.security])
        checked("smtp_retries", self.retries)
        checked("smtp_backoff", self.backoff_seconds)
        checked("smtp_timeout", self.timeout)
        check_subject(self.subject_template)  # before the job runs, not after its extract
        if not self.from_addr:
            object.__setattr__(self, "from_addr", f"runreport@{socket.getfqdn()}")
        object.__setattr__(self, "to_addrs", tuple(self.to_addrs))
        envelope_addresses([self.from_addr], "sender")
        envelope_addresses(self.to_addrs, "recipient")
        if self.user and not self.password:
            raise ConfigError(
                f"an SMTP user ({self.user!r}) is set but {PASSWORD_ENV} is not",
                f"Export {PASSWORD_ENV}; the password is never a command-line option",
            )
        if self.password and not self.user:
            raise ConfigError(
                f"{PASSWORD_ENV} is set but no SMTP user",
                "Set --smtp-user or RUNREPORT_SMTP_USER, or unset the password",
            )
        if not (self.user or "").isascii() or not (self.password or "").isascii():
            raise ConfigError(
                "the SMTP user or password has non-ASCII characters, which SMTP AUTH cannot carry",
                "Use an ASCII password (an app password, for example)",
            )
        if self.user and self.security == "none" and not _is_loopback(self.host):
            raise ConfigError(
                f"refusing to send the SMTP password unencrypted to {self.host}",
                "Use --starttls (port 587) or --ssl (port 465)",
            )
        if self.cafile is not None and not Path(self.cafile).is_file():
            raise ConfigError(
                f"CA file {self.cafile} does not exist",
                "Fix RUNREPORT_SMTP_CAFILE or unset it to trust the system's CAs",
            )

    @classmethod
    def from_config(cls, config: Config) -> MailSettings:
        """The mail settings of the resolved configuration (etl.config: file < environment
        < flags); the password only from RUNREPORT_SMTP_PASSWORD."""
        return cls(
            to_addrs=tuple(config.mail_to),
            from_addr=config.mail_from or "",
            host=config.smtp_host or default("smtp_host"),
            port=config.smtp_port or 0,
            user=config.smtp_user,
            password=os.environ.get(PASSWORD_ENV) or None,
            security=config.smtp_security,
            subject_template=config.mail_subject or default("mail_subject"),
            cafile=config.smtp_cafile,
            retries=config.smtp_retries,
            backoff_seconds=config.smtp_backoff,
            timeout=config.smtp_timeout,
        )

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the server's certificate and host name, against `cafile` if given."""
        return ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)


def email_report(
    report_dir: Path, settings: MailSettings, attach_csv: bool = False, dry_run: Path | None = None
) -> str:
    """What `runreport email` does after rendering: build the message from the report
    folder, then write it to `dry_run` (an .eml file) or send it. Returns one line to print."""
    recipients = required_recipients(settings)
    message = build_message(report_dir, settings, attach_csv)
    parts = _describe_parts(message)
    if dry_run is not None:
        write_message(message, dry_run)
        return (
            f"wrote {dry_run} ({parts}): {message['Subject']!r} for "
            f"{', '.join(recipients)}; not sent"
        )
    send_message(message, settings)
    return f"sent {message['Subject']!r} ({parts}) to {', '.join(recipients)} via {settings.server}"


def build_message(report_dir: Path, settings: MailSettings, attach_csv: bool) -> EmailMessage:
    """One message from a rendered report folder (see the module docstring for its shape)."""
    report_dir = Path(report_dir)
    figures = _read_figures(report_dir)
    text = _read_report_file(report_dir, "summary.txt")
    html = _read_report_file(report_dir, "email.html")
    message = _new_message(settings, render_subject(settings.subject_template, figures))
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None  # just added; add_related turns it into multipart/related
    images = inline_image_names(html)
    for name in images:
        image = _report_file(report_dir, name, f"email.html shows cid:{name}")
        maintype, subtype = _mime_type(image)
        html_part.add_related(
            image.read_bytes(), maintype, subtype, cid=f"<{name}>", filename=name,
            disposition="inline",
        )  # fmt: skip
    if images:
        html_part.set_param("type", "text/html")  # RFC 2387: the root part's type
    if attach_csv:
        for table in sorted(report_dir.glob("*.csv")):
            message.add_attachment(
                table.read_bytes(), "text", "csv", filename=table.name,
                params={"charset": "utf-8"},
            )  # fmt: skip
    return message


def check_subject(template: str) -> None:
    """A subject template that cannot be parsed, or names a figure no report has, fails
    now (before the job's extract and report), naming the fix."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise ConfigError(
            f"the subject template {template!r} cannot be formatted: {exc}",
            f"Write fields as {{name}}, e.g. {default('mail_subject')!r}",
        ) from None
    for name in fields:
        if name.split(".")[0].split("[")[0] not in SUBJECT_FIELDS:
            raise ConfigError(
                f"the subject template {template!r} names {{{name}}}, which no report has",
                f"Use any of: {', '.join('{' + key + '}' for key in SUBJECT_FIELDS)}",
            )


def render_subject(template: str, figures: Mapping[str, Any]) -> str:
    """`template` formatted with the report's figures, on one line."""
    try:
        subject = template.format(**figures)
    except KeyError as exc:
        raise ConfigError(
            f"the subject template {template!r} names {{{exc.args[0]}}}, "
            "which the report does not have",
            f"Use any of: {', '.join('{' + key + '}' for key in sorted(figures))}",
        ) from None
    except (ValueError, IndexError, AttributeError) as exc:
        raise ConfigError(
            f"the subject template {template!r} cannot be formatted: {exc}",
            f"Write fields as {{name}}, e.g. {default('mail_subject')!r}",
        ) from None
    return " ".join(subject.split())


def inline_image_names(html: str) -> list[str]:
    """Each file named by a cid: reference, once, in order of appearance."""
    return list(dict.fromkeys(_CID.findall(html)))


def write_message(message: EmailMessage, path: Path) -> None:
    """The message as an .eml file a mail client opens (CRLF line ends, as on the wire),
    written atomically: a full disk leaves the old file, not half a new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, message.as_bytes(policy=policy.SMTP))


def send_message(message: EmailMessage, settings: MailSettings) -> None:
    """Send to every recipient of `settings`. Transient failures (no connection, 4xx) are
    retried with backoff; permanent ones (authentication, 5xx, TLS) fail at once. If the
    server refuses some recipients, the others still get the mail and JobFailed names the
    refused ones."""
    recipients = required_recipients(settings)
    sender = envelope_addresses([settings.from_addr], "sender")[0]

    def attempt() -> dict[str, tuple[int, bytes]]:
        return _deliver_once(message, settings, sender, recipients)

    refused = _with_retries(settings, attempt)
    if refused:
        delivered = len(recipients) - len(refused)
        raise JobFailed(
            f"the mail went to {delivered} of {len(recipients)} recipients; "
            f"{settings.server} refused {_format_refused(refused)}",
            "Check the refused addresses; the others have the mail, so do not resend to them",
        )
    log.info(
        "sent %r to %d recipients via %s", message["Subject"], len(recipients), settings.server
    )


def send_failure_notice(
    settings: MailSettings, to_addrs: Sequence[str], subject: str, text: str
) -> None:
    """A plain-text mail (the scheduler's on_failure notice) through the same server."""
    notice_settings = dataclasses.replace(settings, to_addrs=tuple(to_addrs))
    message = _new_message(notice_settings, " ".join(subject.split()))
    message.set_content(text)
    send_message(message, notice_settings)


def required_recipients(settings: MailSettings) -> list[str]:
    """The bare recipient addresses; none at all is a configuration error."""
    recipients = envelope_addresses(settings.to_addrs, "recipient")
    if not recipients:
        raise ConfigError(
            "no mail recipient given", "Pass --to ADDR (repeatable) or set RUNREPORT_MAIL_TO"
        )
    return recipients


def envelope_addresses(addresses: Iterable[str], role: str) -> list[str]:
    """The bare addresses (no display names) of `addresses`, each once, checked."""
    found: dict[str, str] = {}
    for entry in addresses:
        parsed = getaddresses([entry])
        if any(ord(char) < 32 or ord(char) == 127 for char in entry):
            parsed = []  # a line break in an address could add a header or a recipient
        if not parsed or any(not _ADDR_SPEC.match(addr) for _, addr in parsed):
            raise ConfigError(
                f"not a valid {role} email address: {entry!r}",
                "Write it as name@example.com or 'Name <name@example.com>'",
            )
        for _, addr in parsed:
            found.setdefault(addr.lower(), addr)
    return list(found.values())


def _new_message(settings: MailSettings, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.from_addr
    message["To"] = ", ".join(settings.to_addrs)
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    sender_domain = envelope_addresses([settings.from_addr], "sender")[0].rsplit("@", 1)[1]
    message["Message-ID"] = make_msgid("runreport", domain=sender_domain)
    # RFC 3834: a machine wrote this; vacation responders should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    return message


def _read_figures(report_dir: Path) -> dict[str, Any]:
    source = _report_file(report_dir, "report.json", "the subject's figures")
    try:
        figures = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JobFailed(
            f"{source} is not valid JSON: {exc}", f"Render the report again into {report_dir}"
        ) from None
    if not isinstance(figures, dict):
        raise JobFailed(
            f"{source} holds no figures object", f"Render the report again into {report_dir}"
        )
    return figures


def _read_report_file(report_dir: Path, name: str) -> str:
    return _report_file(report_dir, name, "the mail's body").read_text(encoding="utf-8")


def _report_file(report_dir: Path, name: str, needed_for: str) -> Path:
    path = report_dir / name
    if Path(name).name != name or not path.is_file():
        raise ConfigError(
            f"{path} is missing ({needed_for})",
            f"Render the report first: runreport report --out {report_dir}",
        )
    return path


def _mime_type(path: Path) -> tuple[str, str]:
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    maintype, subtype = guessed.split("/", 1)
    return maintype, subtype


def _describe_parts(message: EmailMessage) -> str:
    related = [part for part in message.walk() if part.get("Content-ID")]
    attached = [part for part in message.walk() if part.get_content_disposition() == "attachment"]
    size_kb = len(message.as_bytes()) / 1024
    return f"{len(related)} inline images, {len(attached)} attachments, {size_kb:.0f} KB"


def _deliver_once(
    message: EmailMessage, settings: MailSettings, sender: str, recipients: list[str]
) -> dict[str, tuple[int, bytes]]:
    """One connection: (STARTTLS,) login, send. Returns the recipients the server refused."""
    smtp: _MarkedSMTP
    if settings.security == "ssl":
        smtp = _MarkedSMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=settings.ssl_context()
        )
    else:
        smtp = _MarkedSMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        smtp.ehlo()
        if settings.security == "starttls":
            smtp.starttls(context=settings.ssl_context())
            smtp.ehlo()
        if settings.user and settings.password:
            smtp.login(settings.user, settings.password)
        try:
            refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            if smtp.message_sent:  # the server may have queued it: sending again may duplicate it
                raise _OutcomeUnknown(exc) from exc
            raise
        # The server has the mail; a failed QUIT must not make us send it again.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        return refused
    finally:
        smtp.close()


class _MarkedSMTP(smtplib.SMTP):
    """Knows whether the whole message went out: smtplib's data() sends it, ending in
    CRLF.CRLF, in one send() call, then waits for the server's reply."""

    message_sent = False

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.message_sent = True


class _MarkedSMTP_SSL(_MarkedSMTP, smtplib.SMTP_SSL):
    pass


class _OutcomeUnknown(Exception):
    """The connection failed after the server had the whole message, before its reply."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause) or cause.__class__.__name__)


def _with_retries(settings: MailSettings, attempt: Callable[[], T]) -> T:
    attempts = settings.retries + 1
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except _OutcomeUnknown as exc:
            raise JobFailed(
                f"SMTP server {settings.server} received the whole message, then the connection "
                f"failed before it confirmed it ({exc}): the mail may or may not be delivered",
                "runreport did not send it again, to avoid duplicates; check with a recipient "
                "before sending it again",
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            transient, reason, hint = _explain(exc, settings)
            if not transient:
                raise JobFailed(reason, hint) from exc
            if number == attempts:
                raise JobFailed(f"{reason} (gave up after {attempts} attempts)", hint) from exc
            delay = settings.backoff_seconds * 2 ** (number - 1)
            log.warning(
                "sending mail failed (attempt %d of %d): %s; retrying in %.1f s",
                number, attempts, reason, delay,
            )  # fmt: skip
            time.sleep(delay)
    raise AssertionError("unreachable")


def _explain(exc: BaseException, settings: MailSettings) -> tuple[bool, str, str]:
    """(transient?, one-line reason, hint) for a failed delivery attempt."""
    where = settings.server
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return (
            False,
            f"SMTP server {where} rejected the login of user {settings.user!r}: {_reply(exc)}",
            f"Check --smtp-user / RUNREPORT_SMTP_USER and {PASSWORD_ENV}",
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return (
            all(400 <= code < 500 for code in codes),
            f"SMTP server {where} refused every recipient: {_format_refused(exc.recipients)}",
            "Check the --to addresses",
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return False, f"SMTP server {where}: {exc}", "Check --starttls / --ssl and --smtp-user"
    if isinstance(exc, smtplib.SMTPResponseException):
        return (
            400 <= exc.smtp_code < 500,
            f"SMTP server {where} answered {_reply(exc)}",
            "A 4xx answer is temporary and a 5xx one permanent; see the server's message",
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True, f"SMTP server {where} closed the connection: {exc}", CONNECT_HINT
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            False,
            f"the TLS certificate of {where} is not trusted: {exc.verify_message}",
            "Set RUNREPORT_SMTP_CAFILE to the CA that signed it, or fix --smtp-host",
        )
    if isinstance(exc, ssl.SSLError):
        return (
            False,
            f"TLS with {where} failed: {exc.reason or exc}",
            "Use --starttls for a port like 587, --ssl for a port like 465",
        )
    if isinstance(exc, socket.gaierror):
        return (
            False,
            f"cannot resolve SMTP host {settings.host!r}: {exc.strerror or exc}",
            "Check --smtp-host / RUNREPORT_SMTP_HOST",
        )
    if isinstance(exc, smtplib.SMTPException):
        return False, f"sending to {where} failed: {exc}", CONNECT_HINT
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or repr(exc)
    return True, f"cannot reach SMTP server {where}: {detail}", CONNECT_HINT


def _reply(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {' '.join(text.split())}"


def _format_refused(refused: Mapping[str, tuple[int, bytes | str]]) -> str:
    items = []
    for address, (code, error) in refused.items():
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        items.append(f"{address} ({code} {' '.join(text.split())})")
    return ", ".join(items)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
