"""Alert delivery on real parts: a real HTTP server on 127.0.0.1 (failing, hanging, down),
real SMTP (aiosmtpd), the CLI (`alerts --dry-run`, `extract --alerts`), hostile names,
the daily digest to chat. One small store, extracted once; each test works on a copy of
its warehouse and evaluates twice: the baseline an hour ago, then now."""

from __future__ import annotations

import json
import re
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient

from etl.alerts import evaluate_and_deliver, post_report_digest
from etl.alerts.channels import WORD_JOINER
from etl.config import Config, resolve
from tests.conftest import free_port, log_run, new_store, run_cli, unstamped
from tests.genai_store import build_genai_store
from tests.http_receiver import http_receiver
from tests.smtp_servers import smtp_server
from tests.templates import isolated

EXPERIMENT = "churn <!channel> @here"
HOSTILE = "<!here> @channel [win](http://evil.example) <http://evil.example|click> *b*"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
BASELINE = NOW - timedelta(hours=1)

RULES = """
[[alerts]]
name = "regression"
kind = "metric_regression"
channels = [{channels}]
"""


@dataclass
class Store:
    folder: Path
    uri: str
    db: Path  # extracted once: copy it


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Five runs of val_auc about 0.80 two to three hours ago, then one at 0.50 (a run
    with a hostile name) half an hour ago."""
    folder = tmp_path_factory.mktemp("alert-channels")
    with isolated(folder):
        uri = new_store(folder)
        client = MlflowClient(uri)
        experiment = client.create_experiment(EXPERIMENT)
        start = NOW - timedelta(hours=3)
        for n, value in enumerate([0.80, 0.81, 0.79, 0.80, 0.805]):
            at = int((start + timedelta(minutes=10 * n)).timestamp() * 1000)
            log_run(client, experiment, f"run {n}", metrics={"val_auc": value}, start_time=at)
        at = int((NOW - timedelta(minutes=31)).timestamp() * 1000)
        log_run(client, experiment, HOSTILE, metrics={"val_auc": 0.50}, start_time=at)
        db = folder / "runs.duckdb"
        result = run_cli("extract", "--tracking-uri", uri, "--db", str(db))
        assert result.exit_code == 0, result.output
    return Store(folder, uri, db)


def setup(
    tmp_path: Path,
    store: Store,
    channels: str,
    routed: str,
    extra: str = "",
    alerting: str = "retries = 0",
) -> tuple[Path, Config]:
    db = tmp_path / "runs.duckdb"
    shutil.copyfile(store.db, db)
    text = (
        f'[tracking]\nuri = "{store.uri}"\n[warehouse]\npath = "{db}"\n'
        '[report]\nmlflow_ui_url = "https://mlflow.example.com"\n'
        "[alerting]\nbackoff_seconds = 0.01\ntimeout_seconds = 1\n"
        f"{alerting}\n{extra}\n{channels}\n{RULES.format(channels=routed)}"
    )
    config_file = tmp_path / "runreport.toml"
    config_file.write_text(text)
    config = resolve(config_file)
    assert evaluate_and_deliver(config, now=BASELINE).new == 0  # the baseline
    return config_file, config


def slack_channel(name: str = "chat") -> str:
    return f'[[channels]]\nname = "{name}"\nkind = "slack"\nurl_env = "ALERT_URL"\n'


def statuses(db: Path) -> list[tuple[str, str, int]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select channel, status, attempts from alerts order by all").fetchall()
    finally:
        con.close()


def test_hostile_names_add_no_mention_and_no_link(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    channels = slack_channel("chat") + (
        '[[channels]]\nname = "teams"\nkind = "teams"\nurl_env = "ALERT_TEAMS_URL"\n'
    )
    with http_receiver() as receiver:
        monkeypatch.setenv("ALERT_URL", receiver.url("/slack"))
        monkeypatch.setenv("ALERT_TEAMS_URL", receiver.url("/teams"))
        _, config = setup(tmp_path, store, channels, '"chat", "teams"')
        summary = evaluate_and_deliver(config, now=NOW)
    assert (summary.new, summary.sent, summary.warnings) == (2, 2, 0)
    slack, teams = (r.body.decode() for r in receiver.requests)
    assert receiver.requests[0].path == "/slack"
    # each format's own syntax of links and mentions, unescaped
    for text, syntax in ((slack, (r"<!", r"<http")), (teams, (r"(?<!\\)\]\(", r"(?<!\\)<"))):
        flat = json.dumps(json.loads(text), ensure_ascii=False)
        for danger in (*syntax, "@here", "@channel", "http://evil"):
            assert not re.search(danger, flat), danger
        assert f"@{WORD_JOINER}here" in flat and f"@{WORD_JOINER}channel" in flat
    body = json.loads(slack)
    mrkdwn = [
        obj
        for block in body["blocks"]
        for obj in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        if isinstance(obj, dict) and obj.get("type") == "mrkdwn"
    ]
    assert mrkdwn and all(obj["verbatim"] is True for obj in mrkdwn)
    assert "&lt;!here&gt;" in body["blocks"][1]["text"]["text"]
    card = json.loads(teams)["attachments"][0]["content"]
    assert "\\[win\\](http" in card["body"][1]["text"]
    assert "\\<!here\\>" in card["body"][1]["text"]


def test_a_500_is_retried_in_the_same_run(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_receiver() as receiver:
        monkeypatch.setenv("ALERT_URL", receiver.url())
        _, config = setup(tmp_path, store, slack_channel(), '"chat"', alerting="retries = 2")
        receiver.fail_next = 2
        summary = evaluate_and_deliver(config, now=NOW)
    assert (len(receiver.refused), len(receiver.requests)) == (2, 1)
    assert (summary.sent, summary.warnings) == (1, 0)
    assert statuses(config.db) == [("chat", "sent", 1)]


def test_a_hanging_endpoint_times_out_and_gets_the_alert_once_next_run(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_receiver() as receiver:
        monkeypatch.setenv("ALERT_URL", receiver.url())
        _, config = setup(tmp_path, store, slack_channel(), '"chat"')
        receiver.hang = threading.Event()
        started = datetime.now(timezone.utc)
        summary = evaluate_and_deliver(config, now=NOW)
        took = (datetime.now(timezone.utc) - started).total_seconds()
        assert (summary.sent, summary.pending, summary.warnings) == (0, 1, 1)
        assert "no answer within 1 s" in summary.problems[0] or "timed out" in summary.problems[0]
        assert took < 10
        receiver.hang.set()
        again = evaluate_and_deliver(config, now=NOW + timedelta(hours=1))
    assert (again.new, again.sent, again.pending) == (0, 1, 0)
    assert len(receiver.requests) == 1
    assert statuses(config.db) == [("chat", "sent", 2)]


def test_after_max_attempts_a_delivery_is_marked_failed(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_URL", f"http://127.0.0.1:{free_port()}/nobody")
    _, config = setup(
        tmp_path, store, slack_channel(), '"chat"', alerting="retries = 0\nmax_attempts = 2"
    )
    first = evaluate_and_deliver(config, now=NOW)
    second = evaluate_and_deliver(config, now=NOW + timedelta(hours=1))
    third = evaluate_and_deliver(config, now=NOW + timedelta(hours=2))
    assert (first.pending, first.failed, first.warnings) == (1, 0, 1)
    assert (second.pending, second.failed, second.warnings) == (0, 1, 1)
    assert (third.pending, third.failed, third.warnings) == (0, 0, 0)
    assert "connection refused" in first.problems[0]
    assert "127.0.0.1" not in " ".join(first.problems + second.problems)  # the URL is a secret
    assert statuses(config.db) == [("chat", "failed", 2)]


def test_mail_channel_sends_a_short_plain_and_html_message(tmp_path: Path, store: Store) -> None:
    with smtp_server(free_port()) as server:
        channels = '[[channels]]\nname = "leads"\nkind = "email"\nto = ["lead@example.com"]\n'
        mail = (
            f'[mail]\nsmtp_host = "127.0.0.1"\nsmtp_port = {server.port}\nfrom = "rr@example.com"'
        )
        _, config = setup(tmp_path, store, channels, '"leads"', mail)
        summary = evaluate_and_deliver(config, now=NOW)
    assert summary.sent == 1
    (received,) = server.received
    assert received.rcpt_tos == ["lead@example.com"]
    message = received.message()
    assert message["Subject"].startswith("[runreport] Metric regression: val_auc of run ")
    plain = message.get_body(("plain",)).get_content()
    html_part = message.get_body(("html",)).get_content()
    assert "Value: 0.5\r\n" in plain or "Value: 0.5\n" in plain
    assert "Open in MLflow: https://mlflow.example.com/#/experiments/" in plain
    assert "&lt;!here&gt;" in html_part and "<!here>" not in html_part


def test_dry_run_prints_and_records_nothing_then_alerts_sends(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_receiver() as receiver:
        monkeypatch.setenv("ALERT_URL", receiver.url())
        config_file, config = setup(tmp_path, store, slack_channel(), '"chat"')
        before = statuses(config.db)
        dry = run_cli("alerts", "--config", str(config_file), "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert receiver.requests == [] and statuses(config.db) == before == []
        assert "--- to chat (slack): regression|" in dry.output
        assert '"type": "header"' in dry.output
        assert "dry run: 1 deliveries would be sent; nothing sent or recorded" in dry.output
        sent = run_cli("alerts", "--config", str(config_file))
        assert sent.exit_code == 0, sent.output
        assert "alerts: 1 new, 1 sent, 0 pending, 0 failed, 0 warnings" in sent.output
        again = run_cli("alerts", "--config", str(config_file))
        assert "alerts: 0 new, 0 sent" in again.output
    assert len(receiver.requests) == 1


def test_extract_alerts_exits_0_and_counts_a_warning_when_the_channel_is_down(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_URL", f"http://127.0.0.1:{free_port()}/down")
    config_file, config = setup(tmp_path, store, slack_channel(), '"chat"')
    result = run_cli("extract", "--incremental", "--alerts", "--config", str(config_file))
    assert result.exit_code == 0, result.output
    assert "will be retried at the next run" in unstamped(result.output)
    con = duckdb.connect(str(config.db), read_only=True)
    warnings = con.execute(
        "select warnings from extract_log order by extract_id desc limit 1"
    ).fetchone()
    con.close()
    assert warnings == (1,)
    assert statuses(config.db) == [("chat", "pending", 1)]


def test_a_full_rebuild_keeps_the_alerts(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_receiver() as receiver:
        monkeypatch.setenv("ALERT_URL", receiver.url())
        config_file, config = setup(tmp_path, store, slack_channel(), '"chat"')
        evaluate_and_deliver(config, now=NOW)
        result = run_cli("extract", "--full", "--config", str(config_file))
        assert result.exit_code == 0, result.output
        assert statuses(config.db) == [("chat", "sent", 1)]
        again = evaluate_and_deliver(config, now=NOW + timedelta(hours=1))
    assert (again.new, len(receiver.requests)) == (0, 1)


def test_daily_cost_without_a_cost_column_is_one_error_for_that_rule_only(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cost = '[[alerts]]\nname = "spend"\nkind = "daily_cost"\nchannels = ["chat"]\n'
    with http_receiver() as receiver:
        monkeypatch.setenv("ALERT_URL", receiver.url())
        db = tmp_path / "runs.duckdb"
        shutil.copyfile(store.db, db)
        con = duckdb.connect(str(db))
        if "total_cost" in {c[0] for c in con.execute("describe traces").fetchall()}:
            con.execute("alter table traces drop column total_cost")
        con.close()
        config_file = tmp_path / "runreport.toml"
        rules = RULES.format(channels='"chat"') + cost
        config_file.write_text(f'[warehouse]\npath = "{db}"\n{slack_channel()}{rules}')
        config = resolve(config_file)
        baseline = evaluate_and_deliver(config, now=BASELINE)
        summary = evaluate_and_deliver(config, now=NOW)
    assert baseline.warnings == 1 and summary.warnings == 1
    assert summary.problems == [
        "alert rule 'spend' (daily_cost): the warehouse's traces have no total_cost column. "
        "Run a full extract with a runreport that reads trace cost (runreport extract --full), "
        "or remove the rule"
    ]
    assert summary.sent == 1  # the regression still went out


def test_the_report_digest_goes_to_chat_once(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_receiver() as receiver:
        monkeypatch.setenv("ALERT_URL", receiver.url())
        config_file, config = setup(tmp_path, store, slack_channel(), '"chat"')
        config.report_channels = ["chat"]  # as report.channels = ["chat"] says
        config.public_url = "https://reports.example.com/rr"
        out = tmp_path / "reports" / "2026-12-03"
        result = run_cli("report", "--config", str(config_file), "--out", str(out))
        assert result.exit_code == 0, result.output
        headline = json.loads((out / "report.json").read_text())["headline"]
        first = post_report_digest(config, out)
        second = post_report_digest(config, out)
    assert (first.sent, second.new, second.sent) == (1, 0, 0)
    (request,) = receiver.requests
    body = request.json()
    assert body["blocks"][0]["text"]["text"] == "Daily report"
    assert headline and body["blocks"][1]["text"]["text"].startswith(headline[:20])
    buttons = next(b for b in body["blocks"] if b["type"] == "actions")["elements"]
    assert buttons[0]["url"] == "https://reports.example.com/rr/2026-12-03/index.html"


def test_daily_cost_over_budget_alerts_once_with_the_warehouse_cost(tmp_path: Path) -> None:
    """The traces' cost as MLflow priced it (gpt-4o and gpt-4o-mini spans), over a budget."""
    genai = build_genai_store(tmp_path / "store")
    db = tmp_path / "runs.duckdb"
    assert run_cli("extract", "--tracking-uri", genai.uri, "--db", str(db)).exit_code == 0
    with duckdb.connect(str(db), read_only=True) as con:
        first, cost = con.execute(
            "select min(request_time), sum(total_cost) from traces"
        ).fetchone()
    assert cost > 0
    config_file = tmp_path / "runreport.toml"
    config_file.write_text(
        f'[warehouse]\npath = "{db}"\n{slack_channel()}'
        '[[alerts]]\nname = "spend"\nkind = "daily_cost"\nmax_usd = 0.000001\n'
        'channels = ["chat"]\n[alerting]\nretries = 0\n'
    )
    with http_receiver() as receiver, pytest.MonkeyPatch.context() as env:
        env.setenv("ALERT_URL", receiver.url())
        config = resolve(config_file)
        assert evaluate_and_deliver(config, now=first - timedelta(minutes=1)).new == 0
        later = datetime.now(timezone.utc)
        fired = evaluate_and_deliver(config, now=later)
        again = evaluate_and_deliver(config, now=later + timedelta(minutes=5))
    assert (fired.new, fired.sent, again.new) == (1, 1, 0)
    (request,) = receiver.requests
    assert f"traces cost {cost:.2f} USD" in request.json()["text"]


