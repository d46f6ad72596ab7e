"""Issue 22, running it where teams run jobs: the systemd service + timer pairs pass
`systemd-analyze verify` and run commands that exist; the Dockerfile installs the project
and runs `runreport run --config ...` with a mounted config and warehouse folder."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
INSTALLED = "/opt/runreport/.venv/bin/runreport"  # where docs/deploy.md installs it
PAIRS = {"runreport": ["run"], "runreport-extract": ["extract", "--incremental"]}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string((DEPLOY / name).read_text(), source=name)
    return parser


@pytest.mark.pure
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_each_service_has_a_timer_and_runs_an_existing_command(name: str) -> None:
    service, timer = unit(f"{name}.service"), unit(f"{name}.timer")
    assert timer["Timer"]["Unit"] == f"{name}.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["EnvironmentFile"] == "/etc/runreport/runreport.env"
    words = shlex.split(service["Service"]["ExecStart"])
    assert words[0] == INSTALLED
    assert words[1:] == [*PAIRS[name], "--config", "/etc/runreport/runreport.toml"]
    # the command exists: the installed console script's --help accepts these options
    help_text = run_cli(*PAIRS[name], "--help").output
    assert "--config" in help_text
    assert all(option in help_text for option in words[1:] if option.startswith("--"))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_systemd_analyze_verify_passes(name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed; the units are still parsed above")
    console_script = Path(sys.executable).parent / "runreport"
    assert console_script.is_file()
    for suffix in ("service", "timer"):
        text = (DEPLOY / f"{name}.{suffix}").read_text()
        # verify checks that ExecStart's program exists: this checkout's console script
        (tmp_path / f"{name}.{suffix}").write_text(text.replace(INSTALLED, str(console_script)))
    checked = subprocess.run(
        [analyze, "verify", f"./{name}.service", f"./{name}.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == "", "no warning either (an unknown key is only a warning)"


@pytest.mark.pure
def test_the_env_file_example_holds_only_secret_names() -> None:
    lines = [
        line
        for line in (DEPLOY / "runreport.env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == ["MLFLOW_TRACKING_TOKEN=", "RUNREPORT_SMTP_PASSWORD="]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    joined = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, arguments = line.strip().partition(" ")
            found.append((instruction.upper(), " ".join(arguments.split())))
    return found


@pytest.mark.pure
def test_the_dockerfile_installs_the_project_and_runs_the_job() -> None:
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    assert kinds[0] == "FROM" and instructions[0][1].startswith("python:3.12")
    copied = [arguments.split()[0] for kind, arguments in instructions if kind == "COPY"]
    assert copied == ["pyproject.toml", "etl", "sql", "templates"]
    runs = [arguments for kind, arguments in instructions if kind == "RUN"]
    assert len(runs) == 1 and runs[0].startswith("pip install . ")
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    command = json.loads(dict(instructions)["CMD"])
    assert entrypoint + command == ["runreport", "run", "--config", "/config/runreport.toml"]
    assert json.loads(dict(instructions)["VOLUME"]) == ["/config", "/data"]
    assert dict(instructions)["USER"] == "runreport"
    assert not any(kind in ("ENV", "ARG") and "PASSWORD" in args for kind, args in instructions)
    # the console script the image's ENTRYPOINT names is the project's
    assert 'runreport = "etl.cli:main"' in (REPO / "pyproject.toml").read_text()
