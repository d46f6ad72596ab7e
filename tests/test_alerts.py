"""Alerts over 24 hourly evaluations of a store made through MLflow's API, with planted
events: two regressions, a failure spike, a stuck run, a deleted best, a new best, a GenAI
pass-rate drop. A real HTTP server on 127.0.0.1 stands for Slack, Teams and a webhook;
it is down for three evaluations and gets each pending alert once when it is back.

The store and its 24 hours are built once for the module (runs, traces and feedback are
logged with explicit times between evaluations, each evaluation is given its hour)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource

from etl.alerts import evaluate_and_deliver
from etl.alerts.channels import SIGNATURE_HEADER, WEBHOOK_FIELDS
from etl.config import resolve
from tests.conftest import free_port, log_run, new_store, run_cli
from tests.http_receiver import Receiver, http_receiver
from tests.templates import isolated
from tests.test_entities import fluent_api

JUDGE = AssessmentSource(source_type="LLM_JUDGE", source_id="judge-v1")
SECRET = "s3cret-signing-key"
HOURS = 24
DOWN_HOURS = (19, 20, 21)  # the receiver refuses connections at these evaluations
UI = "https://mlflow.example.com"
PUBLIC = "https://reports.example.com/runreport"

CONFIG = """
[tracking]
uri = "{uri}"
[warehouse]
path = "{db}"
via = "sql"
# the store's times are the scenario's (the last 26 hours): the hourly incremental
# extract re-reads runs started that far back
overlap_minutes = 3000
[report]
zombie_after_hours = 4
mlflow_ui_url = "{ui}"
public_url = "{public}"
[alerting]
retries = 1
backoff_seconds = 0.01
timeout_seconds = 2

[[channels]]
name = "slack"
kind = "slack"
url_env = "ALERT_SLACK_URL"

[[channels]]
name = "teams"
kind = "teams"
url_env = "ALERT_TEAMS_URL"
experiments = ["churn*", "fraud*"]

[[channels]]
name = "hook"
kind = "webhook"
url_env = "ALERT_HOOK_URL"
secret_env = "ALERT_HOOK_SECRET"

[[alerts]]
name = "churn regression"
kind = "metric_regression"
experiments = ["churn*"]
channels = ["slack", "teams", "hook"]

[[alerts]]
name = "fraud rmse"
kind = "metric_regression"
experiments = ["fraud*"]
metric = "rmse"
threshold = 0.5
channels = ["slack", "teams", "hook"]

[[alerts]]
name = "failures"
kind = "failure_rate"
channels = ["slack", "teams", "hook"]

[[alerts]]
name = "stuck"
kind = "stuck_runs"
channels = ["slack", "hook"]

[[alerts]]
name = "best gone"
kind = "best_removed"
channels = ["slack", "teams", "hook"]

[[alerts]]
name = "new best"
kind = "new_best"
experiments = ["churn*"]
channels = ["slack", "hook"]

[[alerts]]
name = "bot quality"
kind = "assessment_pass_rate"
window_hours = 6
min_assessments = 10
channels = ["hook"]
"""

# (rule, hour it must fire at, channels)
EXPECTED = [
    ("stuck", 9, {"slack", "hook"}),
    ("churn regression", 10, {"slack", "teams", "hook"}),
    ("failures", 12, {"slack", "hook"}),
    ("fraud rmse", 14, {"slack", "teams", "hook"}),
    ("bot quality", 16, {"hook"}),
    ("best gone", 19, {"slack", "teams", "hook"}),
    ("new best", 20, {"slack", "hook"}),
]


@dataclass
class Scenario:
    folder: Path
    uri: str
    db: Path
    t0: datetime
    receiver: Receiver
    summaries: dict[int, Any] = field(default_factory=dict)
    sent_by_hour: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # (path, rule)
    run_ids: dict[str, str] = field(default_factory=dict)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def finished(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    at: datetime,
    metrics: dict[str, float] | None = None,
    status: str = "FINISHED",
) -> str:
    """A run that started 10 minutes before `at` and ended at `at`."""
    run_id = log_run(
        client, experiment_id, name, metrics=metrics, status="RUNNING", start_time=ms(at) - 600_000
    )
    if status != "RUNNING":
        client.set_terminated(run_id, status=status, end_time=ms(at))
    return run_id


def traces(experiment_id: str, at: datetime, passed: list[bool]) -> None:
    """One trace per verdict, started at `at`, with the judge's feedback `correct`."""
    ids = []
    for number, verdict in enumerate(passed):
        start = int((at.timestamp() + number) * 1e9)
        span = mlflow.start_span_no_context(
            "chat", start_time_ns=start, experiment_id=experiment_id
        )
        span.end(end_time_ns=start + 200_000_000)
        ids.append((span.trace_id, verdict))
    mlflow.flush_trace_async_logging()
    for trace_id, verdict in ids:
        mlflow.log_feedback(trace_id=trace_id, name="correct", value=verdict, source=JUDGE)


