"""Mailing the report: the real report folder, a real aiosmtpd server, real TLS, a real
browser rendering the HTML part."""

from __future__ import annotations

import base64
import email
import json
import logging
import re
import shutil
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient

from etl.config import default, resolve
from etl.errors import ConfigError, JobFailed
from etl.mail import (
    MailSettings,
    email_report,
    inline_image_names,
    send_failure_notice,
)
from etl.report.model import REPORT_JSON, SUBJECT_FIELDS
from etl.report.render import render_report
from tests.conftest import free_port, log_run, new_store, run_cli, unstamped
from tests.smtp_servers import make_tls, smtp_server

RECIPIENTS = ("ops@example.com", "Ann Lee <ann@example.org>", "bo@example.net")
BARE_RECIPIENTS = ["ops@example.com", "ann@example.org", "bo@example.net"]


# --- a real report: an MLflow store, extracted by the CLI, rendered by etl.report ---------

NOW = datetime.now(timezone.utc).replace(microsecond=0)
HOUR_MS = 3_600_000


def ms_ago(hours: float) -> int:
    return int(NOW.timestamp() * 1000 - hours * HOUR_MS)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs in and out of the 7-day window, failed in and out of it, a deleted run."""
    folder = tmp_path_factory.mktemp("mail-store")
    uri = new_store(folder)
    client = MlflowClient(uri)
    churn = client.create_experiment("churn-model")
    vision = client.create_experiment("vision")
    for index in range(3):
        log_run(client, churn, f"rf-{index}", metrics={"mse": 1.5 + index}, start_time=ms_ago(2))
    log_run(client, churn, "crashed", status="FAILED", start_time=ms_ago(3))
    log_run(client, churn, "old crash", status="FAILED", start_time=ms_ago(24 * 20))
    log_run(client, churn, "old run", metrics={"mse": 9.0}, start_time=ms_ago(24 * 20))
    log_run(client, vision, "training", status="RUNNING", start_time=ms_ago(1))
    log_run(client, vision, "resnet", metrics={"mse": 0.25}, start_time=ms_ago(5))
    client.delete_run(log_run(client, vision, "thrown away", start_time=ms_ago(4)))
    db = folder / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(db))
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture(scope="module")
def report_dir(warehouse: Path) -> Path:
    return render_report(warehouse, warehouse.parent / "reports", now=NOW).out


def warehouse_counts(db: Path) -> tuple[int, int]:
    """(new runs, failed runs) of the last 7 days, straight from the warehouse tables."""
    window_start = NOW - timedelta(days=7)
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "select count(*), count(*) filter (where runs.status = 'FAILED') "
            "from runs join experiments using (experiment_id) "
            "where runs.lifecycle_stage = 'active' and experiments.lifecycle_stage = 'active' "
            "and runs.start_time >= ?",
            [window_start],
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return row[0], row[1]


# --- helpers -----------------------------------------------------------------------------


def settings_for(port: int, **overrides: object) -> MailSettings:
    values: dict = {
        "to_addrs": RECIPIENTS,
        "from_addr": "runreport@example.com",
        "host": "127.0.0.1",
        "port": port,
        "retries": 2,
        "backoff_seconds": 0.01,
        "timeout": 10,
    }
    values.update(overrides)
    return MailSettings(**values)


def related_images(message: EmailMessage) -> dict[str, EmailMessage]:
    """Content-ID (without <>) -> part, for every part that has one."""
    return {part["Content-ID"].strip("<>"): part for part in message.walk() if part["Content-ID"]}


def html_part(message: EmailMessage) -> EmailMessage:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return part


def text_of(part: EmailMessage) -> str:
    """A text part as a mail client shows it: the wire's CRLF line ends read as newlines."""
    return part.get_content().replace("\r\n", "\n")


def file_text(path: Path) -> str:
    """A file's text as a mail part carries it: set_content ends text with a newline."""
    text = path.read_text(encoding="utf-8")
    return text if text.endswith("\n") else text + "\n"


