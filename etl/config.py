"""The TOML configuration of `runreport run` (see runreport.example.toml).

Every key is checked: an unknown key or a wrong type is a one-line ConfigError naming it.
Precedence: command-line flags, then environment variables, then this file, then defaults.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from etl.errors import ConfigError

# section -> key -> (accepted types, description used in messages)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "tracking": {"uri": ((str,), "a tracking URI")},
    "warehouse": {
        "path": ((str,), "a file path"),
        "full_refresh_days": ((int,), "a whole number of days"),
        "overlap_minutes": ((int,), "a whole number of minutes"),
        "metric_history": ((bool,), "true or false"),
        "workers": ((int,), "a whole number"),
    },
    "report": {
        "out": ((str,), "a folder path"),
        "days": ((int,), "a whole number of days"),
        "timezone": ((str,), "an IANA time zone such as Europe/Berlin"),
        "zombie_after_hours": ((int, float), "a number of hours"),
        "retention_days": ((int,), "a whole number of days"),
        "templates": ((str,), "a folder path"),
    },
    "metrics": {},  # metric key -> "higher" | "lower"
    "mail": {
        "to": ((list,), "a list of addresses"),
        "from": ((str,), "an address"),
        "smtp_host": ((str,), "a host name"),
        "smtp_port": ((int,), "a port number"),
        "smtp_user": ((str,), "a user name"),
        "security": ((str,), '"none", "starttls" or "ssl"'),
        "subject": ((str,), "a subject template"),
        "attach_csv": ((bool,), "true or false"),
        "on_failure": ((list,), "a list of addresses"),
    },
}


@dataclass
class Config:
    tracking_uri: str | None = None
    db: Path = Path("runs.duckdb")
    full_refresh_days: int = 7
    overlap_minutes: int = 60
    metric_history: bool = False
    workers: int | None = None
    out: Path = Path("reports")
    days: int = 7
    timezone: str = "UTC"
    zombie_after_hours: float = 24.0
    retention_days: int = 30
    templates: Path | None = None
    metric_directions: dict[str, bool] = field(default_factory=dict)
    mail_to: list[str] = field(default_factory=list)
    mail_from: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_security: str | None = None
    mail_subject: str | None = None
    attach_csv: bool = False
    on_failure: list[str] = field(default_factory=list)


def load_config(path: Path | None) -> Config:
    """Read and check the file; no file means every default."""
    config = Config()
    if path is None:
        return config
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found", "Check --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", "Fix the file") from None
    _check(data, path)
    _apply(config, data, path.parent)
    return config


def _check(data: dict[str, Any], path: Path) -> None:
    for section, values in data.items():
        if section not in SCHEMA:
            raise ConfigError(
                f"{path}: unknown section [{section}]",
                f"Use one of: {', '.join('[' + s + ']' for s in SCHEMA)}",
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table", "See runreport.example.toml")
        for key, value in values.items():
            name = f"{section}.{key}"
            if section == "metrics":
                if value not in ("higher", "lower"):
                    raise ConfigError(
                        f'{path}: {name} must be "higher" or "lower", not {value!r}',
                        "Say which direction is better for this metric",
                    )
                continue
            if key not in SCHEMA[section]:
                raise ConfigError(
                    f"{path}: unknown key {name}",
                    f"Keys of [{section}]: {', '.join(SCHEMA[section])}",
                )
            types, wanted = SCHEMA[section][key]
            wrong_bool = isinstance(value, bool) and bool not in types
            wrong_items = isinstance(value, list) and not all(isinstance(v, str) for v in value)
            if wrong_bool or wrong_items or not isinstance(value, types):
                raise ConfigError(
                    f"{path}: {name} must be {wanted}, not {value!r}", "Fix the value"
                )
    timezone = data.get("report", {}).get("timezone")
    if timezone is not None:
        check_timezone(timezone)
    security = data.get("mail", {}).get("security")
    if security is not None and security not in ("none", "starttls", "ssl"):
        raise ConfigError(
            f'{path}: mail.security must be "none", "starttls" or "ssl", not {security!r}',
            "Fix the value",
        )


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r}", "Use an IANA name such as UTC or Europe/Berlin"
        ) from None
    return name


def _apply(config: Config, data: dict[str, Any], base: Path) -> None:
    def path(value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    tracking, warehouse = data.get("tracking", {}), data.get("warehouse", {})
    report, mail = data.get("report", {}), data.get("mail", {})
    config.tracking_uri = tracking.get("uri", config.tracking_uri)
    if "path" in warehouse:
        config.db = path(warehouse["path"])
    config.full_refresh_days = warehouse.get("full_refresh_days", config.full_refresh_days)
    config.overlap_minutes = warehouse.get("overlap_minutes", config.overlap_minutes)
    config.metric_history = warehouse.get("metric_history", config.metric_history)
    config.workers = warehouse.get("workers", config.workers)
    if "out" in report:
        config.out = path(report["out"])
    if "templates" in report:
        config.templates = path(report["templates"])
    config.days = report.get("days", config.days)
    config.timezone = report.get("timezone", config.timezone)
    config.zombie_after_hours = float(report.get("zombie_after_hours", config.zombie_after_hours))
    config.retention_days = report.get("retention_days", config.retention_days)
    config.metric_directions = {k: v == "higher" for k, v in data.get("metrics", {}).items()}
    config.mail_to = list(mail.get("to", []))
    config.mail_from = mail.get("from")
    config.smtp_host = mail.get("smtp_host")
    config.smtp_port = mail.get("smtp_port")
    config.smtp_user = mail.get("smtp_user")
    config.smtp_security = mail.get("security")
    config.mail_subject = mail.get("subject")
    config.attach_csv = mail.get("attach_csv", False)
    config.on_failure = list(mail.get("on_failure", []))