def test_run_evaluates_after_its_extract_and_posts_the_digest(tmp_path: Path) -> None:
    """`runreport run`: the first run sets the baseline; failures logged before the second
    fire one failure_rate alert; the day's report goes to chat once (the second run
    rewrites the same dated report)."""
    uri = new_store(tmp_path / "store")
    client = MlflowClient(uri)
    experiment = client.create_experiment("nightly")
    log_run(client, experiment, "ok", metrics={"val_auc": 0.8})
    config_file = tmp_path / "runreport.toml"
    config_file.write_text(
        f'[tracking]\nuri = "{uri}"\n[warehouse]\npath = "{tmp_path / "runs.duckdb"}"\n'
        f'[report]\nout = "{tmp_path / "reports"}"\nchannels = ["chat"]\n'
        f'{slack_channel()}[[alerts]]\nname = "failures"\nkind = "failure_rate"\n'
        'channels = ["chat"]\n[alerting]\nretries = 0\n'
    )
    with http_receiver() as receiver:
        env = {"ALERT_URL": receiver.url()}
        first = run_cli("run", "--config", str(config_file), "--no-email", env=env)
        assert first.exit_code == 0, first.output
        for n in range(4):
            log_run(client, experiment, f"broken {n}", metrics={"val_auc": 0.1}, status="FAILED")
        second = run_cli("run", "--config", str(config_file), "--no-email", env=env)
        assert second.exit_code == 0, second.output
    titles = [request.json()["blocks"][0]["text"]["text"] for request in receiver.requests]
    assert titles == ["Daily report", "Failure spike"]
    assert "4 failed runs" in receiver.requests[1].json()["text"]