def assert_report_body(message: EmailMessage, report_dir: Path) -> None:
    """The plain and HTML alternatives are the report's files; every cid: is an inline
    image part holding the PNG of that name."""
    alternative = next(p for p in message.walk() if p.get_content_type() == "multipart/alternative")
    plain, related = alternative.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert text_of(plain) == file_text(report_dir / "summary.txt")
    assert related.get_content_type() == "multipart/related"
    html = related.get_payload()[0]
    assert html.get_content_type() == "text/html"
    assert text_of(html) == file_text(report_dir / "email.html")

    referenced = set(re.findall(r"cid:([^\"'\s>]+)", html.get_content()))
    assert referenced, "the email HTML shows no image"
    images = related_images(message)
    assert set(images) == referenced
    for name, part in images.items():
        assert part.get_content_type() == "image/png"
        assert part.get_content_disposition() == "inline"
        assert part.get_content() == (report_dir / name).read_bytes()
        assert part in related.get_payload()


# --- sending -----------------------------------------------------------------------------


def test_report_arrives_at_every_recipient_with_all_parts(
    report_dir: Path, warehouse: Path
) -> None:
    with smtp_server(free_port()) as server:
        line = email_report(report_dir, settings_for(server.port), attach_csv=True)

    [mail] = server.received
    assert mail.mail_from == "runreport@example.com"
    assert mail.rcpt_tos == BARE_RECIPIENTS
    message = mail.message()
    new_runs, failed = warehouse_counts(warehouse)
    assert (new_runs, failed) == (6, 1)  # rf-0..2, crashed, training, resnet; crashed
    # the default subject leads with the headline: the first report has no change to name
    expected_subject = (
        f"First report: {new_runs} new runs in the last 7 days, {failed} failed ({NOW:%Y-%m-%d})"
    )
    assert message["Subject"] == expected_subject
    assert message["From"] == "runreport@example.com"
    assert [a.addr_spec for a in message["To"].addresses] == BARE_RECIPIENTS
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@example.com>")

    assert message.get_content_type() == "multipart/mixed"
    assert_report_body(message, report_dir)
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    csv_files = sorted(p.name for p in report_dir.glob("*.csv"))
    assert sorted(attachments) == csv_files
    for name, part in attachments.items():
        assert part.get_content_type() == "text/csv"
        assert part.get_content_disposition() == "attachment"
        assert part.get_payload(decode=True) == (report_dir / name).read_bytes()

    assert line.startswith(f"sent {expected_subject!r} (")
    assert f"{len(csv_files)} attachments" in line
    assert f"via 127.0.0.1:{server.port}" in line


def test_without_attach_csv_the_message_is_just_the_alternatives(report_dir: Path) -> None:
    with smtp_server(free_port()) as server:
        email_report(report_dir, settings_for(server.port), attach_csv=False)
    message = server.received[0].message()
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_disposition() for p in message.walk()].count("attachment") == 0
    assert_report_body(message, report_dir)


def test_subject_template_takes_any_report_figure(report_dir: Path) -> None:
    template = "[runreport] {experiments} experiments, {running} running, {window_days} days"
    with smtp_server(free_port()) as server:
        email_report(report_dir, settings_for(server.port, subject_template=template))
    # the store: Default, churn-model and vision; "training" still runs
    assert server.received[0].message()["Subject"] == (
        "[runreport] 3 experiments, 1 running, 7 days"
    )


