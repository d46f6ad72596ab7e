"""The one delivery helper: an HTTP POST with a timeout, retried with backoff on a
refused connection, a timeout or an HTTP 5xx (urllib3's Retry, through requests), and
the mail channel through etl.mail's SMTP helpers (which retry themselves)."""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from etl.errors import RunreportError
from etl.redact import redact_text

USER_AGENT = "runreport-alerts"


class DeliveryFailed(Exception):
    """One delivery failed after its retries; the message never holds the URL."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2  # after the first try
    backoff_seconds: float = 1.0  # before the first retry, doubling
    timeout_seconds: float = 10.0


def _session(policy: RetryPolicy) -> requests.Session:
    retry = Retry(
        total=policy.retries,
        connect=policy.retries,
        read=policy.retries,
        status=policy.retries,
        other=0,
        backoff_factor=policy.backoff_seconds,
        status_forcelist=list(range(500, 600)),
        allowed_methods=None,  # POST too: a receiver that saw a request twice is told the key
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def post(url: str, body: bytes, headers: dict[str, str], policy: RetryPolicy) -> None:
    """POST `body` as JSON to `url`; DeliveryFailed after the retries (the URL, a secret,
    appears in no message)."""
    sent_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    try:
        with _session(policy) as session:
            reply = session.post(
                url, data=body, headers=sent_headers, timeout=policy.timeout_seconds
            )
    except requests.exceptions.RetryError as exc:
        raise DeliveryFailed(
            f"still failing after {policy.retries} retries ({_reason(exc)})"
        ) from None
    except requests.exceptions.Timeout:
        raise DeliveryFailed(f"no answer within {policy.timeout_seconds:g} s") from None
    except requests.exceptions.ConnectionError as exc:
        raise DeliveryFailed(f"cannot connect ({_reason(exc)})") from None
    except requests.exceptions.RequestException as exc:
        raise DeliveryFailed(_reason(exc)) from None
    if reply.status_code >= 300:
        raise DeliveryFailed(f"HTTP {reply.status_code} {redact_text(reply.text[:200])}".strip())


def _reason(exc: BaseException) -> str:
    """The innermost cause's class and words, without the URL."""
    cause: BaseException = exc
    while cause.__cause__ is not None or (cause.args and isinstance(cause.args[0], BaseException)):
        cause = cause.__cause__ or cause.args[0]
    text = str(cause)
    for marker in ("Max retries exceeded", "HTTPConnectionPool", "HTTPSConnectionPool"):
        if marker in text:
            text = ""
    if "timed out" in str(exc).lower() or "timeout" in type(cause).__name__.lower():
        return "timed out"
    if "Connection refused" in str(exc):
        return "connection refused"
    if "too many 5" in str(exc).lower() or "error responses" in str(exc):
        return "HTTP 5xx"
    return redact_text(f"{type(cause).__name__}{': ' + text if text else ''}")


def env_url(variable: str) -> str:
    """A webhook URL from the environment, or DeliveryFailed naming the variable."""
    url = os.environ.get(variable, "").strip()
    if not url:
        raise DeliveryFailed(f"{variable} is not set (the channel's url_env)")
    if not url.startswith(("https://", "http://")):
        raise DeliveryFailed(f"{variable} does not hold an http(s) URL")
    return url


def send_mail(message: EmailMessage, to: tuple[str, ...], settings: object) -> None:
    """Through etl.mail (its server, security, retries); DeliveryFailed on failure."""
    from etl.mail import MailSettings, send_message  # SMTP: only where mail is configured

    assert isinstance(settings, MailSettings)
    mail = dataclasses.replace(settings, to_addrs=to)
    message["From"] = mail.from_addr
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    domain = mail.from_addr.rsplit("@", 1)[-1].strip(">") or socket.getfqdn()
    message["Message-ID"] = make_msgid("runreport-alert", domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    try:
        send_message(message, mail)
    except RunreportError as exc:
        raise DeliveryFailed(exc.one_line()) from None
