"""Resolve and check a tracking URI before MLflow touches it, and hide its credentials.

MLflow creates a new, empty SQLite store where a path is mistyped and retries an
unreachable server for minutes; both look like "no runs" to a cron job. We check first.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from etl.errors import ConfigError, JobFailed
from etl.redact import redact_uri, remember_secrets_of

log = logging.getLogger(__name__)

SQL_SCHEMES = {"sqlite", "postgresql", "mysql", "mssql"}
HTTP_SCHEMES = {"http", "https"}
redact = redact_uri  # the one redaction lives in etl.redact


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else MLflow's own default (a SQLite file in the working dir)."""
    import mlflow  # only when no URI is given: MLflow's import costs seconds

    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The file a sqlite:/// URI names (None for an in-memory store)."""
    rest = uri[len("sqlite://") :]
    if rest in ("", "/", "/:memory:"):
        return None
    return Path(rest[1:] if rest.startswith("/") else rest)


def check_tracking_uri(uri: str) -> str:
    """Raise a ConfigError or JobFailed naming the fix; return the URI MLflow should use."""
    remember_secrets_of(uri)  # hidden by value wherever it shows up from now on
    scheme = urlsplit(uri).scheme.lower()
    shown = redact(uri)
    if scheme in ("", "file") or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return _check_file_store(uri)
    base_scheme = scheme.split("+", 1)[0]
    if base_scheme == "sqlite":
        # sqlite:// alone is SQLAlchemy's in-memory store: say that, not "too few slashes".
        if "://" in uri and sqlite_path(uri) is None:
            raise ConfigError(
                f"the tracking URI {shown!r} names no SQLite file (an empty, in-memory store)",
                "Give the store's path: sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db (is a variable in the config unset?)",
            )
        if not uri.lower().split("://", 1)[-1].startswith("/") or "://" not in uri:
            raise ConfigError(
                f"the tracking URI {shown!r} is not a SQLite URI MLflow reads as written",
                "Use sqlite:///relative/path.db or sqlite:////absolute/path.db (three or "
                "four slashes)",
            )
        path = sqlite_path(uri)
        assert path is not None
        if not path.is_file():
            raise ConfigError(
                f"no MLflow store at {path} (from {shown})",
                "Check the path; MLflow would silently create a new, empty store there. "
                "Use sqlite:///relative/path.db or sqlite:////absolute/path.db",
            )
        return uri
    if base_scheme in SQL_SCHEMES:
        return uri
    if scheme in HTTP_SCHEMES:
        _check_reachable(uri)
        return uri
    raise ConfigError(
        f"unsupported tracking URI scheme '{scheme}' in {shown}",
        "Use sqlite:///path/to/mlflow.db, http(s)://host:port, a postgresql:// or mysql:// "
        "database URI, or a path to an ./mlruns folder",
    )


def _check_file_store(uri: str) -> str:
    path = Path(urlsplit(uri).path if uri.startswith("file:") else uri)
    if not path.is_dir():
        raise ConfigError(
            f"no MLflow file store at {path}",
            "Check the path to the mlruns folder, or pass --tracking-uri sqlite:///mlflow.db",
        )
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        # Extraction only reads; MLflow 3 refuses file stores unless this is set.
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        log.info("reading legacy file store %s (set MLFLOW_ALLOW_FILE_STORE=true for you)", path)
    return path.resolve().as_uri()


def _check_reachable(uri: str) -> None:
    parts = urlsplit(uri)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ConfigError(
            f"tracking URI {redact(uri)} has no valid host:port",
            "Percent-encode special characters of a password in the URI (e.g. / as %2F), "
            "or set MLFLOW_TRACKING_PASSWORD instead",
        ) from None
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=10):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise JobFailed(
            f"cannot reach the tracking server at {redact(uri)}: {reason}",
            "Start the server or fix --tracking-uri / MLFLOW_TRACKING_URI",
        ) from exc