def test_starttls_with_login(report_dir: Path, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    environ = {
        "RUNREPORT_SMTP_HOST": "localhost",
        "RUNREPORT_SMTP_USER": "reporter",
        "RUNREPORT_SMTP_PASSWORD": "s3cret pass",
        "RUNREPORT_SMTP_CAFILE": str(tls.cafile),
        "RUNREPORT_MAIL_FROM": "runreport@example.com",
        "RUNREPORT_MAIL_TO": "ops@example.com, Ann Lee <ann@example.org>",
    }
    with smtp_server(free_port(), starttls=tls, login=("reporter", "s3cret pass")) as server:
        environ |= {"RUNREPORT_SMTP_PORT": str(server.port), "RUNREPORT_SMTP_BACKOFF": "0.01"}
        environ["RUNREPORT_SMTP_SECURITY"] = "starttls"
        settings = mail_settings(environ)
        email_report(report_dir, settings)
    assert server.log.logins == [("reporter", True)]
    [mail] = server.received
    assert mail.rcpt_tos == ["ops@example.com", "ann@example.org"]
    assert_report_body(mail.message(), report_dir)


def test_wrong_password_fails_at_once_without_showing_it(report_dir: Path, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    with smtp_server(free_port(), starttls=tls, login=("reporter", "right")) as server:
        settings = settings_for(
            server.port,
            host="localhost",
            security="starttls",
            cafile=tls.cafile,
            user="reporter",
            password="wrong-horse",
        )
        with pytest.raises(JobFailed) as failure:
            email_report(report_dir, settings)
    assert failure.value.exit_code == 1
    text = failure.value.one_line()
    assert f"SMTP server localhost:{server.port} rejected the login of user 'reporter': 535" in text
    assert "RUNREPORT_SMTP_PASSWORD" in text
    assert "wrong-horse" not in text
    assert "wrong-horse" not in repr(settings)
    assert server.log.logins and all(not ok for _, ok in server.log.logins)
    assert server.log.connections == 1  # authentication failures are not retried
    assert server.log.received == []


def test_untrusted_certificate_is_a_clear_permanent_error(report_dir: Path, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    with smtp_server(free_port(), starttls=tls) as server:
        settings = settings_for(server.port, host="localhost", security="starttls")
        with pytest.raises(JobFailed) as failure:
            email_report(report_dir, settings)
    assert f"the TLS certificate of localhost:{server.port} is not trusted" in str(failure.value)
    assert "RUNREPORT_SMTP_CAFILE" in failure.value.one_line()
    assert server.log.connections == 1


def test_implicit_tls(report_dir: Path, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    with smtp_server(free_port(), implicit_tls=tls) as server:
        settings = settings_for(server.port, security="ssl", cafile=tls.cafile)
        email_report(report_dir, settings)
    assert server.received[0].rcpt_tos == BARE_RECIPIENTS


def test_busy_server_is_retried_until_it_accepts(
    report_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runreport")
    with smtp_server(free_port(), busy_connections=1) as server:
        email_report(report_dir, settings_for(server.port, retries=2))
    assert server.log.connections == 2
    assert len(server.received) == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "attempt 1 of 3" in warning
    assert "answered 421 4.3.2 Service not available" in warning


def test_server_busy_every_time_gives_up_after_the_retries(report_dir: Path) -> None:
    with (
        smtp_server(free_port(), busy_connections=100) as server,
        pytest.raises(JobFailed) as failure,
    ):
        email_report(report_dir, settings_for(server.port, retries=2))
    assert server.log.connections == 3
    assert failure.value.exit_code == 1
    assert str(failure.value) == (
        f"SMTP server 127.0.0.1:{server.port} answered 421 4.3.2 Service not available, "
        "try again later (gave up after 3 attempts)"
    )


def test_server_down_fails_after_the_retries(report_dir: Path) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(JobFailed) as failure:
        email_report(report_dir, settings_for(port, retries=1))
    assert failure.value.exit_code == 1
    assert str(failure.value) == (
        f"cannot reach SMTP server 127.0.0.1:{port}: Connection refused (gave up after 2 attempts)"
    )
    assert "--smtp-host" in failure.value.one_line()


def test_partly_refused_recipients_are_named_and_the_others_get_it(report_dir: Path) -> None:
    to = ("ops@example.com", "nobody@example.com", "bo@example.net")
    with (
        smtp_server(free_port(), refuse={"nobody@example.com"}) as server,
        pytest.raises(JobFailed) as failure,
    ):
        email_report(report_dir, settings_for(server.port, to_addrs=to))
    [mail] = server.received
    assert mail.rcpt_tos == ["ops@example.com", "bo@example.net"]
    assert server.log.connections == 1  # not resent to those who have it
    assert failure.value.exit_code == 1
    assert str(failure.value) == (
        f"the mail went to 2 of 3 recipients; 127.0.0.1:{server.port} refused "
        "nobody@example.com (550 5.1.1 <nobody@example.com>: Recipient address rejected: "
        "User unknown)"
    )


def test_every_recipient_refused_fails_at_once(report_dir: Path) -> None:
    to = ("nobody@example.com",)
    with (
        smtp_server(free_port(), refuse={"nobody@example.com"}) as server,
        pytest.raises(JobFailed, match=r"refused every recipient: nobody@example\.com \(550"),
    ):
        email_report(report_dir, settings_for(server.port, to_addrs=to))
    assert server.log.connections == 1
    assert server.received == []


def test_failure_notice_arrives_as_plain_text() -> None:
    with smtp_server(free_port()) as server:
        settings = settings_for(server.port)
        send_failure_notice(
            settings, ["oncall@example.com"], "runreport failed", "extract failed: boom\n"
        )
    [mail] = server.received
    assert mail.rcpt_tos == ["oncall@example.com"]
    message = mail.message()
    assert message["Subject"] == "runreport failed"
    assert message.get_content_type() == "text/plain"
    assert text_of(message) == "extract failed: boom\n"


# --- dry run -----------------------------------------------------------------------------


def test_dry_run_writes_an_eml_file_and_sends_nothing(report_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.eml"
    port = free_port()  # nothing listens: a send would fail
    line = email_report(report_dir, settings_for(port), attach_csv=True, dry_run=target)
    raw = target.read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert_report_body(message, report_dir)
    assert line.startswith(f"wrote {target} (")
    assert line.endswith("for ops@example.com, ann@example.org, bo@example.net; not sent")


# --- settings ----------------------------------------------------------------------------


def mail_settings(
    environ: dict[str, str], config_file: Path | None = None, **flags: object
) -> MailSettings:
    """MailSettings through the one merge of etl.config, as every command builds them."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        return MailSettings.from_config(resolve(config_file, flags, environ=environ))


@pytest.mark.pure
def test_settings_from_env_and_defaults() -> None:
    environ = {
        "RUNREPORT_MAIL_TO": 'a@example.com,b@example.com , "Doe, Jane" <jane@example.com>',
        "RUNREPORT_SMTP_HOST": "smtp.example.com",
        "RUNREPORT_SMTP_PORT": "2525",
        "RUNREPORT_SMTP_SECURITY": "STARTTLS",
        "RUNREPORT_SMTP_USER": "u",
        "RUNREPORT_SMTP_PASSWORD": "hunter2",
        "RUNREPORT_SMTP_RETRIES": "5",
        "RUNREPORT_SMTP_BACKOFF": "0.5",
        "RUNREPORT_SMTP_TIMEOUT": "12",
    }
    settings = mail_settings(environ)
    assert (settings.retries, settings.backoff_seconds, settings.timeout) == (5, 0.5, 12.0)
    assert settings.to_addrs == (
        "a@example.com",
        "b@example.com",
        '"Doe, Jane" <jane@example.com>',
    )
    assert (settings.host, settings.port, settings.security) == (
        "smtp.example.com",
        2525,
        "starttls",
    )
    assert settings.password == "hunter2"
    assert "hunter2" not in repr(settings)
    # given arguments win over the environment
    given = mail_settings(environ, mail_to=("x@example.com",), smtp_host="relay")
    assert (given.to_addrs, given.host) == (("x@example.com",), "relay")

    bare = mail_settings({})
    assert (bare.host, bare.port, bare.security) == ("localhost", 25, "none")
    assert bare.subject_template == default("mail_subject")
    assert bare.from_addr.startswith("runreport@")
    assert mail_settings({}, smtp_security="ssl").port == 465
    assert mail_settings({}, smtp_security="starttls").port == 587
    with pytest.raises(ConfigError, match="RUNREPORT_SMTP_PORT='smtp' is not a number"):
        mail_settings({"RUNREPORT_SMTP_PORT": "smtp"})


@pytest.mark.pure
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to_addrs": ["not-an-address"]}, "not a valid recipient email address: 'not-an-address'"),
        ({"security": "tls"}, "mail.security must be 'none' or 'starttls' or 'ssl', not 'tls'"),
        ({"port": 70000}, "mail.smtp_port must be between 1 and 65535, not 70000"),
        ({"timeout": 0}, "mail.smtp_timeout must be a finite number ≥ 0.1, not 0.0"),
        ({"user": "u"}, "an SMTP user ('u') is set but RUNREPORT_SMTP_PASSWORD is not"),
        ({"password": "p"}, "RUNREPORT_SMTP_PASSWORD is set but no SMTP user"),
        (
            {"user": "u", "password": "p", "host": "smtp.example.com"},
            "refusing to send the SMTP password unencrypted to smtp.example.com",
        ),
        ({"cafile": Path("/nonexistent/ca.pem")}, "CA file /nonexistent/ca.pem does not exist"),
        (
            {"user": "u", "password": "pässword", "host": "127.0.0.1"},
            "the SMTP user or password has non-ASCII characters, which SMTP AUTH cannot carry",
        ),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as failure:
        MailSettings(**kwargs)
    assert str(failure.value) == message
    assert failure.value.exit_code == 2


def test_no_recipient_is_a_config_error(report_dir: Path) -> None:
    with pytest.raises(ConfigError, match="no mail recipient given") as failure:
        email_report(report_dir, settings_for(free_port(), to_addrs=()))
    assert failure.value.exit_code == 2
    assert "RUNREPORT_MAIL_TO" in failure.value.one_line()


def test_unknown_subject_field_is_a_config_error(report_dir: Path) -> None:
    """Issue 23, item 13: checked with the settings, before any extract or report."""
    with pytest.raises(ConfigError) as failure:
        settings_for(free_port(), subject_template="{date}: {crashes} crashes")
    assert "names {crashes}, which no report has" in str(failure.value)
    assert "{new_runs}" in failure.value.one_line()


def test_every_subject_field_is_in_every_report(report_dir: Path) -> None:
    figures = json.loads((report_dir / REPORT_JSON).read_text(encoding="utf-8"))
    assert set(SUBJECT_FIELDS) <= set(figures)


def test_item13_a_run_with_a_bad_subject_stops_before_its_extract(tmp_path: Path) -> None:
    config = tmp_path / "runreport.toml"
    config.write_text(
        f'[warehouse]\npath = "{tmp_path / "runs.duckdb"}"\n'
        '[mail]\nto = ["lead@example.com"]\nsubject = "{crashes} crashes"\n'
    )
    result = run_cli("run", "--config", str(config))
    assert result.exit_code == 2, result.output
    assert "names {crashes}, which no report has" in unstamped(result.output)
    assert not (tmp_path / "runs.duckdb").exists()


def test_image_missing_from_the_report_folder_is_named(report_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "report"
    shutil.copytree(report_dir, broken)
    name = inline_image_names((broken / "email.html").read_text(encoding="utf-8"))[0]
    (broken / name).unlink()
    with pytest.raises(ConfigError) as failure:
        email_report(broken, settings_for(free_port()), dry_run=tmp_path / "x.eml")
    assert str(failure.value) == f"{broken / name} is missing (email.html shows cid:{name})"
    assert not (tmp_path / "x.eml").exists()


@pytest.mark.pure
def test_missing_report_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere/report\.json is missing") as failure:
        email_report(tmp_path / "nowhere", settings_for(free_port()), dry_run=Path("x.eml"))
    assert "runreport report --out" in failure.value.one_line()


# --- the HTML part in a real browser -----------------------------------------------------


@pytest.mark.browser
def test_html_part_renders_tables_and_images_in_chromium(
    report_dir: Path, tmp_path: Path, chromium: Any
) -> None:
    target = tmp_path / "m.eml"
    email_report(report_dir, settings_for(free_port()), dry_run=target)
    message = email.message_from_bytes(target.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    html = html_part(message).get_content()
    images = related_images(message)
    for name, part in images.items():
        data = base64.b64encode(part.get_content()).decode()
        html = html.replace(f"cid:{name}", f"data:{part.get_content_type()};base64,{data}")
    page_file = tmp_path / "email.html"
    page_file.write_text(html, encoding="utf-8")

    page = chromium.new_page()
    try:
        page.goto(page_file.as_uri())
        failed_table = page.locator("table#failed_runs")
        assert failed_table.is_visible()
        failed_rows = failed_table.locator("tr").all_inner_texts()
        assert len(failed_rows) == 2  # the header and "crashed"; "old crash" is too old
        assert "crashed" in failed_rows[1]
        assert "churn-model" in failed_rows[1]
        assert page.locator("table#leaderboard").is_visible()
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    finally:
        page.close()
    assert len(widths) == len(re.findall(r"<img\b", html))
    assert all(width > 0 for width in widths)
    assert len(images) == len(inline_image_names(html_part(message).get_content()))


@pytest.mark.pure
def test_settings_from_a_run_config_file(tmp_path: Path) -> None:
    config_file = tmp_path / "runreport.toml"
    config_file.write_text(
        "[mail]\n"
        'to = ["ops@example.com", "ann@example.org"]\n'
        'from = "Reports <reports@example.com>"\n'
        'smtp_host = "smtp.example.com"\n'
        'smtp_user = "reporter"\n'
        'security = "ssl"\n'
        'subject = "{date}: {runs} runs"\n',
        encoding="utf-8",
    )
    # precedence: flags, then environment, then the file
    environ = {"RUNREPORT_SMTP_PASSWORD": "pw", "RUNREPORT_SMTP_HOST": "relay.example.net"}
    settings = mail_settings(environ, config_file)
    assert settings.to_addrs == ("ops@example.com", "ann@example.org")
    assert settings.from_addr == "Reports <reports@example.com>"
    assert (settings.host, settings.port, settings.security) == ("relay.example.net", 465, "ssl")
    from_file = mail_settings({"RUNREPORT_SMTP_PASSWORD": "pw"}, config_file)
    assert from_file.host == "smtp.example.com"
    flagged = mail_settings(environ, config_file, smtp_host="flag.example.net")
    assert flagged.host == "flag.example.net"
    assert (settings.user, settings.password) == ("reporter", "pw")
    assert settings.subject_template == "{date}: {runs} runs"


# --- the command line ----------------------------------------------------------------------


def test_email_command_renders_and_sends(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with smtp_server(free_port()) as server:
        result = run_cli(
            "email", "--db", str(warehouse), "--out", str(out),
            "--to", "ops@example.com", "--to", "ann@example.org",
            "--from", "runreport@example.com",
            "--smtp-host", "127.0.0.1", "--smtp-port", str(server.port),
            "--subject", "{new_runs} new runs", "--attach-csv",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    [mail] = server.received
    assert mail.rcpt_tos == ["ops@example.com", "ann@example.org"]
    message = mail.message()
    new_runs, _ = warehouse_counts(warehouse)  # the CLI renders with the real clock
    assert message["Subject"] == f"{new_runs} new runs"
    assert_report_body(message, out)
    assert sorted(p.get_filename() for p in message.iter_attachments()) == sorted(
        p.name for p in out.glob("*.csv")
    )
    assert result.stdout.startswith(f"sent '{new_runs} new runs' (")


def test_email_command_starttls_password_from_env_only(warehouse: Path, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    env = {
        "RUNREPORT_SMTP_PASSWORD": "pa55 word",
        "RUNREPORT_SMTP_CAFILE": str(tls.cafile),
        "RUNREPORT_MAIL_TO": "ops@example.com",
    }
    with smtp_server(free_port(), starttls=tls, login=("reporter", "pa55 word")) as server:
        result = run_cli(
            "email", "--db", str(warehouse), "--out", str(tmp_path / "reports"),
            "--smtp-host", "localhost", "--smtp-port", str(server.port),
            "--starttls", "--smtp-user", "reporter",
            env=env,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert server.log.logins == [("reporter", True)]
    assert server.received[0].rcpt_tos == ["ops@example.com"]
    assert "pa55 word" not in result.output


def test_email_command_dry_run_writes_eml(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.eml"
    result = run_cli(
        "email", "--db", str(warehouse), "--out", str(tmp_path / "reports"),
        "--to", "ops@example.com", "--smtp-port", str(free_port()), "--dry-run", str(target),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    message = email.message_from_bytes(target.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert_report_body(message, tmp_path / "reports")
    assert result.stdout.startswith(f"wrote {target} (")


def test_email_command_without_recipient_exits_2(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = run_cli("email", "--db", str(warehouse), "--out", str(out))
    assert result.exit_code == 2
    assert unstamped(result.stderr).startswith("runreport: error: no mail recipient given.")
    assert not out.exists()  # checked before the render


def test_email_command_server_down_exits_1(warehouse: Path, tmp_path: Path) -> None:
    port = free_port()
    result = run_cli(
        "email", "--db", str(warehouse), "--out", str(tmp_path / "reports"),
        "--to", "ops@example.com", "--smtp-host", "127.0.0.1", "--smtp-port", str(port),
        env={"RUNREPORT_SMTP_RETRIES": "1", "RUNREPORT_SMTP_BACKOFF": "0.01"},
    )  # fmt: skip
    assert result.exit_code == 1
    *retry_logs, error = unstamped(result.stderr).strip().splitlines()
    assert error.startswith(
        f"runreport: error: cannot reach SMTP server 127.0.0.1:{port}: Connection refused "
        "(gave up after 2 attempts). Check --smtp-host/--smtp-port"
    )
    assert len(retry_logs) == 1
    assert "sending mail failed (attempt 1 of 2)" in retry_logs[0]
