"""Issue 14, the job and mail part: no secret leaves the process, any failure of the hourly
job sends one notice, pruning touches only runreport's folders, a hanging tracking server
is given up on in bounded time, and a lost SMTP reply never resends the report."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import duckdb
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from etl.errors import interrupted_message
from etl.job import MARKER_TEXT, REPORT_MARKER, point_latest
from tests.conftest import StoreFacts, build_rich_store, free_port, run_cli, unstamped
from tests.smtp_servers import smtp_server
from tests.test_job import today, write_config

PASSWORD = "s3cret-Pa55"


@contextmanager
def tcp_server(mode: str) -> Iterator[tuple[int, threading.Event]]:
    """A real TCP server on 127.0.0.1 that accepts every connection, then closes it at once
    ("close") or holds it and never answers ("hang"). Yields its port and an event set on
    the first connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    accepted, stop = threading.Event(), threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.set()
            if mode == "close":
                connection.close()
            else:
                held.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        listener.close()
        for connection in held:
            connection.close()


def mail_section(smtp_port: int, extra: str = "") -> str:
    return (
        f'\n[mail]\nto = ["lead@example.com"]\non_failure = ["oncall@example.com"]\n'
        f'from = "rr@example.com"\nsmtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\n{extra}'
    )


def with_tracking_timeout(config: Path, seconds: int) -> Path:
    text = config.read_text()
    config.write_text(text.replace("[warehouse]", f"timeout_seconds = {seconds}\n\n[warehouse]"))
    return config


def subject_of(message: EmailMessage) -> str:
    """The subject as a mail client shows it (unfolded, on one line)."""
    return " ".join(str(message["Subject"]).split())


def error_lines(output: str) -> list[str]:
    return [line for line in unstamped(output).splitlines() if line.startswith("runreport: error")]


def all_bytes_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.fixture()
def store(tmp_path: Path) -> StoreFacts:
    return build_rich_store(tmp_path / "store")


# 1. one redaction for everything that leaves the process


def test_a_failed_run_leaks_the_tracking_password_nowhere(
    store: StoreFacts, tmp_path: Path
) -> None:
    smtp_port = free_port()
    with tcp_server("close") as (port, _):
        uri = f"http://alice:{PASSWORD}@127.0.0.1:{port}"
        config = with_tracking_timeout(write_config(tmp_path, uri, mail_section(smtp_port)), 5)
        with smtp_server(smtp_port) as smtp:
            result = run_cli("run", "--config", str(config))
    assert result.exit_code == 1, result.output
    assert [m.rcpt_tos for m in smtp.received] == [["oncall@example.com"]]
    notice = smtp.received[0]
    subject = subject_of(notice.message())
    assert subject.startswith("runreport failed: extract from http://alice:***@127.0.0.1"), subject
    assert "API request to http://alice:***@" in subject + notice.message().get_content()
    assert PASSWORD.encode() not in notice.content
    assert PASSWORD not in result.output
    assert len(error_lines(result.output)) == 1, result.output

    # the failure waits beside the warehouse, then lands in extract_log: redacted both times
    pending = tmp_path / "runs.duckdb.failed-extracts.jsonl"
    assert "alice:***@" in pending.read_text()
    ok = run_cli("extract", "--tracking-uri", store.uri, "--db", str(tmp_path / "runs.duckdb"))
    assert ok.exit_code == 0, ok.output
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    failed = con.execute(
        "select tracking_uri, error from extract_log where status = 'failed'"
    ).fetchall()
    con.close()
    assert len(failed) == 1 and failed[0][0].startswith("http://alice:***@127.0.0.1")
    leaking = [
        path for path, data in all_bytes_under(tmp_path).items() if PASSWORD.encode() in data
    ]
    leaking.remove(config)  # the user's own file, the only place it belongs
    assert leaking == []


# 2. any exception in the job sends the notice, once


def broken_templates(folder: Path) -> Path:
    """index.html.j2 that compiles but raises ZeroDivisionError (no RunreportError) at render."""
    folder.mkdir()
    (folder / "index.html.j2").write_text("<p>{{ figures.runs // 0 }}</p>\n")
    return folder


