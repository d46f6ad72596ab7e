"""Alerts: rules over the warehouse, delivered once per channel to Slack, Teams, a webhook
or mail (docs/alerts.md). For the job: `evaluate_and_deliver` after an extract,
`post_report_digest` after the report."""

from etl.alerts.digest import DigestRoute, mail_digest_routes, post_report_digest
from etl.alerts.evaluate import evaluate_and_deliver
from etl.alerts.model import Alert, AlertRunSummary

__all__ = [
    "Alert",
    "AlertRunSummary",
    "DigestRoute",
    "evaluate_and_deliver",
    "mail_digest_routes",
    "post_report_digest",
]
