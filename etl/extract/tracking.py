"""Resolve and check a tracking URI before MLflow touches it, and hide its credentials;
set how MLflow's HTTP client retries a tracking server.

MLflow creates a new, empty SQLite store where a path is mistyped and retries an
unreachable server for minutes; both look like "no runs" to a cron job. We check first.

Retries (`tracking.retries`): a server that refuses or times out is tried again with
backoff, by MLflow's own machinery (its MLFLOW_HTTP_REQUEST_* variables feed a urllib3
`Retry` that covers refused connections, timeouts and 429/5xx replies). The reachability
check below follows the same variables with the same urllib3 `Retry`, so a server that is
down at 06:00 and up a few seconds later is waited for there too. Every attempt, its wait
and the backoff between attempts fit in `tracking.timeout_seconds`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from etl.errors import ConfigError, JobFailed
from etl.redact import redact_uri, remember_secrets_of

log = logging.getLogger(__name__)

SQL_SCHEMES = {"sqlite", "postgresql", "mysql", "mssql"}
HTTP_SCHEMES = {"http", "https"}
redact = redact_uri  # the one redaction lives in etl.redact

# MLflow's HTTP variables and their defaults (mlflow/environment_variables.py), read here
# without importing MLflow, whose import costs seconds
MAX_RETRIES_VAR = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
BACKOFF_FACTOR_VAR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"  # whole seconds: MLflow reads an int
BACKOFF_JITTER_VAR = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"
TIMEOUT_VAR = "MLFLOW_HTTP_REQUEST_TIMEOUT"
MLFLOW_DEFAULTS = {
    MAX_RETRIES_VAR: 7,
    BACKOFF_FACTOR_VAR: 2,
    BACKOFF_JITTER_VAR: 1.0,
    TIMEOUT_VAR: 120,
}
MLFLOW_MAX_RETRIES = 10  # MLflow refuses more (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT)
JITTER_FROM = 30  # a budget below this many seconds gets no random jitter: it has no room
MIN_ATTEMPT_SECONDS = 5  # an attempt shorter than this would fail a merely slow server
CHECK_TIMEOUT = 10  # the reachability check needs a TCP connection only, not an answer

_set_by_us: dict[str, str] = {}  # what configure_tracking_client last wrote, per variable


@dataclass(frozen=True)
class TrackingRetry:
    """How a request to the tracking server is retried: urllib3's schedule (no sleep
    before the first retry, then backoff_factor * 2, * 4, ... seconds plus up to `jitter`)."""

    retries: int
    backoff_factor: int
    jitter: float
    attempt_timeout: int  # seconds each attempt may wait

    def sleeping(self) -> float:
        """The most the backoff between all attempts can sleep."""
        backoffs = range(2, self.retries + 1)  # urllib3 sleeps none after the first failure
        return float(sum(self.backoff_factor * 2 ** (n - 1) + self.jitter for n in backoffs))

    def longest(self) -> float:
        """The longest the request can take: every attempt waiting its whole timeout."""
        return (self.retries + 1) * self.attempt_timeout + self.sleeping()

    def mlflow_variables(self) -> dict[str, str]:
        return {
            MAX_RETRIES_VAR: str(self.retries),
            BACKOFF_FACTOR_VAR: str(self.backoff_factor),
            BACKOFF_JITTER_VAR: str(self.jitter),
            TIMEOUT_VAR: str(self.attempt_timeout),
        }

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> TrackingRetry:
        """The retries MLflow's HTTP client will make, as its variables say."""
        env = os.environ if environ is None else environ

        def number(name: str) -> float:
            try:
                return max(0.0, float(env.get(name, "") or MLFLOW_DEFAULTS[name]))
            except ValueError:
                return float(MLFLOW_DEFAULTS[name])

        return cls(
            retries=int(number(MAX_RETRIES_VAR)),
            backoff_factor=int(number(BACKOFF_FACTOR_VAR)),
            jitter=number(BACKOFF_JITTER_VAR),
            attempt_timeout=max(1, int(number(TIMEOUT_VAR))),
        )


def tracking_retry(timeout_seconds: int, retries: int) -> TrackingRetry:
    """Up to `retries` retries with backoff whose attempts, waits and sleeps together fit in
    `timeout_seconds`. The backoff factor is MLflow's smallest (1 s: 0, 2, 4, 8 s between
    attempts). Where the budget is short, the backoff goes first (factor 0), then retries,
    so each attempt keeps MIN_ATTEMPT_SECONDS (a slow answer is no failure) and the bound
    always holds."""
    if retries > MLFLOW_MAX_RETRIES:
        raise ConfigError(
            f"tracking.retries is {retries}; MLflow's HTTP client allows at most "
            f"{MLFLOW_MAX_RETRIES}",
            "Set tracking.retries (RUNREPORT_TRACKING_RETRIES) to 10 or fewer; raise "
            "tracking.timeout_seconds to wait longer",
        )
    jitter = 1.0 if timeout_seconds >= JITTER_FROM else 0.0
    for shortest in (MIN_ATTEMPT_SECONDS, 1):
        for tries in range(retries, -1, -1):
            for factor in (1, 0):
                sleeping = TrackingRetry(tries, factor, jitter, 1).sleeping()
                attempt_timeout = int((timeout_seconds - sleeping) // (tries + 1))
                if attempt_timeout >= shortest:
                    return TrackingRetry(tries, factor, jitter, attempt_timeout)
    return TrackingRetry(0, 0, 0.0, max(1, timeout_seconds))


def configure_tracking_client(
    timeout_seconds: int, retries: int, environ: MutableMapping[str, str] | None = None
) -> TrackingRetry:
    """Set MLflow's HTTP variables from `tracking.timeout_seconds` and `tracking.retries`
    (before any request; MLflow reads them at each request). A variable the user set
    wins (they asked MLflow for it); one this function set before is replaced, so a second
    job in one process gets its own settings. Returns what MLflow will do."""
    env = os.environ if environ is None else environ
    for name, value in tracking_retry(timeout_seconds, retries).mlflow_variables().items():
        if name not in env or env[name] == _set_by_us.get(name):
            env[name] = _set_by_us[name] = value
    # each retry would log a warning; the failure itself is the one line the job prints
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    return TrackingRetry.from_environment(env)


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
    plan = TrackingRetry.from_environment()
    # urllib3's own Retry counts the attempts and sleeps its backoff, as in MLflow's client
    from urllib3.exceptions import MaxRetryError
    from urllib3.util.retry import Retry

    retry = Retry(
        total=plan.retries, backoff_factor=plan.backoff_factor, backoff_jitter=plan.jitter
    )
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            with socket.create_connection(
                (host, port), timeout=min(CHECK_TIMEOUT, plan.attempt_timeout)
            ):
                return
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            try:
                retry = retry.increment(method="GET", url=redact(uri), error=exc)
            except MaxRetryError:
                tried = f"{attempts} attempts in {time.monotonic() - started:.0f} s"
                raise JobFailed(
                    f"cannot reach the tracking server at {redact(uri)}: {reason} "
                    f"(unreachable: gave up after {tried if attempts > 1 else '1 attempt'})",
                    "Start the server or fix --tracking-uri / MLFLOW_TRACKING_URI; "
                    "tracking.retries sets how often it is tried",
                ) from exc
            backoff = retry.get_backoff_time()
            log.info(
                "tracking server at %s: %s (attempt %d of %d); trying again in %.1f s",
                redact(uri),
                reason,
                attempts,
                plan.retries + 1,
                backoff,
            )
            time.sleep(backoff)