def test_an_unforeseen_exception_sends_exactly_one_notice(
    store: StoreFacts, tmp_path: Path
) -> None:
    smtp_port = free_port()
    templates = broken_templates(tmp_path / "templates")
    config = write_config(
        tmp_path, store.uri, f'templates = "{templates}"\n{mail_section(smtp_port)}'
    )
    with smtp_server(smtp_port) as smtp:
        result = run_cli("run", "--config", str(config))
    assert result.exit_code == 1, result.output
    assert error_lines(result.output) == [
        "runreport: error: ZeroDivisionError: integer division or modulo by zero. "
        "Set RUNREPORT_DEBUG=1 to see the traceback"
    ]
    assert [m.rcpt_tos for m in smtp.received] == [["oncall@example.com"]]
    notice = smtp.received[0].message()
    assert (
        subject_of(notice)
        == "runreport failed: ZeroDivisionError: integer division or modulo by zero"
    )
    body = notice.get_content()
    assert "in its report step" in body
    assert "The warehouse was updated; the previous report is unchanged." in body
    assert not (tmp_path / "reports" / today()).exists()


def test_a_local_file_error_is_not_called_a_tracking_failure(
    store: StoreFacts, tmp_path: Path
) -> None:
    smtp_port = free_port()
    (tmp_path / "blocker").write_text("a file where the reports folder should go")
    config = write_config(tmp_path, store.uri, mail_section(smtp_port))
    config.write_text(config.read_text().replace('out = "reports"', 'out = "blocker/reports"'))
    with smtp_server(smtp_port) as smtp:
        result = run_cli("run", "--config", str(config))
    assert result.exit_code == 1, result.output
    assert len(smtp.received) == 1
    notice = smtp.received[0].message()
    assert subject_of(notice).startswith("runreport failed: local file error: ")
    assert "blocker" in subject_of(notice)
    assert "tracking" not in subject_of(notice) + notice.get_content()


def test_no_email_means_no_failure_notice_either(tmp_path: Path) -> None:
    smtp_port = free_port()
    config = write_config(tmp_path, f"http://127.0.0.1:{free_port()}", mail_section(smtp_port))
    with smtp_server(smtp_port) as smtp:  # tried once: the retries are test_bad_night.py's
        result = run_cli(
            "run", "--config", str(config), "--no-email", env={"RUNREPORT_TRACKING_RETRIES": "0"}
        )
    assert result.exit_code == 1, result.output
    assert smtp.received == []
    help_text = " ".join(run_cli("run", "--help").output.split())
    assert "neither the report nor the [mail] on_failure notice" in help_text


# 3. retention_days


@pytest.mark.pure
@pytest.mark.parametrize("days", [0, -1])
def test_retention_days_below_one_is_exit_2(tmp_path: Path, days: int) -> None:
    config = write_config(tmp_path, "sqlite:///nowhere.db")
    config.write_text(config.read_text().replace("retention_days = 30", f"retention_days = {days}"))
    result = run_cli("run", "--config", str(config))
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == [
        f"runreport: error: {config}: report.retention_days must be at least 1, not {days}. "
        "Fix the value"
    ]
    assert not (tmp_path / "runs.duckdb").exists()


