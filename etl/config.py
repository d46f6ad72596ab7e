"""Every setting of runreport, declared once, and the one merge that resolves them.

Each field of `Config` below is one setting: its key in the TOML file
(runreport.example.toml), its environment variable, its command-line flag, its default
and its help, all in the `setting(...)` call that declares it. Adding a setting is one
such line (and the code that uses it): the file reader, the environment reader and the
click options of every command are built from these declarations.

Precedence, the same for every command: defaults < the file (`--config`,
RUNREPORT_CONFIG) < environment variables < command-line flags. Relative paths in the
file are relative to the file's folder; elsewhere, to the working directory.
Every value is checked, by the one check of its setting (`checked`): an unknown key, a
wrong type or a value out of range is a one-line ConfigError (exit 2) naming where it came
from. A choice (a `Literal` below) matches without regard to case and is kept in its
declared spelling, so `--via SQL` is `sql` everywhere after the merge.

Library functions take their defaults from here too: `default("page_size")`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formataddr, getaddresses
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import available_timezones

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from etl.errors import ConfigError
from etl.redact import is_secret_key, remember_secrets_of

# Each choice, declared once: a setting's type, click's Choice, the checks and the help
# read it with typing.get_args().
Via = Literal["auto", "search_runs", "sql"]  # warehouse.via
SmtpSecurity = Literal["none", "starttls", "ssl"]  # mail.security
Direction = Literal["higher", "lower"]  # [metrics]: which direction is better
LeaderboardRuns = Literal["root", "all", "children"]  # report.leaderboard_runs
Dialect = Literal["spark", "trino", "duckdb"]  # runreport views --dialect
SqlFormat = Literal["table", "csv", "json"]  # runreport sql --format
ViewsFormat = Literal["sql", "json"]  # runreport views --format
ChannelKind = Literal["slack", "teams", "webhook", "email"]  # [[channels]] kind
AlertKind = Literal[
    "metric_regression",
    "new_best",
    "best_removed",
    "failure_rate",
    "stuck_runs",
    "trace_error_rate",
    "latency_p95_ms",
    "assessment_pass_rate",
    "daily_cost",
]  # [[alerts]] kind

# mail.smtp_port when none is given: the usual port of the security
SMTP_PORTS: dict[SmtpSecurity, int] = {"none": 25, "starttls": 587, "ssl": 465}

# A check returns None when the value is fine, else what it must be ("≥ 1").
Check = Callable[[Any], "str | None"]


def canonical(choice: Any, value: object) -> str | None:
    """`value` in the declared spelling of the option of the Literal `choice` it matches
    without regard to case, else None: the one place a choice is matched."""
    if isinstance(value, str):
        for option in typing.get_args(choice):
            if value.casefold() == option.casefold():
                return str(option)
    return None


def choice_words(choice: Any) -> str:
    """'search_runs' or 'sql'"""
    return " or ".join(map(repr, typing.get_args(choice)))


def at_least(low: float) -> Check:
    return lambda v: None if v is None or v >= low else f"at least {low:g}"


def between(low: int, high: int) -> Check:
    return lambda v: None if v is None or low <= v <= high else f"between {low} and {high}"


def finite_at_least(low: float) -> Check:
    return lambda v: (
        None if v is None or (math.isfinite(v) and v >= low) else f"a finite number ≥ {low:g}"
    )


def time_zone(name: str | None) -> str | None:
    if name is None or name in _time_zones():
        return None
    return "an IANA time zone such as UTC or Europe/Berlin"


@functools.cache
def _time_zones() -> frozenset[str]:
    """The zones both Python (the report's day) and DuckDB (the views' dates) know:
    zoneinfo's keys less `localtime`, a link of the system's zone that DuckDB lacks."""
    return frozenset(available_timezones() - {"localtime"})


def non_blank(values: list[str] | None) -> str | None:
    blank = values is not None and any(not value.strip() for value in values)
    return "names or globs, none of them blank" if blank else None


def http_url(url: str | None) -> str | None:
    return None if url is None or url.startswith(("http://", "https://")) else "an http(s) URL"


def link_url(url: str | None) -> str | None:
    """A URL that reports and mails copy into every link: no credentials in it."""
    wrong = http_url(url)
    if wrong is not None or url is None:
        return wrong
    parts = urlsplit(url)
    secret_keys = [key for key, _ in parse_qsl(parts.query) if is_secret_key(key)]
    if parts.username is not None or parts.password is not None or secret_keys:
        return (
            "an http(s) URL without a user, password or secret query parameter (every "
            "link in the report and the mail copies it)"
        )
    return None


def one_line_addresses(addresses: list[str]) -> str | None:
    bad = [a for a in addresses if "\r" in a or "\n" in a]
    return "addresses without line breaks" if bad else None


def addresses(text: str) -> list[str]:
    """Mail addresses separated by commas; a comma inside a quoted name stays."""
    return [formataddr((name, addr)) for name, addr in getaddresses([text]) if addr]


def setting(
    key: str,
    default: Any = None,
    *,
    help: str,
    env: str | None = None,
    flag: str | None = None,
    check: Check | None = None,
    split: Callable[[str], list[str]] | None = None,
) -> Any:
    """Declare one setting (a dataclass field carrying its key, variable, flag and help).
    `split` turns a list setting's variable into items (default: at commas)."""
    meta = {"key": key, "env": env, "flag": flag, "help": help, "check": check, "split": split}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# schema names DuckDB or the combined warehouse keep for themselves
