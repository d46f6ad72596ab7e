"""What a rule found: one alert, with everything every channel's message is built from.

Names (experiment, run, rule, assessment) are user input and stay raw here; each channel
escapes them for its own format (etl/alerts/channels.py)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

# What each kind is called in a message's heading.
KIND_TITLES = {
    "metric_regression": "Metric regression",
    "new_best": "New best run",
    "best_removed": "Best run removed",
    "failure_rate": "Failure spike",
    "stuck_runs": "Stuck run",
    "trace_error_rate": "Trace error rate",
    "latency_p95_ms": "Trace latency p95",
    "assessment_pass_rate": "Assessment pass rate",
    "daily_cost": "Trace cost",
    "report_digest": "Daily report",
}


@dataclass(frozen=True)
class Alert:
    key: str  # stable: rule, experiment, run or window
    rule: str  # the rule's name
    kind: str
    fired_at: datetime
    summary: str  # one plain line, names unescaped
    experiment_id: str | None = None
    experiment_name: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    metric: str | None = None
    value: float | None = None
    baseline: float | None = None
    delta: float | None = None
    url: str = ""  # the run's or experiment's page in the MLflow UI; "" when unknown
    report_url: str = ""  # the latest report, with report.public_url
    facts: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (label, value)

    @property
    def title(self) -> str:
        return KIND_TITLES.get(self.kind, self.kind)

    def to_json(self) -> str:
        """Kept in the alerts table, so a delivery retried at the next run sends the very
        message it would have sent."""
        data = asdict(self)
        data["fired_at"] = self.fired_at.isoformat()
        return json.dumps(data, sort_keys=True, allow_nan=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> Alert:
        data: dict[str, Any] = json.loads(text)
        data["fired_at"] = datetime.fromisoformat(data["fired_at"])
        data["facts"] = tuple(tuple(pair) for pair in data.get("facts") or ())
        return cls(**data)


@dataclass
class AlertRunSummary:
    """What one evaluation did: alerts sent, still pending (retried at the next run),
    marked failed after alerting.max_attempts, and warnings (failed attempts, rules that
    could not be evaluated) for extract_log.warnings."""

    sent: int = 0
    pending: int = 0
    failed: int = 0
    warnings: int = 0
    new: int = 0  # alerts the rules found this time (per channel)
    problems: list[str] = field(default_factory=list)  # one line per warning
    previews: list[str] = field(default_factory=list)  # --dry-run: what would be sent

    def describe(self) -> str:
        return (
            f"alerts: {self.new} new, {self.sent} sent, {self.pending} pending, "
            f"{self.failed} failed, {self.warnings} warnings"
        )
