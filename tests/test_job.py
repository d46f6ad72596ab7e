"""`runreport run`: the cron job, its configuration, the lock, and faults mid-run."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import duckdb
import pytest
from croniter import croniter

from etl.cli import cli
from tests.conftest import (
    StoreFacts,
    build_rich_store,
    free_port,
    run_cli,
    start_mlflow_server,
    unstamped,
)
from tests.oracle import table_counts
from tests.perf.make_store import add_runs
from tests.smtp_servers import smtp_server

REPO = Path(__file__).resolve().parent.parent


def write_config(folder: Path, uri: str, extra: str = "") -> Path:
    config = folder / "runreport.toml"
    config.write_text(
        f'[tracking]\nuri = "{uri}"\n\n[warehouse]\npath = "runs.duckdb"\n\n'
        f'[report]\nout = "reports"\nretention_days = 30\n{extra}'
    )
    return config


def runreport(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "etl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


@pytest.fixture()
def store(tmp_path: Path) -> StoreFacts:
    return build_rich_store(tmp_path / "store")


def test_run_extracts_reports_and_links_latest(store: StoreFacts, tmp_path: Path) -> None:
    config = write_config(tmp_path, store.uri)
    old = tmp_path / "reports" / "2020-01-01"
    old.mkdir(parents=True)
    (old / "report.json").write_text('{"date": "2020-01-01"}')  # a report runreport wrote
    (tmp_path / "reports" / "notes").mkdir()

    result = run_cli("run", "--config", str(config))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "reports" / today()
    assert (folder / "index.html").is_file()
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and latest.resolve() == folder.resolve()
    assert not old.exists(), "a folder older than the retention is pruned"
    assert (tmp_path / "reports" / "notes").is_dir(), "folders that are not dates are kept"
    for name in ("extract", "report", "prune"):
        assert f"step {name} done in" in result.output

    result = run_cli("run", "--config", str(config))
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    modes = con.execute("select mode from extract_log order by extract_id").fetchall()
    assert modes == [("full",), ("incremental",)]


def test_run_full_flag_forces_a_full_extract(store: StoreFacts, tmp_path: Path) -> None:
    config = write_config(tmp_path, store.uri)
    assert run_cli("run", "--config", str(config)).exit_code == 0
    assert run_cli("run", "--config", str(config), "--full").exit_code == 0
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    modes = con.execute("select mode from extract_log order by extract_id").fetchall()
    assert modes == [("full",), ("full",)]


@pytest.mark.pure
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("dayz = 7\n", "unknown key report.dayz"),
        ("days = 'seven'\n", "report.days must be a whole number, not 'seven'"),
        ("timezone = 'Mars/Olympus'\n", "report.timezone must be an IANA time zone"),
        ("[mail]\nsecurity = 'tls'\n", "mail.security"),
        ("[metrics]\nrmse = 'down'\n", 'metrics.rmse must be "higher" or "lower"'),
        ("[mailer]\nto = []\n", "unknown section [mailer]"),
    ],
)
def test_config_mistakes_are_one_line_exit_2(tmp_path: Path, extra: str, named: str) -> None:
    config = write_config(tmp_path, "sqlite:///nowhere.db", extra)
    result = run_cli("run", "--config", str(config))
    assert result.exit_code == 2, result.output
    errors = [line for line in unstamped(result.output).splitlines() if "runreport: error" in line]
    assert len(errors) == 1 and named in errors[0], result.output
    assert not (tmp_path / "runs.duckdb").exists()


def test_a_held_lock_means_exit_75_naming_the_holder(store: StoreFacts, tmp_path: Path) -> None:
    config = write_config(tmp_path, store.uri)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from etl.warehouse.lock import warehouse_lock\n"
            "with warehouse_lock(Path(sys.argv[1])):\n"
            "    print('held', flush=True); time.sleep(60)",
            str(tmp_path / "runs.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = run_cli("run", "--config", str(config))
        assert result.exit_code == 75, result.output
        assert f"pid {holder.pid}" in result.output
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: the lock is not an obstacle
    assert run_cli("run", "--config", str(config)).exit_code == 0


def test_two_runs_started_together(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    config = write_config(tmp_path, facts.uri, "")
    config.write_text(config.read_text().replace("[report]", "metric_history = true\n\n[report]"))
    first, second = (
        runreport("run", "--config", str(config)),
        runreport("run", "--config", str(config)),
    )
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 75], outputs
    loser = outputs[[first.returncode, second.returncode].index(75)][1]
    assert "holds the lock" in loser


def test_sigkill_mid_run_keeps_warehouse_and_report(store: StoreFacts, tmp_path: Path) -> None:
    config = write_config(tmp_path, store.uri)
    assert run_cli("run", "--config", str(config)).exit_code == 0
    db = tmp_path / "runs.duckdb"
    report = tmp_path / "reports" / today() / "index.html"
    old_counts, old_report = table_counts(db), report.read_bytes()
    # 200 more runs, so the full extract is still running when it is killed: written by
    # the store generator (tests/perf/make_store.py), not 200 create_run calls (3 s and more)
    add_runs(Path(store.uri.removeprefix("sqlite:///")), 200)

    process = runreport("run", "--config", str(config), "--full")
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("runs.duckdb.runreport-tmp-*")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()

    assert table_counts(db) == old_counts
    assert report.read_bytes() == old_report
    result = run_cli("run", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert table_counts(db)["runs"] == old_counts["runs"] + 200


@pytest.mark.server
def test_tracking_server_gone_mid_extract(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    db = tmp_path / "runs.duckdb"
    server = start_mlflow_server(facts.uri)
    try:
        assert run_cli("extract", "--tracking-uri", server.uri, "--db", str(db)).exit_code == 0
        old_counts = table_counts(db)
        # no retries: a server that stays gone fails the extract at once (tests/test_bad_night.py
        # has the retries)
        env = {"RUNREPORT_TRACKING_RETRIES": "0"}
        process = runreport(
            "extract",
            "--tracking-uri",
            server.uri,
            "--db",
            str(db),
            "--page-size",
            "1",
            "--metric-history",
            "--workers",
            "1",
            env=env,
        )
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("runs.duckdb.runreport-tmp-*")):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        server.stop()
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 1, stderr
    errors = [line for line in unstamped(stderr).splitlines() if "runreport: error" in line]
    assert len(errors) == 1 and server.uri in errors[0], stderr
    assert table_counts(db) == old_counts
    assert not list(tmp_path.glob("runs.duckdb.runreport-tmp-*"))


def cron_commands() -> list[list[str]]:
    commands = []
    for line in (REPO / "cron.example").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" in line.split()[0]:
            continue
        fields = line.split(None, 5)
        assert croniter.is_valid(" ".join(fields[:5])), line
        words = shlex.split(fields[5].split(";")[-1].split(">>")[0])
        assert words[0].startswith("/") and words[0].endswith("/runreport"), line
        commands.append(words[1:])
    return commands


@pytest.mark.pure
def test_cron_example_lines_are_valid_commands() -> None:
    commands = cron_commands()
    assert [c[0] for c in commands] == ["extract", "run", "extract"]
    for words in commands:
        command = cli.commands[words[0]]
        # parses every option the line uses, exactly as the CLI would
        command.make_context(words[0], list(words[1:]), parent=click.Context(cli))


@pytest.mark.pure
def test_example_config_is_valid() -> None:
    from etl.config import load_config

    config = load_config(REPO / "runreport.example.toml")
    assert config.mail_to == ["ml-leads@example.com"]
    assert config.timezone == "UTC"


def test_run_emails_the_report_to_the_configured_recipients(
    store: StoreFacts, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        store.uri,
        f'\n[mail]\nto = ["lead@example.com", "ds@example.com"]\nfrom = "rr@example.com"\n'
        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\n',
    )
    with smtp_server(port) as server:
        result = run_cli("run", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "step email done in" in result.output
    assert len(server.received) == 1
    mail = server.received[0]
    assert mail.rcpt_tos == ["lead@example.com", "ds@example.com"]
    figures = json.loads((tmp_path / "reports" / today() / "report.json").read_text())
    expected = (
        f"First report: {figures['new_runs']} new runs in the last 7 days, "
        f"{figures['failed']} failed ({figures['date']})"
    )
    assert mail.message()["Subject"] == expected == f"{figures['headline']} ({figures['date']})"


def test_a_failed_run_sends_a_notice_and_no_report(tmp_path: Path) -> None:
    port = free_port()
    dead_server = f"http://127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path,
        dead_server,
        f'\n[mail]\nto = ["lead@example.com"]\non_failure = ["oncall@example.com"]\n'
        f'from = "rr@example.com"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n',
    )
    with smtp_server(port) as server:  # tried once: the retries are tests/test_bad_night.py's
        result = run_cli("run", "--config", str(config), env={"RUNREPORT_TRACKING_RETRIES": "0"})
    assert result.exit_code == 1, result.output
    assert [m.rcpt_tos for m in server.received] == [["oncall@example.com"]]
    notice = server.received[0].message()
    assert notice["Subject"].startswith("runreport failed: cannot reach the tracking server")
    assert "previous warehouse and report are unchanged" in notice.get_content()
    assert not (tmp_path / "reports" / today()).exists()