RESERVED_SOURCE_NAMES = {
    "main", "temp", "system", "memory", "information_schema", "pg_catalog",
    "previous",  # the alias a rebuild attaches the previous warehouse under
}  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One tracking store of several ([[sources]] in the config)."""

    name: str
    tracking_uri: str
    via: Via | None = None  # None: warehouse.via


@dataclass(frozen=True)
class Channel:
    """Where alerts go ([[channels]] in the config). A webhook URL holds a secret, so it
    is only ever read from the variable `url_env` names, when a message is sent."""

    name: str
    kind: ChannelKind
    url_env: str | None = None  # slack, teams, webhook
    secret_env: str | None = None  # webhook: signs the body (HMAC-SHA256)
    to: tuple[str, ...] = ()  # email
    experiments: tuple[str, ...] = ()  # names or globs; () every experiment


@dataclass(frozen=True)
class AlertRule:
    """One rule ([[alerts]] in the config): its kind's options with every default filled
    in (ALERT_OPTIONS)."""

    name: str
    kind: AlertKind
    channels: tuple[str, ...]
    experiments: tuple[str, ...] = ()  # names or globs; () every experiment
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str) -> Any:
        return dict(self.options)[key]


@dataclass(frozen=True)
class MailDigest:
    """One team's copy of the report mail ([[mail.digests]]): only its experiments (names
    or globs) of its MLflow workspaces; () of either: every one."""

    to: tuple[str, ...]
    experiments: tuple[str, ...]
    workspaces: tuple[str, ...] = ()


# Each kind's options and their defaults (docs/alerts.md says why each default is what it
# is). None: not set. A value's type is its default's, or the type named here for None.
WINDOW_HOURS = 24.0
ALERT_OPTIONS: dict[str, dict[str, tuple[type, Any]]] = {
    # zscore 3.0 is the default only when none of threshold, relative, zscore is given
    "metric_regression": {
        "metric": (str, None),
        "threshold": (float, None),
        "relative": (float, None),
        "zscore": (float, None),
        "baseline_runs": (int, 20),
    },
    "new_best": {},
    "best_removed": {},
    "failure_rate": {
        "window_hours": (float, WINDOW_HOURS),
        "max_failed": (int, None),  # 3 when neither max_failed nor max_rate is given
        "max_rate": (float, None),
        "min_runs": (int, 5),
    },
    "stuck_runs": {},
    "trace_error_rate": {
        "window_hours": (float, WINDOW_HOURS),
        "max_rate": (float, 0.1),
        "min_traces": (int, 20),
    },
    "latency_p95_ms": {
        "window_hours": (float, WINDOW_HOURS),
        "max_ms": (float, 10_000.0),
        "min_traces": (int, 20),
    },
    "assessment_pass_rate": {
        "window_hours": (float, WINDOW_HOURS),
        "min_rate": (float, 0.8),
        "min_assessments": (int, 20),
        "assessments": (list, []),  # assessment names or globs; [] every one
    },
    "daily_cost": {
        "window_hours": (float, WINDOW_HOURS),
        "max_usd": (float, 100.0),
    },
}
DEFAULT_MAX_FAILED = 3
DEFAULT_ZSCORE = 3.0
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Config:
    # [tracking]
    tracking_uri: str | None = setting(
        "tracking.uri",
        env="MLFLOW_TRACKING_URI",
        flag="--tracking-uri",
        help="MLflow tracking URI: sqlite:///mlflow.db, http(s)://host:port, or an mlruns "
        "folder. Default: MLflow's own (sqlite:///mlflow.db in the working directory).",
    )
    tracking_timeout: int = setting(
        "tracking.timeout_seconds",
        300,
        env="RUNREPORT_TRACKING_TIMEOUT",
        check=at_least(1),
        help="The longest one request to a tracking server may take, retries included.",
    )
    tracking_retries: int = setting(
        "tracking.retries",
        3,
        env="RUNREPORT_TRACKING_RETRIES",
        check=at_least(0),
        help="Times a tracking server that refuses or times out is tried again (with "
        "backoff) before the extract fails.",
    )
    # [warehouse]
    db: Path = setting(
        "warehouse.path",
        Path("runs.duckdb"),
        env="RUNREPORT_DB",
        flag="--db",
        help="The DuckDB warehouse file.",
    )
    full_refresh_days: int = setting(
        "warehouse.full_refresh_days",
        7,
        env="RUNREPORT_FULL_REFRESH_DAYS",
        check=at_least(1),
        help="`run` does a full extract when the last full one is older than this.",
    )
    overlap_minutes: int = setting(
        "warehouse.overlap_minutes",
        60,
        env="RUNREPORT_OVERLAP_MINUTES",
        check=at_least(0),
        help="Incremental extracts re-read runs from this long before the previous start.",
    )
    metric_history: bool = setting(
        "warehouse.metric_history",
        False,
        env="RUNREPORT_METRIC_HISTORY",
        flag="--metric-history",
        help="Also fill metric_history with every logged point.",
    )
    workers: int = setting(
        "warehouse.workers",
        1,
        env="RUNREPORT_WORKERS",
        flag="--workers",
        check=between(1, 32),
        help="Processes reading experiments in parallel in a full extract; each holds its "
        "own MLflow (about 170 MB).",
    )
    via: Via = setting(
        "warehouse.via",
        "auto",
        env="RUNREPORT_VIA",
        flag="--via",
        help="How the extract reads the store: search_runs (MLflow's API: the reference), "
        "sql (a SQLite/PostgreSQL/MySQL store's tables directly, read-only, faster) or auto: "
        "search_runs, except on a database whose schema revision is not the installed "
        "mlflow's, which MLflow would migrate or refuse: sql then.",
    )
    # Stores reject more than 50,000. Measured on 120,000 runs (SQLite, one process): 1,000
    # a page took 46 s at 350 MB peak, 2,000 took 40 s at 383 MB, 5,000 took 37 s at 573 MB.
    page_size: int = setting(
        "warehouse.page_size",
        1_000,
        env="RUNREPORT_PAGE_SIZE",
        flag="--page-size",
        check=between(1, 50_000),
        help="Runs per search_runs request; larger pages are faster and use more memory.",
    )
    # [report]
    out: Path = setting(
        "report.out",
        Path("reports"),
        env="RUNREPORT_OUT",
        flag="--out",
        help="Folder of the reports.",
    )
    days: int = setting(
        "report.days",
        7,
        env="RUNREPORT_DAYS",
        flag="--days",
        check=between(1, 3660),
        help="Length of the report's 'what happened' window, in days.",
    )
    timezone: str = setting(
        "report.timezone",
        "UTC",
        env="RUNREPORT_TIMEZONE",
        check=time_zone,
        help="Time zone of start dates and of the report's day.",
    )
    zombie_after_hours: float = setting(
        "report.zombie_after_hours",
        24.0,
        env="RUNREPORT_ZOMBIE_AFTER_HOURS",
        check=finite_at_least(0),
        help="A run RUNNING this many hours after it started is a zombie.",
    )
    retention_days: int = setting(
        "report.retention_days",
        30,
        env="RUNREPORT_RETENTION_DAYS",
        check=at_least(1),
        help="Dated report folders older than this are removed by `run`.",
    )
    templates: Path | None = setting(
        "report.templates",
        env="RUNREPORT_TEMPLATES",
        flag="--templates",
        help="A folder with your own copies of the templates (trusted: they can run code).",
    )
    mlflow_ui_url: str | None = setting(
        "report.mlflow_ui_url",
        env="RUNREPORT_UI_URL",
        flag="--ui-url",
        check=link_url,
        help="The MLflow UI that runs and experiments link to. Default: the tracking URI "
        "when it is http(s).",
    )
    public_url: str | None = setting(
        "report.public_url",
        env="RUNREPORT_PUBLIC_URL",
        check=link_url,
        help="Where the report folder is served; the email links there.",
    )
    report_channels: list[str] = setting(
        "report.channels",
        [],
        env="RUNREPORT_REPORT_CHANNELS",
        check=non_blank,
        help="[[channels]] (by name) that get the daily report's headline and changes, "
        "with a link to the full report.",
    )
    report_workspaces: list[str] = setting(
        "report.workspaces",
        [],
        env="RUNREPORT_WORKSPACES",
        check=non_blank,
        help="Only the experiments, registry and prompts of these MLflow workspaces in the "
        "report and its mail (default: every workspace).",
    )
    zombie_ignore: list[str] = setting(
        "report.zombie_ignore",
        [],
        env="RUNREPORT_ZOMBIE_IGNORE",
        check=non_blank,
        help="Experiments (names or globs) whose RUNNING runs are never zombies nor "
        "parents left open.",
    )
    estimator_from: str = setting(
        "report.estimator_from",
        "estimator_name",
        env="RUNREPORT_ESTIMATOR_FROM",
        check=lambda v: None if v.strip() else "a tag or param key, or run_name",
        help="Where a run's estimator is read: a tag key, else a param of that key, or "
        "run_name (PyCaret names each run after its model).",
    )
    user_tag: str | None = setting(
        "report.user_tag",
        env="RUNREPORT_USER_TAG",
        check=lambda v: None if v is None or v.strip() else "a tag key, not blank",
        help="A tag naming whom a run belongs to (e.g. owner): runs_per_user reads it "
        "where a run carries it, MLflow's user_id elsewhere.",
    )
    leaderboard_runs: LeaderboardRuns = setting(
        "report.leaderboard_runs",
        "root",
        env="RUNREPORT_LEADERBOARD_RUNS",
        help="Which runs a leaderboard ranks: root (runs that are no nested child), all, or "
        "children (nested children only, on the child metric).",
    )
    # [report.leaderboard_runs_by_experiment]: experiment name or glob -> root|all|children
    leaderboard_runs_by_experiment: dict[str, str] = setting(
        "report.leaderboard_runs_by_experiment",
        {},
        help="report.leaderboard_runs for the experiments a name or glob matches.",
    )
    # [metrics]: metric key -> "higher" | "lower"
    metric_directions: dict[str, bool] = setting(
        "metrics",
        {},
        help="Which direction is better, per metric key or *suffix.",
    )
    # [metrics.primary]: experiment name or glob -> metric key
    primary_metrics: dict[str, str] = setting(
        "metrics.primary",
        {},
        help="The metric each experiment's leaderboard ranks by.",
    )
    # [metrics.children]: experiment name or glob -> metric key
    child_metrics: dict[str, str] = setting(
        "metrics.children",
        {},
        help="The metric each experiment's nested searches rank their children by.",
    )
    seed_params: list[str] = setting(
        "metrics.seed_params",
        [],
        env="RUNREPORT_SEED_PARAMS",
        check=non_blank,
        help="Param keys that only seed a run (besides seed, random_state, random_seed): "
        "runs differing only by them are one configuration in leaderboard_groups.",
    )
    # [[sources]]: several tracking servers into one warehouse (etl/warehouse/sources.py)
    sources: list[Source] = setting(
        "sources",
        [],
        help="Several tracking stores into one warehouse, each with a `source` column: "
        "[[sources]] tables of name, tracking_uri and, optionally, via.",
    )
    # [[channels]] and [[alerts]]: alert rules and where they go (etl/alerts)
    channels: list[Channel] = setting(
        "channels",
        [],
        help="Where alerts and the chat digest go: [[channels]] tables of name, kind "
        "(slack, teams, webhook, email), url_env or to, and optionally secret_env and "
        "experiments.",
    )
    alerts: list[AlertRule] = setting(
        "alerts",
        [],
        help="Alert rules: [[alerts]] tables of name, kind, channels, optionally "
        "experiments and the kind's options (docs/alerts.md).",
    )
    # [alerting]: TOML cannot hold an [alerts] table beside the [[alerts]] array
    alert_max_attempts: int = setting(
        "alerting.max_attempts",
        24,
        env="RUNREPORT_ALERT_MAX_ATTEMPTS",
        check=between(1, 1000),
        help="Runs that try to deliver an alert to a channel before it is marked failed "
        "(hourly runs: a day).",
    )
    alert_retries: int = setting(
        "alerting.retries",
        2,
        env="RUNREPORT_ALERT_RETRIES",
        check=between(0, 10),
        help="Retries, with backoff, of a failed delivery within one run.",
    )
    alert_backoff: float = setting(
        "alerting.backoff_seconds",
        1.0,
        env="RUNREPORT_ALERT_BACKOFF",
        check=finite_at_least(0),
        help="Seconds before the first retry of a delivery (doubling).",
    )
    alert_timeout: float = setting(
        "alerting.timeout_seconds",
        10.0,
        env="RUNREPORT_ALERT_TIMEOUT",
        check=finite_at_least(0.1),
        help="Seconds to wait for a chat or webhook endpoint to answer.",
    )
    # [export]
    export_parquet: Path | None = setting(
        "export.parquet",
        env="RUNREPORT_EXPORT_PARQUET",
        help="`run` exports the warehouse as Parquet into this folder after each extract.",
    )
    # [mail]
    mail_to: list[str] = setting(
        "mail.to",
        [],
        env="RUNREPORT_MAIL_TO",
        flag="--to",
        check=one_line_addresses,
        split=addresses,
        help="Recipients (comma-separated in the variable; repeat the flag).",
    )
    mail_from: str | None = setting(
        "mail.from", env="RUNREPORT_MAIL_FROM", flag="--from", help="Sender address."
    )
    smtp_host: str = setting(
        "mail.smtp_host",
        "localhost",  # a local MTA (postfix, exim, a relay) is the classic cron setup
        env="RUNREPORT_SMTP_HOST",
        flag="--smtp-host",
        help="SMTP server.",
    )
    smtp_port: int | None = setting(
        "mail.smtp_port",
        env="RUNREPORT_SMTP_PORT",
        flag="--smtp-port",
        check=between(1, 65535),
        help="Default by security: "
        + ", ".join(f"{how} {port}" for how, port in SMTP_PORTS.items())
        + ".",
    )
    smtp_user: str | None = setting(
        "mail.smtp_user",
        env="RUNREPORT_SMTP_USER",
        flag="--smtp-user",
        help="SMTP user. The password comes only from RUNREPORT_SMTP_PASSWORD.",
    )
    smtp_security: SmtpSecurity = setting(
        "mail.security",
        "none",
        env="RUNREPORT_SMTP_SECURITY",
        help=f"{', '.join(typing.get_args(SmtpSecurity))}.",
    )
    smtp_cafile: Path | None = setting(
        "mail.smtp_cafile",
        env="RUNREPORT_SMTP_CAFILE",
        help="CA bundle for a private SMTP server certificate.",
    )
    smtp_retries: int = setting(
        "mail.smtp_retries",
        3,
        env="RUNREPORT_SMTP_RETRIES",
        check=between(0, 20),
        help="Retries after a refused connection or a 4xx reply.",
    )
    smtp_backoff: float = setting(
        "mail.smtp_backoff",
        2.0,
        env="RUNREPORT_SMTP_BACKOFF",
        check=finite_at_least(0),
        help="Seconds before the first retry (doubling).",
    )
    smtp_timeout: float = setting(
        "mail.smtp_timeout",
        30.0,
        env="RUNREPORT_SMTP_TIMEOUT",
        check=finite_at_least(0.1),
        help="Seconds to wait for the SMTP server.",
    )
    mail_subject: str = setting(
        "mail.subject",
        "{headline} ({date})",
        env="RUNREPORT_MAIL_SUBJECT",
        flag="--subject",
        help="Subject with {fields} of report.json; {headline} leads with the most "
        "important change: 'New best in churn-model; 3 new runs since the last report, 1 "
        "failed'.",
    )
    attach_csv: bool = setting(
        "mail.attach_csv",
        False,
        env="RUNREPORT_ATTACH_CSV",
        flag="--attach-csv",
        help="Attach one CSV file per view.",
    )
    on_failure: list[str] = setting(
        "mail.on_failure",
        [],
        env="RUNREPORT_MAIL_ON_FAILURE",
        check=one_line_addresses,
        split=addresses,
        help="Who gets a short notice when the job fails.",
    )
    mail_digests: list[MailDigest] = setting(
        "mail.digests",
        [],
        help="Per-team copies of the report mail, each with only its experiments' "
        "sections: [[mail.digests]] tables of to and experiments (globs), workspaces, or both.",
    )
    # Not a setting: the names of the settings given by a file, the environment or a flag
    # (the rest are defaults), so a command can keep what the warehouse holds.
    given: set[str] = field(default_factory=set, repr=False, compare=False)


SETTINGS: dict[str, dataclasses.Field[Any]] = {
    f.name: f for f in dataclasses.fields(Config) if "key" in f.metadata
}
_TYPES: dict[str, Any] = typing.get_type_hints(Config)
SECTIONS = sorted({f.metadata["key"].split(".")[0] for f in SETTINGS.values()})
BY_KEY = {f.metadata["key"]: f for f in SETTINGS.values()}


def default(name: str) -> Any:
    """The declared default of the setting `name` (a field of Config), for a library
    function's own default: `def f(page_size: int = default("page_size"))`. KeyError for
    a name that is no setting."""
    if name not in SETTINGS:
        close = difflib.get_close_matches(name, SETTINGS, n=1)
        raise KeyError(f"no setting {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    spec = SETTINGS[name]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _hint(name: str) -> Any:
    """The setting's type hint without Optional."""
    hint = _TYPES[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def value_type(name: str) -> Any:
    """The setting's type without Optional: str (a choice too), int, float, bool, Path,
    list or dict."""
    hint = _hint(name)
    if typing.get_origin(hint) is Literal:
        return str
    return typing.get_origin(hint) or hint


def choices(name: str) -> tuple[str, ...]:
    """The choices of a choice setting (its type is a Literal), else ()."""
    hint = _hint(name)
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else ()


def resolve(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The one merge: defaults < file < environment < flags (flags given as None or an
    empty tuple are not given)."""
    config = Config()
    layers = [
        read_file(config_file) if config_file is not None else {},
        read_environment(os.environ if environ is None else environ),
        read_flags(flags or {}),
    ]
    for values in layers:
        for name, value in values.items():
            setattr(config, name, value)
            config.given.add(name)
    _check_sources(config)
    _check_alert_routes(config)
    # whatever a tracking URI's password holds, no message, mail or file shows it
    for uri in [config.tracking_uri or "", *(source.tracking_uri for source in config.sources)]:
        remember_secrets_of(uri)
    return config


def read_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The settings among these command-line values, checked; None or () is not given."""
    values = {}
    for name, value in flags.items():
        if name not in SETTINGS or value is None or value == ():
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path):
            value = str(value)
        values[name] = checked(name, value, SETTINGS[name].metadata["flag"] or name)
    return values


def read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found", "Check --config") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text", "Save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", "Fix the file") from None
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}]",
                f"Use one of: {', '.join('[' + s + ']' for s in SECTIONS)}",
            )
        if section == "sources":
            values["sources"] = _sources(table, path)
            continue
        if section == "channels":
            values["channels"] = _channels(table, path)
            continue
        if section == "alerts":
            values["alerts"] = _alert_rules(table, path)
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table", "See runreport.example.toml")
        if section == "metrics":  # key -> direction, seed_params, [metrics.primary|children]
            for sub, name in (("primary", "primary_metrics"), ("children", "child_metrics")):
                if isinstance(table.get(sub), dict):
                    values[name] = checked(name, table[sub], f"{path}: metrics.{sub}")
            if "seed_params" in table:
                values["seed_params"] = checked(
                    "seed_params", table["seed_params"], f"{path}: metrics.seed_params"
                )
            directions = {
                k: v for k, v in table.items() if not isinstance(v, dict) and k != "seed_params"
            }
            values["metric_directions"] = checked(
                "metric_directions", directions, f"{path}: metrics"
            )
            continue
        for key, raw in table.items():
            full = f"{section}.{key}"
            if full not in BY_KEY:
                known = [k.split(".", 1)[1] for k in BY_KEY if k.startswith(section + ".")]
                raise ConfigError(
                    f"{path}: unknown key {full}", f"Keys of [{section}]: {', '.join(known)}"
                )
            name = BY_KEY[full].name
            value = checked(name, raw, f"{path}: {full}")
            if isinstance(value, Path) and not value.is_absolute():
                value = path.parent / value
            if name == "tracking_uri":
                value = _anchored_sqlite(value, path.parent)
            values[name] = value
    return values


