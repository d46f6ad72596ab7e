"""[[mail.digests]] (issue 22): `runreport run` mails the leads the whole report and each
team a report of its experiments only, over real SMTP (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from tests.conftest import free_port, log_run, new_store, run_cli
from tests.smtp_servers import smtp_server
from tests.test_job import write_config
from tests.test_job_safety import mail_section


def html_of(message: object) -> str:
    part = message.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    return str(part.get_content())


def test_each_team_gets_only_its_experiments_and_the_leads_get_all(tmp_path: Path) -> None:
    uri = new_store(tmp_path / "store")
    client = MlflowClient(uri)
    churn, vision = client.create_experiment("churn-model"), client.create_experiment("vision")
    log_run(client, churn, "churn best", metrics={"val_auc": 0.9})
    log_run(client, churn, "churn broken", metrics={"val_auc": 0.1}, status="FAILED")
    log_run(client, vision, "vision best", metrics={"accuracy": 0.8})
    port = free_port()
    digests = (
        '\n[[mail.digests]]\nto = ["churn-team@example.com"]\nexperiments = ["churn*"]\n'
        '\n[[mail.digests]]\nto = ["nobody@example.com"]\nexperiments = ["nlp*"]\n'
    )
    config = write_config(tmp_path, uri, mail_section(port) + digests)
    with smtp_server(port) as smtp:
        result = run_cli("run", "--config", str(config))
        assert result.exit_code == 0, result.output
    by_recipient = {tuple(mail.rcpt_tos): mail.message() for mail in smtp.received}
    assert sorted(by_recipient) == [("churn-team@example.com",), ("lead@example.com",)]
    lead = html_of(by_recipient["lead@example.com",])
    team = html_of(by_recipient["churn-team@example.com",])
    assert "churn best" in lead and "vision best" in lead
    assert "churn best" in team and "churn broken" in team
    assert "vision" not in team
    # nothing of the digest is left beside the reports
    assert sorted(p.name for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")) == []