CHURN_VALUES = [0.80, 0.81, 0.79, 0.805, 0.795, 0.80, 0.81, 0.79]


def plant(client: MlflowClient, ids: dict[str, str], hour: int, at: datetime, s: Scenario) -> None:
    """What happens in the hour before the evaluation at `at`."""
    before = at - timedelta(minutes=30)
    churn = 0.60 if hour == 10 else 0.90 if hour == 20 else CHURN_VALUES[hour % 8]
    s.run_ids[f"churn-{hour}"] = finished(
        client, ids["churn"], f"churn {hour}", before, {"val_auc": churn}
    )
    rmse = 2.0 if hour == 14 else 1.0 + 0.05 * (hour % 3)
    finished(client, ids["fraud"], f"fraud {hour}", before, {"rmse": rmse})
    finished(client, ids["nightly"], f"nightly {hour}", before)
    if hour in (3, 12):
        for n in range(1 if hour == 3 else 4):
            finished(client, ids["nightly"], f"broken {hour}.{n}", before, status="FAILED")
    if hour == 5:  # stuck 4 hours after it started: at 08:29 after T0, so seen at hour 9
        s.run_ids["stuck"] = log_run(
            client, ids["nightly"], "hangs", status="RUNNING", start_time=ms(at) - 31 * 60_000
        )
    if hour == 19:
        client.delete_run(s.run_ids["best"])
    traces(ids["bot"], before, [hour not in (15, 16)] * 3)


def history(client: MlflowClient, ids: dict[str, str], t0: datetime, s: Scenario) -> None:
    """Before the first evaluation: a best, a stuck run, failures: never alerted."""
    for n, value in enumerate([0.85, 0.80, 0.81, 0.79, 0.80]):
        run_id = finished(
            client, ids["churn"], f"old churn {n}", t0 - timedelta(hours=5 - n), {"val_auc": value}
        )
        if n == 0:
            s.run_ids["best"] = run_id
    for n in range(5):
        finished(client, ids["fraud"], f"old fraud {n}", t0 - timedelta(hours=5 - n), {"rmse": 1.1})
        finished(
            client, ids["nightly"], f"old broken {n}", t0 - timedelta(hours=2), status="FAILED"
        )
    log_run(
        client, ids["nightly"], "old zombie", status="RUNNING", start_time=ms(t0) - 10 * 3600_000
    )
    traces(ids["bot"], t0 - timedelta(hours=1), [False] * 12)  # a bad day, before


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    folder = tmp_path_factory.mktemp("alerts")
    receiver = Receiver(free_port())
    with isolated(folder) as env:
        uri = new_store(folder)
        client = MlflowClient(uri)
        # the fluent API (traces, feedback) on the store once: each switch opens it anew;
        # traces written as they end (the async writer's flush takes a second each time)
        env.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
        fluent = fluent_api(uri)
        fluent.__enter__()
        ids = {
            name: client.create_experiment(full)
            for name, full in [
                ("churn", "churn-model"),
                ("fraud", "fraud-model"),
                ("nightly", "nightly-train"),
                ("bot", "support-bot"),
            ]
        }
        db = folder / "runs.duckdb"
        config_file = folder / "runreport.toml"
        config_file.write_text(CONFIG.format(uri=uri, db=db, ui=UI, public=PUBLIC))
        for variable, path in (("SLACK", "/slack"), ("TEAMS", "/teams"), ("HOOK", "/hook")):
            env.setenv(f"ALERT_{variable}_URL", receiver.url(path))
        env.setenv("ALERT_HOOK_SECRET", SECRET)
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        t0 = now - timedelta(hours=HOURS + 2)
        s = Scenario(folder, uri, db, t0, receiver)
        history(client, ids, t0, s)
        for hour in range(HOURS + 1):
            at = t0 + timedelta(hours=hour)
            if hour:
                plant(client, ids, hour, at, s)
            result = run_cli("extract", "--incremental", "--config", str(config_file))
            assert result.exit_code == 0, result.output
            config = resolve(config_file)
            seen = len(receiver.requests)
            if hour in DOWN_HOURS:  # nothing listens: connections are refused
                s.summaries[hour] = evaluate_and_deliver(config, now=at)
            else:
                with http_receiver(receiver):
                    s.summaries[hour] = evaluate_and_deliver(config, now=at)
            s.sent_by_hour[hour] = [
                (r.path, r.json().get("rule") or _rule_of(r.json()))
                for r in receiver.requests[seen:]
            ]
        fluent.__exit__(None, None, None)
        yield s


def _rule_of(body: dict[str, Any]) -> str:
    """The rule a Slack or Teams message names (its context line: 'rule NAME · time')."""
    text = json.dumps(body, ensure_ascii=False)
    for rule, _, _ in EXPECTED:
        if f"rule {rule} \u00b7" in text:
            return rule
    return "?"