def _anchored_sqlite(uri: str, folder: Path) -> str:
    """sqlite:///relative.db in a file means relative to the file, as paths are."""
    prefix = "sqlite:///"
    rest = uri[len(prefix) :]
    if not uri.startswith(prefix) or not rest or rest.startswith("/") or rest == ":memory:":
        return uri
    return prefix + str((folder / rest).resolve())


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in SETTINGS.items():
        variable = spec.metadata["env"]
        text = environ.get(variable, "") if variable else ""
        if text.strip():
            values[name] = _from_text(name, text.strip(), variable)
    return values


def _from_text(name: str, text: str, where: str) -> Any:
    kind = value_type(name)
    if kind is list:
        if "\r" in text or "\n" in text:  # in an address list it could add a recipient
            raise ConfigError(
                f"{where} holds a line break", "Separate the values with commas on one line"
            )
        split = SETTINGS[name].metadata["split"]
        items = split(text) if split else [part.strip() for part in text.split(",")]
        return checked(name, [item for item in items if item], where)
    if kind is bool:
        lowered = text.lower()
        if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ConfigError(f"{where}={text!r} is not true or false", "Use 1/0 or true/false")
        return checked(name, lowered in ("1", "true", "yes", "on"), where)
    if kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            raise ConfigError(f"{where}={text!r} is not a number", "Fix or unset it") from None
        return checked(name, number, where)
    return checked(name, text, where)


