"""Each channel's message for one alert: escaping of user names, the required structure
of Slack Block Kit, Teams Adaptive Cards and the webhook document, its signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

from etl.alerts.channels import (
    SIGNATURE_HEADER,
    WEBHOOK_FIELDS,
    WORD_JOINER,
    email_parts,
    slack,
    slack_text,
    teams,
    teams_text,
    webhook,
)
from etl.alerts.model import Alert

ALERT = Alert(
    key="churn regression|3|r1",
    rule="churn regression",
    kind="metric_regression",
    fired_at=datetime(2026, 12, 3, 6, 0, tzinfo=timezone.utc),
    summary="val_auc of run <!channel> @here in churn is 0.71, worse than the previous best",
    experiment_id="3",
    experiment_name="churn",
    run_id="r1",
    run_name="<!channel> @here",
    metric="val_auc",
    value=0.71,
    baseline=0.74,
    delta=-0.03,
    url="https://mlflow.example.com/#/experiments/3/runs/r1",
    report_url="https://reports.example.com/latest/index.html",
    facts=(("Metric", "val_auc"), ("Value", "0.71")),
)


def test_slack_text_escapes_and_defuses() -> None:
    assert slack_text("a & <b> @here http://x") == (
        f"a &amp; &lt;b&gt; @{WORD_JOINER}here http:{WORD_JOINER}//x"
    )


def test_teams_text_escapes_markdown() -> None:
    assert teams_text("[a](b) *c* val_auc 0.71\n- x") == "\\[a\\](b) \\*c\\* val_auc 0.71 - x"
    assert teams_text("@channel") == f"@{WORD_JOINER}channel"


def test_slack_message_structure() -> None:
    body = slack(ALERT).body
    assert [b["type"] for b in body["blocks"]] == [
        "header",
        "section",
        "section",
        "actions",
        "context",
    ]
    assert "<!channel>" not in json.dumps(body)
    assert body["blocks"][3]["elements"][0]["url"] == ALERT.url


def test_teams_card_structure() -> None:
    body = teams(ALERT).body
    card = body["attachments"][0]["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert [item["type"] for item in card["body"]] == [
        "TextBlock",
        "TextBlock",
        "FactSet",
        "TextBlock",
    ]
    assert [a["url"] for a in card["actions"]] == [ALERT.url, ALERT.report_url]


def test_webhook_document_and_signature() -> None:
    message = webhook(ALERT, "k3y")
    body = message.encoded()
    document = json.loads(body)
    assert list(document)[: len(WEBHOOK_FIELDS)] == list(WEBHOOK_FIELDS)
    assert document["experiment"] == {"id": "3", "name": "churn"}
    assert document["run"] == {"id": "r1", "name": "<!channel> @here"}
    assert (document["value"], document["baseline"], document["delta"]) == (0.71, 0.74, -0.03)
    assert document["fired_at"] == "2026-12-03T06:00:00+00:00"
    expected = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert message.headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert SIGNATURE_HEADER not in webhook(ALERT, None).headers


def test_the_alert_survives_the_alerts_table() -> None:
    assert Alert.from_json(ALERT.to_json()) == ALERT


def test_mail_parts_escape_html() -> None:
    subject, text, html = email_parts(ALERT)
    assert subject.startswith("[runreport] Metric regression: val_auc of run")
    assert "Open in MLflow: https://mlflow.example.com/#/experiments/3/runs/r1" in text
    assert "&lt;!channel&gt;" in html and "<!channel>" not in html
