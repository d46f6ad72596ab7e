"""The one configuration merge: defaults < file < environment < flags, every value checked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import etl
from etl.config import SETTINGS, Config, checked, default, resolve, value_type
from etl.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runreport.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_environment_or_flags() -> None:
    config = resolve(None, {}, environ={})
    assert config == Config()
    assert (config.db, config.out, config.days, config.retention_days) == (
        Path("runs.duckdb"),
        Path("reports"),
        7,
        30,
    )


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    file = write(tmp_path, '[report]\ndays = 3\ntimezone = "Europe/Berlin"\n')
    assert resolve(file, {}, environ={}).days == 3
    assert resolve(file, {}, environ={"RUNREPORT_DAYS": "5"}).days == 5
    flagged = resolve(file, {"days": 9}, environ={"RUNREPORT_DAYS": "5"})
    assert flagged.days == 9
    assert flagged.timezone == "Europe/Berlin"  # untouched keys keep the file's value


def test_flags_not_given_do_not_override(tmp_path: Path) -> None:
    file = write(tmp_path, '[mail]\nto = ["a@example.com"]\n')
    config = resolve(file, {"mail_to": (), "days": None}, environ={})
    assert config.mail_to == ["a@example.com"]
    assert config.days == 7


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    file = write(tmp_path, '[warehouse]\npath = "data/runs.duckdb"\n')
    assert resolve(file, {}, environ={}).db == tmp_path / "data" / "runs.duckdb"


def test_environment_lists_and_booleans() -> None:
    config = resolve(
        None,
        {},
        environ={"RUNREPORT_MAIL_TO": "a@x.org, b@x.org", "RUNREPORT_METRIC_HISTORY": "yes"},
    )
    assert config.mail_to == ["a@x.org", "b@x.org"]
    assert config.metric_history is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[report]\nretention_days = -1\n", "report.retention_days must be at least 1, not -1"),
        ("[report]\ndays = 0\n", "report.days must be between 1 and 3660, not 0"),
        ("[warehouse]\nworkers = 1000\n", "warehouse.workers must be between 1 and 32"),
        ("[report]\ndays = 99999999999999999999\n", "report.days is too large"),
        ("[report]\ntimezone = 'Mars/Base'\n", "report.timezone must be an IANA time zone"),
        ("[report]\ndayz = 3\n", "unknown key report.dayz"),
        ("[reprot]\n", "unknown section [reprot]"),
        ("[mail]\nsecurity = 'tls'\n", "mail.security must be 'none' or 'starttls' or 'ssl'"),
        ("[metrics]\nloss = 'down'\n", 'loss must be "higher" or "lower"'),
        ("[mail]\nto = 'a@x.org'\n", "mail.to must be a list of text values"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(write(tmp_path, text), {}, environ={})
    assert message in caught.value.one_line()
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RUNREPORT_SMTP_BACKOFF": "nan"}, "RUNREPORT_SMTP_BACKOFF must be a finite number"),
        ({"RUNREPORT_DAYS": "seven"}, "RUNREPORT_DAYS='seven' is not a number"),
        ({"RUNREPORT_MAIL_TO": "a@x.org\r\nBcc: b@x.org"}, "RUNREPORT_MAIL_TO holds a line break"),
        ({"RUNREPORT_METRIC_HISTORY": "maybe"}, "is not true or false"),
    ],
)
def test_bad_environment_names_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(None, {}, environ=environ)
    assert message in caught.value.one_line()


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"[report]\ndays = 3 # \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        resolve(path, {}, environ={})


def test_every_setting_is_declared_with_key_and_help() -> None:
    for name, spec in SETTINGS.items():
        assert spec.metadata["key"], name
        assert spec.metadata["help"], name


def test_a_relative_sqlite_uri_in_the_file_is_relative_to_the_file(tmp_path: Path) -> None:
    file = write(tmp_path, '[tracking]\nuri = "sqlite:///stores/mlflow.db"\n')
    assert resolve(file, {}, environ={}).tracking_uri == f"sqlite:///{tmp_path}/stores/mlflow.db"


def test_the_example_file_is_valid_and_names_every_setting() -> None:
    example = Path(__file__).resolve().parents[2] / "runreport.example.toml"
    config = resolve(example, {}, environ={})
    assert config.mail_to == ["ml-leads@example.com"]
    assert config.via == "auto"
    text = example.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[] ")
        sections[current] = sections.get(current, "") + line + "\n"
    for spec in SETTINGS.values():
        key = spec.metadata["key"]
        section, _, name = key.rpartition(".") if key.count(".") else (key, "", "")
        if not name or value_type(spec.name) is dict:  # whole tables: [metrics.primary], ...
            assert f"[{key}]" in text, key
        else:
            assert re.search(rf"^#? ?{name} = ", sections[section], re.M), key


@pytest.mark.parametrize(
    ("file_text", "environ", "flags"),
    [
        ('[warehouse]\nvia = "SQL"\n', {}, {}),
        ("", {"RUNREPORT_VIA": "SQL"}, {}),
        ("", {}, {"via": "SQL"}),
    ],
    ids=["file", "environment", "flag"],
)
def test_a_choice_in_any_case_is_read_in_its_declared_spelling(
    tmp_path: Path, file_text: str, environ: dict[str, str], flags: dict[str, str]
) -> None:
    """`--via SQL` once passed the check and then ran search_runs, which compared with "sql"."""
    config = resolve(write(tmp_path, file_text), flags, environ=environ)
    assert config.via == "sql"


def test_every_choice_setting_is_normalised(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        '[mail]\nsecurity = "StartTLS"\n[metrics]\nval_loss = "Higher"\n'
        '[[sources]]\nname = "a"\ntracking_uri = "sqlite:///a.db"\nvia = "Sql"\n',
    )
    config = resolve(file, {}, environ={})
    assert config.smtp_security == "starttls"
    assert config.metric_directions == {"val_loss": True}
    assert config.sources[0].via == "sql"
    wrong = re.escape("--via must be 'auto' or 'search_runs' or 'sql'")
    with pytest.raises(ConfigError, match=wrong):
        resolve(None, {"via": "odbc"}, environ={})


def test_library_defaults_come_from_the_declaration() -> None:
    assert default("page_size") == Config().page_size == 1_000
    assert default("zombie_ignore") == [] and default("zombie_ignore") is not default(
        "zombie_ignore"
    )
    with pytest.raises(KeyError, match="did you mean 'days'"):
        default("dayz")


def test_one_check_serves_the_file_and_the_library() -> None:
    assert checked("zombie_after_hours", 5) == 5.0
    with pytest.raises(ConfigError, match=re.escape("report.timezone must be an IANA time zone")):
        checked("timezone", "Mars/Base")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: etl.render_report("runs.duckdb", "out", dayz=3),
            "render_report() got an unexpected keyword argument 'dayz' (did you mean 'days'?)",
        ),
        (
            lambda: etl.extract_warehouse("sqlite:///x.db", "runs.duckdb", worker=2),
            "extract_warehouse() got an unexpected keyword argument 'worker' "
            "(did you mean 'workers'?)",
        ),
        (
            lambda: etl.connect("runs.duckdb", time_zone="UTC"),
            "connect() got an unexpected keyword argument 'time_zone' (did you mean 'timezone'?)",
        ),
        (
            lambda: etl.render_report("runs.duckdb", "out", sinse="2024-01-01"),
            "render_report() got an unexpected keyword argument 'sinse' (did you mean 'since'?)",
        ),
    ],
)
def test_the_api_refuses_a_misspelt_setting(call: Any, message: str) -> None:
    with pytest.raises(TypeError) as caught:
        call()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (
            '[[sources]]\nname = "runs"\ntracking_uri = "http://a:5000"\n',
            "[[sources]] name 'runs' is the warehouse's own name",
        ),
        (
            '[[sources]]\nname = "previous"\ntracking_uri = "http://a:5000"\n',
            "the name 'previous' is taken",
        ),
        (
            '[[sources]]\nname = "a"\ntracking_uri = "http://h:5000"\n'
            '[[sources]]\nname = "b"\ntracking_uri = "http://H:5000/"\n',
            "[[sources]] 'a' and 'b' read the same tracking store",
        ),
    ],
)
def test_item10_sources_are_checked_when_the_config_is_read(
    tmp_path: Path, sources: str, message: str
) -> None:
    """Issue 23, item 10: these passed the check and failed every run later."""
    file = write(tmp_path, '[warehouse]\npath = "runs.duckdb"\n' + sources)
    with pytest.raises(ConfigError) as caught:
        resolve(file, {}, environ={})
    assert caught.value.exit_code == 2
    assert message in caught.value.one_line()


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:PW@mlflow.example.org",
        "https://token@mlflow.example.org/",
        "https://reports.example.org/?token=abc",
        "https://reports.example.org/x?sig=abc&page=1",
        "https://reports.example.org/?sessionid=abc",
    ],
)
@pytest.mark.parametrize("flag", ["mlflow_ui_url", "public_url"])
def test_item2_a_link_url_with_credentials_is_refused(flag: str, url: str) -> None:
    """Issue 23, item 2: they were copied into every link and mailed, 12 copies a message."""
    with pytest.raises(ConfigError) as caught:
        resolve(None, {flag: url}, environ={})
    assert caught.value.exit_code == 2
    assert "without a user, password or secret query parameter" in caught.value.one_line()
    assert url not in caught.value.one_line()


def test_item2_a_plain_link_url_is_kept() -> None:
    flags = {
        "mlflow_ui_url": "https://mlflow.example.org/#",
        "public_url": "https://r.example.org/x",
    }
    config = resolve(None, flags, environ={})
    assert config.mlflow_ui_url == "https://mlflow.example.org/#"