def checked(name: str, value: Any, where: str | None = None) -> Any:
    """The value of the setting `name` checked against its declaration (type, range,
    choice) and in the form Config holds it (a choice in its declared spelling, a float
    as float, a path as Path): the one check of each setting, for the file, the
    environment, the flags and the library's own settings objects (ViewSettings,
    MailSettings). `where` names the value in an error (default: the setting's key)."""
    where = where or SETTINGS[name].metadata["key"]
    if name in _TABLE_CHECKS:
        return _TABLE_CHECKS[name](value, where)
    hint = _hint(name)
    if typing.get_origin(hint) is Literal:
        choice = canonical(hint, value)
        if choice is None:
            raise ConfigError(
                f"{where} must be {choice_words(hint)}, not {value!r}", "Fix the value"
            )
        return choice
    kind = value_type(name)
    wanted = {
        str: "text",
        Path: "a path (text)",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list of text values",
    }[kind]
    ok = (
        (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (kind is bool and isinstance(value, bool))
        or (kind in (str, Path) and isinstance(value, str))
        or (kind is list and isinstance(value, list) and all(isinstance(v, str) for v in value))
    )
    if not ok:
        raise ConfigError(f"{where} must be {wanted}, not {value!r}", "Fix the value")
    if kind is int and abs(value) > 2**53:
        raise ConfigError(f"{where} is too large: {value}", "Fix the value")
    if kind is float:
        value = float(value)
    if kind is Path:
        value = Path(value).expanduser()
    check = SETTINGS[name].metadata["check"]
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"{where} must be {problem}, not {value!r}", "Fix the value")
    return value