def test_prune_removes_only_report_folders_runreport_wrote(
    store: StoreFacts, tmp_path: Path
) -> None:
    config = write_config(tmp_path, store.uri)
    config.write_text(config.read_text().replace("retention_days = 30", "retention_days = 1"))
    reports = tmp_path / "reports"
    ours_old = reports / "2020-01-01"  # written by the job, before the marker existed
    ours_old.mkdir(parents=True)
    (ours_old / "report.json").write_text('{"date": "2020-01-01"}')
    marked = reports / "2020-01-03"
    marked.mkdir()
    (marked / REPORT_MARKER).write_text(MARKER_TEXT)
    theirs = reports / "2020-01-02"  # someone's folder that happens to be named like a date
    (theirs / "notes").mkdir(parents=True)
    (theirs / "notes" / "plan.txt").write_text("keep me")
    compact = reports / "20200104"  # a date to fromisoformat, not a name the job writes
    compact.mkdir()
    (compact / "report.json").write_text('{"date": "20200104"}')

    result = run_cli("run", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "step prune done in" in result.output and "removed=2" in result.output
    assert not ours_old.exists() and not marked.exists()
    assert (theirs / "notes" / "plan.txt").read_text() == "keep me"
    assert compact.is_dir()
    new = reports / today()
    assert (new / REPORT_MARKER).is_file() and (new / "index.html").is_file()


# 4. a hanging tracking server


@pytest.mark.parametrize("where", ["env", "config"])
def test_a_hanging_tracking_server_fails_in_bounded_time(tmp_path: Path, where: str) -> None:
    with tcp_server("hang") as (port, accepted):
        config = write_config(tmp_path, f"http://127.0.0.1:{port}")
        env = {"RUNREPORT_TRACKING_TIMEOUT": "2"} if where == "env" else None
        if where == "config":
            with_tracking_timeout(config, 2)
        started = time.monotonic()
        result = run_cli("run", "--config", str(config), env=env)
        seconds = time.monotonic() - started
    assert accepted.is_set()
    assert result.exit_code == 1, result.output
    assert seconds < 20, f"took {seconds:.1f} s"
    errors = error_lines(result.output)
    assert len(errors) == 1 and "ReadTimeoutError" in errors[0], result.output
    assert "WARNING" not in result.output, result.output


@pytest.mark.pure
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", " must be at least 1, not 0"),
        ("-5", " must be at least 1, not -5"),
        ("nan", "='nan' is not a number"),
        ("soon", "='soon' is not a number"),
    ],
)
def test_a_bad_tracking_timeout_is_exit_2(tmp_path: Path, value: str, problem: str) -> None:
    config = write_config(tmp_path, "sqlite:///nowhere.db")
    result = run_cli("run", "--config", str(config), env={"RUNREPORT_TRACKING_TIMEOUT": value})
    assert result.exit_code == 2, result.output
    [line] = error_lines(result.output)
    assert line.startswith(f"runreport: error: RUNREPORT_TRACKING_TIMEOUT{problem}"), line


# 5. SMTP


@pytest.fixture()
def warehouse(store: StoreFacts, tmp_path: Path) -> Path:
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", store.uri, "--db", str(db))
    assert result.exit_code == 0, result.output
    return db


