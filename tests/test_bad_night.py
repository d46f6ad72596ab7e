"""Issue 22, delivery that survives a bad night: a tracking server that is down at first
is waited for (tracking.retries, with backoff), a failed extract at report time still
mails the leads the report of the last good warehouse with its banner, and failing
extracts notify the on-call once per streak, then once when they recover."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from etl.config import resolve
from etl.errors import JobFailed, LockHeld
from etl.job import extract_notified, notify_extract_outcome
from etl.warehouse.extract_log import read_streak, streak_file
from tests.conftest import build_rich_store, free_port, run_cli, start_mlflow_server
from tests.smtp_servers import smtp_server
from tests.test_job import runreport, today, write_config
from tests.test_job_safety import all_bytes_under, mail_section, subject_of


def with_tracking(config: Path, uri: str, retries: int, timeout: int) -> Path:
    """The config's [tracking] section replaced: `uri`, its retries and its timeout."""
    text = re.sub(r"\[tracking\]\n(?:[^\n]+\n)*\n*", "", config.read_text())
    config.write_text(
        f'[tracking]\nuri = "{uri}"\nretries = {retries}\ntimeout_seconds = {timeout}\n\n{text}'
    )
    return config


@contextmanager
def forwarder(port: int, target: int) -> Iterator[None]:
    """A real TCP listener on 127.0.0.1:`port` passing each connection on to `target`: the
    tracking server coming up on the port the job was refused at."""
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.1)
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()
            source.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(("127.0.0.1", target))
            threading.Thread(target=pump, args=(client, server), daemon=True).start()
            threading.Thread(target=pump, args=(server, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_server_down_at_first_is_retried_until_it_comes_up(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    server = start_mlflow_server(facts.uri)
    try:
        port = free_port()  # nothing listens there yet: connections are refused
        config = with_tracking(
            write_config(tmp_path, f"http://127.0.0.1:{port}"), f"http://127.0.0.1:{port}", 3, 60
        )
        target = int(server.uri.rsplit(":", 1)[1])
        process = runreport("run", "--config", str(config), "--no-email")
        assert process.stderr is not None
        lines = []
        up = None
        for line in process.stderr:
            lines.append(line)
            if up is None and "trying again in" in line:
                up = forwarder(port, target)  # the server comes up during the backoff
                up.__enter__()
        process.wait(timeout=120)
        if up is not None:
            up.__exit__(None, None, None)
    finally:
        server.stop()
    stderr = "".join(lines)
    assert process.returncode == 0, stderr
    retried = [line for line in lines if "trying again in" in line]
    # urllib3 tries again at once after the first failure, then after 2 s (+ jitter): the
    # listener, started on the first line, is up for the second or the third attempt
    assert 1 <= len(retried) <= 2, stderr
    assert (
        f"tracking server at http://127.0.0.1:{port}: Connection refused (attempt 1 of 4)"
        in (retried[0])
    )
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    rows = con.execute("select status, runs_seen from extract_log").fetchall()
    assert rows == [("ok", len(facts.run_ids))], "one extract of every run, deleted ones too"
    assert (tmp_path / "reports" / today() / "index.html").is_file()


def test_server_down_at_report_time_still_mails_the_report(tmp_path: Path) -> None:
    """The leads' mail arrives with the banner; the on-call notice arrives; the previous
    warehouse is untouched; the hourly extracts that keep failing send nothing more, and
    the first success sends one "recovered"."""
    store = build_rich_store(tmp_path / "store")
    smtp_port = free_port()
    config = write_config(tmp_path, store.uri, mail_section(smtp_port))
    with smtp_server(smtp_port) as smtp:
        assert run_cli("run", "--config", str(config)).exit_code == 0
    assert len(smtp.received) == 1  # the good night's report
    warehouse = {p: b for p, b in all_bytes_under(tmp_path).items() if p.name == "runs.duckdb"}
    good_as_of = (
        duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
        .execute("select max(ended_at) from extract_log where status = 'ok'")
        .fetchone()
    )

    dead = f"http://127.0.0.1:{free_port()}"
    with_tracking(config, dead, 1, 10)
    with smtp_server(smtp_port) as smtp:
        result = run_cli("run", "--config", str(config))
    assert result.exit_code == 1, result.output
    assert {p: b for p, b in all_bytes_under(tmp_path).items() if p.name == "runs.duckdb"} == (
        warehouse
    ), "the previous warehouse is byte-equal"
    by_rcpt = {tuple(m.rcpt_tos): m.message() for m in smtp.received}
    assert sorted(by_rcpt) == [("lead@example.com",), ("oncall@example.com",)]

    report = by_rcpt[("lead@example.com",)]
    html = report.get_body(preferencelist=("html",))
    assert html is not None
    banner = re.search(r'id="extract-failed"[^>]*>(.*?)</td>', html.get_content(), re.S)
    assert banner is not None, "the leads' mail carries the banner"
    words = " ".join(re.sub(r"<[^>]+>", "", banner.group(1)).split())
    assert words.startswith("The last extract failed (")
    assert f"cannot reach the tracking server at {dead}: Connection refused" in words
    assert "(unreachable: gave up after 2 attempts in" in words
    assert "This report shows the data as of" in words
    text = report.get_body(preferencelist=("plain",))
    assert text is not None and "THE LAST EXTRACT FAILED" in text.get_content()
    figures = (tmp_path / "reports" / today() / "report.json").read_text()
    assert good_as_of is not None and good_as_of[0] is not None
    assert (
        f'"data_as_of": "{good_as_of[0].astimezone(timezone.utc).isoformat(timespec="seconds")}"'
        in figures
    )

    notice = by_rcpt[("oncall@example.com",)]
    assert subject_of(notice).startswith(
        f"runreport failed: cannot reach the tracking server at {dead}"
    )
    body = " ".join(notice.get_content().split())
    assert "in its extract step" in body
    assert (
        f"The previous warehouse is unchanged. Today's report in {tmp_path / 'reports' / today()}"
        in body
    )
    assert "with the failure on top, and mailed to 1 recipient(s)." in body
    assert len([line for line in result.output.splitlines() if "runreport: error:" in line]) == 1

    # the run's notice opened the streak: the hourly extracts that still fail send nothing
    hourly = resolve(config)
    with smtp_server(smtp_port) as smtp:
        for _ in range(2):
            with pytest.raises(JobFailed):
                extract_notified(hourly, "incremental")
        assert smtp.received == []
        streak = read_streak(hourly.db)
        assert streak is not None and streak.failures == 3 and streak.notified_at is not None
        with_tracking(config, store.uri, 1, 10)
        assert extract_notified(resolve(config), "incremental") is not None
    assert [subject_of(m.message()) for m in smtp.received] == [
        "runreport recovered: the extract succeeded after 3 failed extracts"
    ]
    assert not streak_file(hourly.db).exists()


def test_failing_extracts_notify_once_per_streak(tmp_path: Path) -> None:
    store = build_rich_store(tmp_path / "store")
    smtp_port = free_port()
    config = write_config(tmp_path, store.uri, mail_section(smtp_port))
    good = resolve(config)
    dead = f"http://127.0.0.1:{free_port()}"
    with smtp_server(smtp_port) as smtp:
        assert extract_notified(good, "incremental") is not None  # no streak: no mail
        with_tracking(config, dead, 0, 5)
        failing = resolve(config)
        for hour in range(3):
            with pytest.raises(JobFailed):
                extract_notified(failing, "incremental")
            assert len(smtp.received) == 1, f"hour {hour}: one notice for the whole streak"
            assert read_streak(failing.db) is not None  # kept beside the warehouse
        assert extract_notified(good, "incremental") is not None
        assert extract_notified(good, "incremental") is not None  # no streak: no mail
    subjects = [subject_of(m.message()) for m in smtp.received]
    assert [m.rcpt_tos for m in smtp.received] == [["oncall@example.com"]] * 2
    assert (
        subjects[0]
        == (
            f"runreport extract failed: cannot reach the tracking server at {dead}: Connection "
            "refused (unreachable: gave up after 1 attempt). Start the server or fix --tracking-uri"
            " / MLFLOW_TRACKING_URI; tracking.retries sets how often it is tried"
        )[:139]
        + "…"
    )
    assert subjects[1] == "runreport recovered: the extract succeeded after 3 failed extracts"
    assert "one notice of this failure" in smtp.received[0].message().get_content()
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    statuses = con.execute("select status from extract_log order by extract_id").fetchall()
    assert statuses == [("ok",), ("failed",), ("failed",), ("failed",), ("ok",), ("ok",)]


def test_a_held_lock_is_no_failure_of_the_streak(tmp_path: Path) -> None:
    config = resolve(write_config(tmp_path, "sqlite:///nowhere.db"))
    notify_extract_outcome(config, LockHeld("held by pid 1", "wait"))
    assert not streak_file(config.db).exists()
    started = datetime.now(timezone.utc)
    notify_extract_outcome(config, RuntimeError("boom"))
    streak = read_streak(config.db)
    assert streak is not None and streak.failures == 1 and streak.started_at >= started
    assert streak.notified_at is None  # no on_failure recipients: nobody was told