def _primary_metrics(table: Mapping[Any, Any], where: str) -> dict[str, str]:
    """[metrics.primary]: experiment name or glob -> metric key."""
    hint = 'Map an experiment name or glob to a metric key, e.g. "CIFAR*" = "test_accuracy"'
    for pattern, key in table.items():
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(f"{where}: {pattern!r} is not an experiment name or glob", hint)
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{where}.{pattern} must be a metric key, not {key!r}", hint)
    return dict(table)


def _metric_directions(table: Mapping[Any, Any], where: str) -> dict[str, bool]:
    """[metrics]: metric key or "*suffix" -> "higher" or "lower" (True or False, in
    Python), held as True when greater is better."""
    directions = {}
    for key, value in table.items():
        if not isinstance(key, str) or not key.strip("* "):
            raise ConfigError(
                f"{where}: {key!r} is not a metric key",
                'Name a metric key or a "*suffix" pattern, e.g. val_loss or "*_latency"',
            )
        word = canonical(Direction, value)
        if word is None and not isinstance(value, bool):
            words = " or ".join(f'"{option}"' for option in typing.get_args(Direction))
            raise ConfigError(
                f"{where}.{key} must be {words}, not {value!r}",
                "Say which direction is better for this metric",
            )
        directions[key] = value if isinstance(value, bool) else word == "higher"
    return directions