class LostReply:
    """Takes the whole message, then hangs up instead of answering the final "."."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes) and server.transport is not None
        self.messages.append(envelope.content)
        server.transport.close()
        return "250 OK (never heard)"


def test_a_lost_reply_after_the_data_is_sent_once_outcome_unknown(
    warehouse: Path, tmp_path: Path
) -> None:
    handler, port = LostReply(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = run_cli(
            "email", "--db", str(warehouse), "--out", str(tmp_path / "out"),
            "--to", "lead@example.com", "--from", "rr@example.com",
            "--smtp-host", "127.0.0.1", "--smtp-port", str(port),
            env={"RUNREPORT_SMTP_BACKOFF": "0"},
        )  # fmt: skip
    finally:
        controller.stop()
    assert result.exit_code == 1, result.output
    assert len(handler.messages) == 1, "sent once, never again"
    errors = error_lines(result.output)
    assert len(errors) == 1, result.output
    assert f"SMTP server 127.0.0.1:{port} received the whole message" in errors[0]
    assert "may or may not be delivered" in errors[0]


@pytest.mark.pure
@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("RUNREPORT_MAIL_TO", "lead@example.com\r\nBcc: spy@evil.example", "line break"),
        ("RUNREPORT_MAIL_TO", "lead@example.com\nspy@evil.example", "line break"),
        ("RUNREPORT_SMTP_BACKOFF", "nan", "finite number"),
        ("RUNREPORT_SMTP_BACKOFF", "inf", "finite number"),
        ("RUNREPORT_SMTP_BACKOFF", "-1", "finite number"),
        ("RUNREPORT_SMTP_TIMEOUT", "inf", "finite number"),
    ],
)
def test_bad_mail_variables_are_exit_2(tmp_path: Path, name: str, value: str, named: str) -> None:
    env = {"RUNREPORT_MAIL_TO": "lead@example.com", name: value}
    result = run_cli("email", "--db", str(tmp_path / "none.duckdb"), env=env)
    assert result.exit_code == 2, result.output
    errors = error_lines(result.output)
    assert len(errors) == 1 and name in errors[0] and named in errors[0], result.output


def test_dry_run_on_a_full_disk_leaves_the_old_eml_whole(warehouse: Path, tmp_path: Path) -> None:
    out, eml = tmp_path / "out", tmp_path / "mail" / "report.eml"
    args = ["email", "--db", str(warehouse), "--out", str(out), "--to", "lead@example.com"]
    assert run_cli(*args, "--dry-run", str(eml)).exit_code == 0
    old = eml.read_bytes()

    def small_disk() -> None:  # no file may grow past half the message
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(old) // 2, len(old) // 2))

    write_again = (
        "import sys; from pathlib import Path; from etl.mail import MailSettings, email_report\n"
        "settings = MailSettings(to_addrs=('lead@example.com',))\n"
        "email_report(Path(sys.argv[1]), settings, dry_run=Path(sys.argv[2]))"
    )
    process = subprocess.run(
        [sys.executable, "-c", write_again, str(out), str(eml)],
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
        timeout=120,
    )
    assert process.returncode == 1, process.stderr
    assert "OSError: [Errno 27] File too large" in process.stderr
    assert eml.read_bytes() == old
    assert sorted(p.name for p in eml.parent.iterdir()) == ["report.eml"]


# 6. Ctrl-C


def test_ctrl_c_during_email_says_what_is_true(warehouse: Path, tmp_path: Path) -> None:
    with tcp_server("hang") as (port, accepted):
        process = subprocess.Popen(
            [
                sys.executable, "-m", "etl", "email", "--db", str(warehouse),
                "--out", str(tmp_path / "out"), "--to", "lead@example.com",
                "--smtp-host", "127.0.0.1", "--smtp-port", str(port),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # as from a terminal: a shell's background job (nohup, `&`) passes SIGINT on
            # ignored, and Python then never raises KeyboardInterrupt
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        assert accepted.wait(120), "runreport email never connected"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.splitlines()[-1] == (
        "runreport: interrupted; the report folder is the previous report or the new one, "
        "whole; the mail may or may not have gone out"
    )
    assert "warehouse" not in stderr


@pytest.mark.pure
def test_interrupt_messages_by_command() -> None:
    assert (
        interrupted_message("extract")
        == "runreport: interrupted; the previous warehouse is unchanged"
    )
    assert interrupted_message("sql") == (
        "runreport: interrupted; nothing was changed (runreport sql only reads)"
    )
    assert interrupted_message(None) == "runreport: interrupted"


# 8. the latest link


@pytest.mark.pure
def test_latest_is_swapped_by_one_rename_and_killed_swaps_are_cleaned(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    for day in ("2024-01-01", "2024-01-02"):
        (out / day).mkdir(parents=True)
    point_latest(out, out / "2024-01-01")
    # a run killed between making its new link and renaming it over `latest`
    (out / ".latest.999999").symlink_to("2024-01-02", target_is_directory=True)
    assert os.readlink(out / "latest") == "2024-01-01"
    point_latest(out, out / "2024-01-02")
    assert os.readlink(out / "latest") == "2024-01-02"
    assert sorted(p.name for p in out.iterdir()) == ["2024-01-01", "2024-01-02", "latest"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('\n[mail]\nto = ["a@example.com"]\nsubject = "{nope"\n', "the subject template '{nope'"),
        ('templates = "nowhere"\n', "templates folder"),
    ],
)
def test_template_mistakes_fail_before_the_extract(tmp_path: Path, extra: str, named: str) -> None:
    facts = build_rich_store(tmp_path / "store")
    config = write_config(tmp_path, facts.uri, extra)  # extra lands in [report]
    result = run_cli("run", "--config", str(config))
    assert result.exit_code == 2, result.output
    [line] = error_lines(result.output)
    assert named in line, line
    assert not (tmp_path / "runs.duckdb").exists(), "no extract ran"


@pytest.mark.pure
@pytest.mark.parametrize("uri", ["sqlite:/seed.db", "sqlite://seed.db"])
def test_a_sqlite_uri_with_too_few_slashes_is_named_whole(tmp_path: Path, uri: str) -> None:
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(tmp_path / "w.duckdb"))
    assert result.exit_code == 2, result.output
    [line] = error_lines(result.output)
    assert f"the tracking URI {uri!r} is not a SQLite URI" in line, line