def test_each_event_reaches_each_channel_exactly_once(scenario: Scenario) -> None:
    delivered = Counter(
        (rule, path.strip("/")) for sent in scenario.sent_by_hour.values() for path, rule in sent
    )
    expected = Counter(
        {(rule, channel): 1 for rule, _, channels in EXPECTED for channel in channels}
    )
    assert delivered == expected
    assert len(scenario.receiver.requests) == 16


def test_each_event_fires_at_its_hour_and_history_never(scenario: Scenario) -> None:
    con = duckdb.connect(str(scenario.db), read_only=True)
    rows = con.execute(
        "select rule, min(fired_at), count(distinct alert_key) from alerts group by rule"
    ).fetchall()
    con.close()
    fired = {rule: (at, keys) for rule, at, keys in rows}
    assert set(fired) == {rule for rule, _, _ in EXPECTED}
    for rule, hour, _ in EXPECTED:
        assert fired[rule] == (scenario.t0 + timedelta(hours=hour), 1), rule
    assert scenario.summaries[0].new == 0  # the baseline: the history is not alerted


def test_a_receiver_down_for_three_runs_gets_each_pending_alert_once(scenario: Scenario) -> None:
    for hour in DOWN_HOURS:
        assert scenario.sent_by_hour[hour] == []
        assert scenario.summaries[hour].warnings >= 1
    assert scenario.summaries[21].pending == 5  # best gone x3, new best x2
    back = Counter((path, rule) for path, rule in scenario.sent_by_hour[22])
    assert back == Counter(
        {
            ("/slack", "best gone"): 1,
            ("/teams", "best gone"): 1,
            ("/hook", "best gone"): 1,
            ("/slack", "new best"): 1,
            ("/hook", "new best"): 1,
        }
    )
    con = duckdb.connect(str(scenario.db), read_only=True)
    outcomes = con.execute(
        "select rule, channel, status, attempts from alerts "
        "where rule in ('best gone', 'new best') order by all"
    ).fetchall()
    con.close()
    # best gone: refused at 19, 20, 21 (one attempt per channel and run), sent at 22; new
    # best waited behind it (a channel that failed in a run is not tried again in it)
    assert outcomes == [
        ("best gone", "hook", "sent", 4),
        ("best gone", "slack", "sent", 4),
        ("best gone", "teams", "sent", 4),
        ("new best", "hook", "sent", 1),
        ("new best", "slack", "sent", 1),
    ]


def test_the_webhook_body_has_the_documented_fields_and_verifies(scenario: Scenario) -> None:
    hooks = [r for r in scenario.receiver.requests if r.path == "/hook"]
    assert len(hooks) == 7
    for request in hooks:
        body = request.json()
        assert set(WEBHOOK_FIELDS) <= set(body)
        digest = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers[SIGNATURE_HEADER] == f"sha256={digest}"
    regression = next(r.json() for r in hooks if r.json()["rule"] == "fraud rmse")
    assert regression["kind"] == "metric_regression"
    assert regression["experiment"]["name"] == "fraud-model"
    assert regression["metric"] == "rmse"
    assert regression["value"] == 2.0
    assert regression["baseline"] == 1.0
    assert regression["delta"] == 1.0
    run_id = regression["run"]["id"]
    experiment_id = regression["experiment"]["id"]
    assert regression["url"] == f"{UI}/#/experiments/{experiment_id}/runs/{run_id}"
    assert regression["report_url"] == f"{PUBLIC}/latest/index.html"
    quality = next(r.json() for r in hooks if r.json()["rule"] == "bot quality")
    assert quality["metric"] == "correct"
    assert quality["value"] == pytest.approx(12 / 18)


def test_slack_and_teams_payloads_have_the_required_structure(scenario: Scenario) -> None:
    slack = [r.json() for r in scenario.receiver.requests if r.path == "/slack"]
    teams = [r.json() for r in scenario.receiver.requests if r.path == "/teams"]
    assert len(slack) == 6 and len(teams) == 3
    for body in slack:
        assert isinstance(body["text"], str) and body["text"]
        types = [block["type"] for block in body["blocks"]]
        assert types[0] == "header" and types[-1] == "context"
        assert set(types) <= {"header", "section", "actions", "context"}
        assert body["blocks"][0]["text"]["type"] == "plain_text"
        buttons = next(b for b in body["blocks"] if b["type"] == "actions")["elements"]
        assert [b["text"]["text"] for b in buttons] == ["Open in MLflow", "Open the report"]
        assert all(b["url"].startswith("https://") for b in buttons)
    for body in teams:
        assert body["type"] == "message"
        (attachment,) = body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
        assert card["body"] and all(
            item["type"] in {"TextBlock", "FactSet"} for item in card["body"]
        )
        assert [a["type"] for a in card["actions"]] == ["Action.OpenUrl"] * 2