def _runs_by_experiment(table: Mapping[Any, Any], where: str) -> dict[str, str]:
    """[report.leaderboard_runs_by_experiment]: experiment name or glob -> which runs its
    leaderboard ranks, in the declared spelling."""
    hint = 'Map an experiment name or glob to one of them, e.g. "hpo-*" = "children"'
    chosen = {}
    for pattern, value in table.items():
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(f"{where}: {pattern!r} is not an experiment name or glob", hint)
        runs = canonical(LeaderboardRuns, value)
        if runs is None:
            raise ConfigError(
                f"{where}.{pattern} must be {choice_words(LeaderboardRuns)}, not {value!r}", hint
            )
        chosen[pattern] = runs
    return chosen


def _mail_digests(tables: Any, where: str) -> list[MailDigest]:
    """[[mail.digests]]: each team's recipients and the experiments (globs) it gets."""
    example = 'e.g. [[mail.digests]] to = ["churn-team@example.com"] experiments = ["churn*"]'
    _check_tables(tables, f"{where} must be [[mail.digests]] tables", example)
    found = []
    for number, table in enumerate(tables, 1):
        at = f"{where} number {number}"
        _known_keys(table, {"to", "experiments", "workspaces"}, at)
        to = _text_list(table.get("to"), f"{at}: to", required=True)
        bad = one_line_addresses(to)
        if bad:
            raise ConfigError(f"{at}: to must be {bad}", "Fix the addresses")
        workspaces = _text_list(table.get("workspaces"), f"{at}: workspaces")
        experiments = _text_list(
            table.get("experiments"), f"{at}: experiments", required=not workspaces
        )
        found.append(MailDigest(tuple(to), tuple(experiments), tuple(workspaces)))
    return found


