"""Each channel's message for an alert: Slack (incoming webhook, Block Kit), Teams
(workflow webhook with an Adaptive Card), a generic webhook (one JSON object, signed) and
mail (short plain text + HTML).

Names are user input. Slack: &, <, > escaped (so no <!channel> or <url|link> can be
written) and every text object `verbatim` (Slack then links no URL, channel or mention by
itself). Teams: the markdown characters of links, tags and emphasis backslash-escaped.
Both: an @ or :// in a name gets an invisible word joiner after it, so no client reads
@here, @channel or a URL in it.
Links (MLflow UI, report) are built by runreport (etl/report/links.py), never from names.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from etl.alerts.model import Alert

WORD_JOINER = "\u2060"
SIGNATURE_HEADER = "X-Runreport-Signature-256"
KEY_HEADER = "X-Runreport-Alert-Key"
ADAPTIVE_CARD_VERSION = "1.4"
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
SLACK_TEXT_LIMIT = 3000  # a section's text, per Block Kit
WEBHOOK_FIELDS = (
    "key", "rule", "kind", "experiment", "run", "metric", "value", "baseline", "delta",
    "url", "fired_at",
)  # fmt: skip


@dataclass(frozen=True)
class Message:
    """One HTTP message: the JSON body and its headers."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=False, allow_nan=False).encode("utf-8")


def defuse(text: str) -> str:
    """No mention, no URL: a word joiner after each @ and in each ://."""
    return text.replace("@", "@" + WORD_JOINER).replace("://", ":" + WORD_JOINER + "//")


def slack_text(text: str) -> str:
    """User text for a Slack mrkdwn or plain_text object."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return defuse(escaped)


# The characters of a link ([text](url)), a tag, bold, strike-through and code; an
# intraword _ (val_auc) is no emphasis, and . - + only mean something at a line's start,
# which user text never reaches (its line breaks become spaces).
_TEAMS_MARKDOWN = re.compile(r"([\\`*\[\]<>~])")


def teams_text(text: str) -> str:
    """User text for an Adaptive Card TextBlock or fact (markdown): one line, the
    characters of links, tags and emphasis backslash-escaped."""
    return defuse(_TEAMS_MARKDOWN.sub(r"\\\1", " ".join(text.split())))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cut(text, SLACK_TEXT_LIMIT), "verbatim": True}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def _links(alert: Alert) -> list[tuple[str, str]]:
    found = []
    if alert.url:
        found.append(("Open in MLflow", alert.url))
    if alert.report_url:
        found.append(("Open the report", alert.report_url))
    return found


def slack(alert: Alert) -> Message:
    """An incoming-webhook payload: `text` (the notification) and Block Kit blocks."""
    summary = slack_text(alert.summary)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(alert.title)},
        {"type": "section", "text": _mrkdwn(summary)},
    ]
    if alert.facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    _mrkdwn(f"*{slack_text(label)}*\n{slack_text(value)}")
                    for label, value in alert.facts[:10]  # Block Kit allows 10 fields
                ],
            }
        )
    links = _links(alert)
    if links:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": _plain(label), "url": url} for label, url in links
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(f"rule {slack_text(alert.rule)} · {alert.fired_at:%Y-%m-%d %H:%M} UTC")
            ],
        }
    )
    return Message({"text": _cut(f"{alert.title}: {summary}", SLACK_TEXT_LIMIT), "blocks": blocks})


def adaptive_card(body: list[dict[str, Any]], links: list[tuple[str, str]]) -> dict[str, Any]:
    """A Teams workflow-webhook payload: a message with one Adaptive Card."""
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
    }
    if links:
        card["actions"] = [{"type": "Action.OpenUrl", "title": t, "url": u} for t, u in links]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def teams(alert: Alert) -> Message:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": alert.title, "weight": "Bolder", "size": "Medium"},
        {"type": "TextBlock", "text": teams_text(alert.summary), "wrap": True},
    ]
    if alert.facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": teams_text(label), "value": teams_text(value)}
                    for label, value in alert.facts
                ],
            }
        )
    body.append(
        {
            "type": "TextBlock",
            "text": teams_text(f"rule {alert.rule} · {alert.fired_at:%Y-%m-%d %H:%M} UTC"),
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    return Message(adaptive_card(body, _links(alert)))


def webhook_document(alert: Alert) -> dict[str, Any]:
    """The generic webhook's JSON object (docs/alerts.md lists its fields)."""
    return {
        "key": alert.key,
        "rule": alert.rule,
        "kind": alert.kind,
        "experiment": {"id": alert.experiment_id, "name": alert.experiment_name}
        if alert.experiment_id is not None
        else None,
        "run": {"id": alert.run_id, "name": alert.run_name} if alert.run_id else None,
        "metric": alert.metric,
        "value": alert.value,
        "baseline": alert.baseline,
        "delta": alert.delta,
        "url": alert.url or None,
        "fired_at": alert.fired_at.isoformat(),
        "summary": alert.summary,
        "report_url": alert.report_url or None,
    }


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook(alert: Alert, secret: str | None) -> Message:
    message = Message(webhook_document(alert), {KEY_HEADER: alert.key})
    if secret:
        message.headers[SIGNATURE_HEADER] = sign(message.encoded(), secret)
    return message


def for_channel(kind: str, alert: Alert, secret: str | None = None) -> Message:
    if kind == "slack":
        return slack(alert)
    if kind == "teams":
        return teams(alert)
    return webhook(alert, secret)


def email_parts(alert: Alert) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of an alert's mail."""
    subject = " ".join(f"[runreport] {alert.title}: {alert.summary}".split())[:200]
    lines = [alert.summary, ""]
    lines += [f"{label}: {value}" for label, value in alert.facts]
    lines += [f"{label}: {url}" for label, url in _links(alert)]
    lines += ["", f"rule {alert.rule} · {alert.fired_at:%Y-%m-%d %H:%M} UTC"]
    e = html.escape
    rows = "".join(f"<tr><th align='left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in alert.facts)
    links = " · ".join(f"<a href='{e(url)}'>{e(label)}</a>" for label, url in _links(alert))
    body = (
        f"<p><b>{e(alert.title)}</b>: {e(alert.summary)}</p>"
        + (f"<table>{rows}</table>" if rows else "")
        + (f"<p>{links}</p>" if links else "")
        + f"<p style='color:#666'>rule {e(alert.rule)} · {alert.fired_at:%Y-%m-%d %H:%M} UTC</p>"
    )
    return subject, "\n".join(lines) + "\n", f"<html><body>{body}</body></html>"


def email_message(subject: str, text: str, html_body: str) -> EmailMessage:
    """The plain + HTML part of a message; etl.mail adds the envelope when sending."""
    message = EmailMessage()
    message["Subject"] = subject
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message