_TABLE_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "mail_digests": _mail_digests,
    "primary_metrics": _primary_metrics,
    "child_metrics": _primary_metrics,
    "metric_directions": _metric_directions,
    "leaderboard_runs_by_experiment": _runs_by_experiment,
}


def _check_tables(tables: Any, problem: str, example: str) -> None:
    """An array of tables ([[name]] in TOML), or the one-line error naming it."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(problem, example)


def _sources(tables: Any, path: Path) -> list[Source]:
    example = 'e.g. [[sources]] name = "team_a" tracking_uri = "http://mlflow-a:5000"'
    _check_tables(tables, f"{path}: sources must be [[sources]] tables", example)
    found: list[Source] = []
    for number, table in enumerate(tables, 1):
        where = f"{path}: [[sources]] number {number}"
        unknown = sorted(set(table) - {"name", "tracking_uri", "via"})
        if unknown:
            raise ConfigError(
                f"{where} has unknown keys {unknown}", "Keys: name, tracking_uri, via"
            )
        name, uri, via = table.get("name"), table.get("tracking_uri"), table.get("via")
        if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: name must be lowercase letters, digits and _ (a letter first, at "
                f"most 40), not {name!r}",
                "It names the source's schema and its value in the source column",
            )
        if name in RESERVED_SOURCE_NAMES or any(s.name == name for s in found):
            raise ConfigError(f"{where}: the name {name!r} is taken", "Choose another name")
        if not isinstance(uri, str) or not uri.strip():
            raise ConfigError(f"{where}: tracking_uri is missing", example)
        if via is not None:
            via = checked("via", via, f"{where}: via")
        found.append(Source(name, _anchored_sqlite(uri.strip(), path.parent), via))
    return found


def _known_keys(table: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}", f"Keys: {', '.join(sorted(keys))}")


def _text_list(value: Any, where: str, *, required: bool = False) -> list[str]:
    """A list of non-blank text values (a single text value is a list of one)."""
    if value is None and not required:
        return []
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise ConfigError(
            f"{where} must be a list of text values, none blank, not {value!r}",
            'e.g. ["churn*", "fraud-model"]',
        )
    return [v.strip() for v in value]


def _text(value: Any, where: str, hint: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} is missing or blank", hint)
    return value.strip()


def _env_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not ENV_NAME.fullmatch(value):
        raise ConfigError(
            f"{where} must name an environment variable, not {value!r}",
            'e.g. url_env = "RUNREPORT_SLACK_URL"',
        )
    return value


CHANNEL_KEYS: dict[str, set[str]] = {
    "slack": {"url_env"},
    "teams": {"url_env"},
    "webhook": {"url_env", "secret_env"},
    "email": {"to"},
}


def _channels(tables: Any, path: Path) -> list[Channel]:
    example = 'e.g. [[channels]] name = "ml-team" kind = "slack" url_env = "RUNREPORT_SLACK_URL"'
    _check_tables(tables, f"{path}: channels must be [[channels]] tables", example)
    found: list[Channel] = []
    for number, table in enumerate(tables, 1):
        where = f"{path}: [[channels]] number {number}"
        name = _text(table.get("name"), f"{where}: name", example)
        where = f"{path}: [[channels]] {name!r}"
        if any(channel.name == name for channel in found):
            raise ConfigError(f"{where}: the name is used twice", "Give each channel its own name")
        kind = canonical(ChannelKind, table.get("kind"))
        if kind is None:
            raise ConfigError(
                f"{where}: kind must be {choice_words(ChannelKind)}, not {table.get('kind')!r}",
                example,
            )
        if "url" in table:
            raise ConfigError(
                f"{where}: a webhook URL holds a secret and is never written in the config",
                'Put it in an environment variable and name that: url_env = "RUNREPORT_SLACK_URL"',
            )
        _known_keys(table, {"name", "kind", "experiments"} | CHANNEL_KEYS[kind], where)
        experiments = tuple(_text_list(table.get("experiments"), f"{where}: experiments"))
        if kind == "email":
            to = _text_list(table.get("to"), f"{where}: to", required=True)
            bad = one_line_addresses(to)
            if bad:
                raise ConfigError(f"{where}: to must be {bad}", "Fix the addresses")
            found.append(Channel(name, "email", to=tuple(to), experiments=experiments))
            continue
        if "url_env" not in table:
            raise ConfigError(f"{where}: url_env is missing", example)
        url_env = _env_name(table["url_env"], f"{where}: url_env")
        secret_env = table.get("secret_env")
        if secret_env is not None:
            secret_env = _env_name(secret_env, f"{where}: secret_env")
        found.append(
            Channel(
                name,
                typing.cast(ChannelKind, kind),
                url_env=url_env,
                secret_env=secret_env,
                experiments=experiments,
            )
        )
    return found


def _alert_option(kind_of: type, value: Any, where: str) -> Any:
    if kind_of is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, not {value!r}", "Fix the value")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where} must be a finite number ≥ 0, not {value!r}", "Fix it")
        return float(value)
    if kind_of is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where} must be a whole number ≥ 0, not {value!r}", "Fix it")
        return value
    if kind_of is list:
        return _text_list(value, where)
    return _text(value, where, "Give a metric key, e.g. val_auc")


def _alert_rules(tables: Any, path: Path) -> list[AlertRule]:
    example = (
        'e.g. [[alerts]] name = "churn regression" kind = "metric_regression" '
        'channels = ["ml-team"]'
    )
    _check_tables(tables, f"{path}: alerts must be [[alerts]] tables", example)
    found: list[AlertRule] = []
    for number, table in enumerate(tables, 1):
        where = f"{path}: [[alerts]] number {number}"
        name = _text(table.get("name"), f"{where}: name", example)
        where = f"{path}: [[alerts]] {name!r}"
        if any(rule.name == name for rule in found):
            raise ConfigError(f"{where}: the name is used twice", "Give each rule its own name")
        kind = canonical(AlertKind, table.get("kind"))
        if kind is None:
            raise ConfigError(
                f"{where}: kind must be {choice_words(AlertKind)}, not {table.get('kind')!r}",
                example,
            )
        spec = ALERT_OPTIONS[kind]
        _known_keys(table, {"name", "kind", "experiments", "channels", *spec}, where)
        channels = _text_list(table.get("channels"), f"{where}: channels", required=True)
        experiments = _text_list(table.get("experiments"), f"{where}: experiments")
        options = {
            key: _alert_option(kind_of, table[key], f"{where}: {key}") if key in table else default
            for key, (kind_of, default) in spec.items()
        }
        if kind == "metric_regression":
            given = [key for key in ("threshold", "relative", "zscore") if key in table]
            if len(given) > 1:
                raise ConfigError(
                    f"{where}: give one of threshold, relative and zscore, not {given}",
                    "threshold: absolute; relative: a share of the previous best; zscore: "
                    "standard deviations from the last baseline_runs runs",
                )
            if not given:
                options["zscore"] = DEFAULT_ZSCORE
            if options["baseline_runs"] < 2:
                raise ConfigError(f"{where}: baseline_runs must be at least 2", "Fix it")
        if kind == "failure_rate" and options["max_failed"] is None and options["max_rate"] is None:
            options["max_failed"] = DEFAULT_MAX_FAILED
        if "window_hours" in options and options["window_hours"] <= 0:
            raise ConfigError(f"{where}: window_hours must be more than 0", "Fix it")
        found.append(
            AlertRule(
                name,
                typing.cast(AlertKind, kind),
                tuple(channels),
                tuple(experiments),
                tuple(options.items()),
            )
        )
    return found


def _check_alert_routes(config: Config) -> None:
    """Every channel a rule or report.channels names exists."""
    known = {channel.name for channel in config.channels}
    named = [(f"[[alerts]] {rule.name!r}", rule.channels) for rule in config.alerts]
    named.append(("report.channels", tuple(config.report_channels)))
    for where, channels in named:
        missing = [name for name in channels if name not in known]
        if missing:
            raise ConfigError(
                f"{where} names the channel {missing[0]!r}, which no [[channels]] table has",
                f"Channels: {', '.join(sorted(known)) or 'none'}; add a [[channels]] table "
                "or fix the name",
            )


def _check_sources(config: Config) -> None:
    """What only the merged settings show: a source named like the warehouse's file (DuckDB
    names the warehouse's catalog by it), or two sources reading one store."""
    stem = config.db.stem.lower()
    for source in config.sources:
        if source.name == stem:
            raise ConfigError(
                f"[[sources]] name {source.name!r} is the warehouse's own name ({config.db})",
                "Choose another source name, or another warehouse.path",
            )
    seen: dict[str, str] = {}
    for source in config.sources:
        store = source.tracking_uri.rstrip("/").lower()
        if store in seen:
            raise ConfigError(
                f"[[sources]] {seen[store]!r} and {source.name!r} read the same tracking store: "
                "its runs would be counted twice",
                "Keep one of them",
            )
        seen[store] = source.name


def load_config(path: Path | None) -> Config:
    """The file alone over the defaults (no environment, no flags): what a file says."""
    return resolve(path, environ={})
