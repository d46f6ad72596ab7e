"""The `runreport` command line: parses options and calls the modules that do the work.

Options that are settings (most of them) are built from their one declaration in
etl/config.py, and every command resolves them through the same merge there:
defaults < the --config file < environment variables < flags. Options that belong to one
command only (a query, --dry-run, --since) are plain click options here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

import click

from etl import __version__
from etl.config import (
    SETTINGS,
    Config,
    Dialect,
    SmtpSecurity,
    SqlFormat,
    ViewsFormat,
    canonical,
    choice_words,
    choices,
    default,
    resolve,
    value_type,
)
from etl.errors import ConfigError, RunreportError, interrupted_message, scrub_credentials
from etl.extract.source import Mode

if TYPE_CHECKING:
    from etl.report.render import ReportResult

log = logging.getLogger("runreport")


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def setting_option(name: str, *flags: str, **overrides: Any) -> Decorator:
    """The click option of the setting `name` (a field of etl.config.Config): its flag,
    type, choices and help come from the declaration. Click reads no variable, fills no
    default and matches no choice: etl.config.resolve does all three, for every command
    alike."""
    spec = SETTINGS[name].metadata
    kind = value_type(name)
    sources = [f"env var: {spec['env']}"] if spec["env"] else []
    sources.append(f"config: {spec['key']}")
    declared = default(name)
    if declared is not None and not isinstance(declared, (bool, list, dict)):
        sources.append(f"default: {declared}")
    options: dict[str, Any] = {"default": None, "help": f"{spec['help']} [{'; '.join(sources)}]"}
    if choices(name):
        options["metavar"] = f"[{'|'.join(choices(name))}]"
    if kind is bool:
        options["is_flag"] = True
    elif kind is list:
        options["multiple"] = True
    elif kind is Path:
        options["type"] = click.Path(path_type=Path)
    elif kind in (int, float):
        options["type"] = kind
    options.update(overrides)
    return click.option(*(flags or (spec["flag"],)), name, **options)


def settings(*names: str) -> Decorator:
    """Several setting options at once, in the order given."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            command = setting_option(name)(command)
        return command

    return decorate


def config_from_flags(config_file: Path | None, **flags: Any) -> Config:
    """The command's settings: the one merge of etl.config over these flags."""
    return resolve(config_file, flags)


class RunreportGroup(click.Group):
    """Catches runreport's errors once: one line on stderr, the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except RunreportError as exc:
            click.echo(error_line(exc.one_line()), err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(interrupted_message(ctx.invoked_subcommand), err=True)
            sys.exit(130)
        except Exception as exc:  # unforeseen: still one line for cron, unless debugging
            if os.environ.get("RUNREPORT_DEBUG"):
                raise
            failure = RunreportError(
                f"{exc.__class__.__name__}: {exc}",
                "Set RUNREPORT_DEBUG=1 to see the traceback",
            )
            click.echo(error_line(failure.one_line()), err=True)
            sys.exit(1)


LOG_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def error_line(text: str) -> str:
    """The one error line on stderr, stamped like the log lines (cron logs interleave them)."""
    stamp = datetime.now(timezone.utc).astimezone().strftime(LOG_TIME_FORMAT)
    return f"{stamp} runreport: error: {text}"


def _scrub_log_record(record: logging.LogRecord) -> bool:
    """No log line, ours or a library's, shows a password from a URI."""
    message = record.getMessage()
    scrubbed = scrub_credentials(message)
    if scrubbed != message:
        record.msg, record.args = scrubbed, None
    return True


def setup_logging(quiet: bool) -> None:
    # MLflow sets its own logger's level when imported (later, lazily): tell it through
    # its variable that INFO lines such as "Creating initial MLflow database tables" are noise.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.INFO,
        format="%(asctime)s runreport %(levelname)s %(message)s",
        datefmt=LOG_TIME_FORMAT,
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_scrub_log_record)
    # MLflow and alembic are chatty at INFO; their warnings still show.
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=RunreportGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runreport")
@click.option("--quiet", "-q", is_flag=True, envvar="RUNREPORT_QUIET", help="Log errors only.")
def cli(quiet: bool) -> None:
    """MLflow run history as a DuckDB warehouse, and reports built from it.

    \b
    First time? Try:  runreport demo
    """
    setup_logging(quiet)


CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RUNREPORT_CONFIG",
    show_envvar=True,
    help="TOML configuration (see runreport.example.toml); options given here win over it.",
)


@cli.command()
@CONFIG_OPTION
@settings("tracking_uri", "db")
@click.option("--full", "mode", flag_value="full", default=True, help="Rebuild from scratch.")
@click.option(
    "--incremental",
    "mode",
    flag_value="incremental",
    help="Re-read only runs that can have changed since the last extract. "
    "[env var: RUNREPORT_EXTRACT_MODE=full|incremental]",
)
@settings("metric_history", "page_size", "workers", "via")
@click.option(
    "--allow-shrink",
    is_flag=True,
    envvar="RUNREPORT_ALLOW_SHRINK",
    show_envvar=True,
    help="Let a full extract replace a warehouse of at least 10 runs with one of fewer "
    "than half as many (otherwise it fails and keeps the old one).",
)
@click.option(
    "--alerts",
    "with_alerts",
    is_flag=True,
    envvar="RUNREPORT_EXTRACT_ALERTS",
    show_envvar=True,
    help="Then evaluate the [[alerts]] rules and deliver what is new (a channel that is "
    "down is a warning counted in extract_log, never a failure).",
)
def extract(
    config_file: Path | None, mode: Mode, allow_shrink: bool, with_alerts: bool, **flags: Any
) -> None:
    """Every run of every experiment, deleted ones included, into the DuckDB file.

    \b
    Example:
      runreport extract --tracking-uri sqlite:///mlflow.db --db runs.duckdb
      runreport extract --incremental --config runreport.toml
      runreport extract --via sql --tracking-uri postgresql://reader@db/mlflow
      runreport extract --incremental --alerts --config runreport.toml
    """
    # lazy, as in every command: MLflow alone takes seconds to import
    from etl.job import extract_notified

    config = config_from_flags(config_file, **flags)
    # on_failure hears of a failure once per streak, and of the recovery
    extract_notified(config, _extract_mode(mode), allow_shrink=allow_shrink)
    if with_alerts:
        from etl.alerts import evaluate_and_deliver  # requests and the rules: when asked for

        try:
            evaluate_and_deliver(config, count_in_extract_log=True)
        except RunreportError as exc:  # the extract is done and kept: alerts wait an hour
            log.warning("alerts not evaluated: %s", exc.one_line())


@cli.command()
@CONFIG_OPTION
@settings("db")
@click.option(
    "--dry-run",
    is_flag=True,
    envvar="RUNREPORT_ALERTS_DRY_RUN",
    show_envvar=True,
    help="Print what would be sent; send nothing, record nothing.",
)
def alerts(config_file: Path | None, dry_run: bool, **flags: Any) -> None:
    """Evaluate the [[alerts]] rules against the warehouse and deliver what is new.

    Each alert goes once to each of its channels; a delivery that fails is retried at
    the next run, up to alerting.max_attempts. The first evaluation of a rule sets its
    baseline: nothing before it is alerted.

    \b
    Example:
      runreport alerts --config runreport.toml --dry-run
      runreport alerts --config runreport.toml
    """
    # lazy: requests and the report's helpers, for this command only
    from etl.alerts import evaluate_and_deliver

    config = config_from_flags(config_file, **flags)
    if not config.alerts:
        raise ConfigError(
            "no alert rules in the config",
            "Add [[channels]] and [[alerts]] tables (see runreport.example.toml)",
        )
    summary = evaluate_and_deliver(config, dry_run=dry_run)
    for text in summary.previews:
        click.echo(text)
    if dry_run:
        click.echo(f"dry run: {summary.new} deliveries would be sent; nothing sent or recorded")
    else:
        click.echo(summary.describe())


@cli.command()
@settings("tracking_uri")
@click.option(
    "--log-models",
    is_flag=True,
    envvar="RUNREPORT_LOG_MODELS",
    help="Let autolog save model artifacts too (slower, more disk).",
)
def seed(log_models: bool, **flags: Any) -> None:
    """Log demo runs that use every mlflow.start_run parameter.

    \b
    Example:
      runreport seed --tracking-uri sqlite:///mlflow.db
    """
    # lazy: MLflow, for this command only
    from etl.demo.seed import seed_demo_runs
    from etl.extract.tracking import configure_tracking_client, default_tracking_uri

    config = config_from_flags(None, **flags)
    # a server that is down is tried as an extract tries it, not for MLflow's minutes
    configure_tracking_client(config.tracking_timeout, config.tracking_retries)
    summary = seed_demo_runs(config.tracking_uri or default_tracking_uri(), log_models=log_models)
    click.echo(summary.describe())


@cli.command()
@CONFIG_OPTION
@settings("db")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(get_args(SqlFormat)),
    default=None,
    envvar="RUNREPORT_SQL_FORMAT",
    help="Output format. Default: a table on a terminal, CSV in a pipe.",
)
@click.option(
    "--schema",
    is_flag=True,
    help="List the tables and views, one line each saying what it holds; with a NAME in "
    "place of the query, that table's or view's columns.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=None,
    metavar="SECONDS",
    envvar="RUNREPORT_SQL_TIMEOUT",
    show_envvar=True,
    help="Stop the query after this many seconds (exit 1). Default: no limit.",
)
@click.argument("query", required=False)
def sql(
    config_file: Path | None,
    fmt: SqlFormat | None,
    schema: bool,
    timeout: float | None,
    query: str | None,
    **flags: Any,
) -> None:
    """Run one read-only SQL query against the warehouse.

    With --config, the views apply its settings (time zone, metric rules) for this query.

    \b
    Examples:
      runreport sql "select status, count(*) from runs group by all"
      runreport sql --format json "select * from runs_per_estimator"
      runreport sql --schema
      runreport sql --schema leaderboard
    """
    # lazy: DuckDB, for this command only
    from etl.warehouse.query import print_query, print_schema
    from etl.warehouse.settings import ViewSettings

    config = config_from_flags(config_file, **flags)
    view_settings = ViewSettings.given_in(config)
    fmt = fmt or ("table" if sys.stdout.isatty() else "csv")
    if schema:
        print_schema(config.db, fmt, query)
    elif query:
        print_query(config.db, query, fmt, timeout, view_settings)
    else:
        raise ConfigError("no query given", 'Pass one, e.g. runreport sql "select * from runs"')


@cli.command()
@CONFIG_OPTION
@settings("db")
@setting_option(
    "export_parquet",
    "--parquet",
    metavar="DIR",
    help="Folder of the export; replaced whole. "
    "[env var: RUNREPORT_EXPORT_PARQUET; config: export.parquet]",
)
def export(config_file: Path | None, **flags: Any) -> None:
    """Every warehouse table as Parquet, one folder per table, with _manifest.json.

    Runs and the tables keyed by run are partitioned by experiment (Hive style). DIR is
    written beside itself and swapped in whole.

    \b
    Example:
      runreport export --parquet lake/runreport --db runs.duckdb
    """
    # lazy: DuckDB, for this command only
    from etl.warehouse.export import export_parquet

    config = config_from_flags(config_file, **flags)
    if config.export_parquet is None:
        raise ConfigError(
            "no export folder given", "Pass --parquet DIR or set [export] parquet in the config"
        )
    click.echo(export_parquet(config.db, config.export_parquet).describe())


@cli.command()
@click.option(
    "--dialect",
    type=click.Choice(get_args(Dialect)),
    required=True,
    envvar="RUNREPORT_DIALECT",
    show_envvar=True,
    help="The engine the view SQL is written for.",
)
@click.option(
    "--parquet",
    type=click.Path(file_okay=False),  # a str: a URI is refused before a Path mangles it
    default=None,
    metavar="DIR",
    envvar="RUNREPORT_VIEWS_PARQUET",
    show_envvar=True,
    help="spark: first make each table of this export (runreport export) a temporary view, "
    "and runs_wide / runs_wide_all from its keys.",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(get_args(ViewsFormat), case_sensitive=False),
    default="sql",
    show_default=True,
    help="sql: the statements, each ending with ';' and a blank line; json: a list of "
    '{"name", "sql"} objects (the views\' comments hold \';\': no splitting needed).',
)
def views(dialect: Dialect, parquet: str | None, output: ViewsFormat) -> None:
    """The views of sql/ for another engine, transpiled with sqlglot, in dependency order.

    One CREATE OR REPLACE TEMPORARY VIEW statement per view. A view that would not keep
    its meaning is refused (exit 1).

    \b
    Example:
      runreport export --parquet /lake/runreport
      runreport views --dialect spark --parquet /lake/runreport > views.sql
      runreport views --dialect trino --format json > views.json
    """
    # lazy: sqlglot, for this command only
    from etl.warehouse.dialects import SEPARATOR, named_statements, view_statements
    from etl.warehouse.export import local_export

    folder = local_export(parquet) if parquet is not None else None
    statements = view_statements(dialect, parquet=folder)
    if output.lower() == "json":
        named = named_statements(statements, dialect)
        click.echo(json.dumps([{"name": name, "sql": sql} for name, sql in named], indent=2))
    else:
        click.echo("".join(sql + SEPARATOR for sql in statements), nl=False)


@cli.command()
@CONFIG_OPTION
@settings("db", "out")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    envvar="RUNREPORT_SINCE",
    help="Start of the 'what happened' window (a date). Default: the last --days days.",
)
@settings("days", "templates")
@setting_option("mlflow_ui_url", "--ui-url")
def report(config_file: Path | None, since: datetime | None, **flags: Any) -> None:
    """HTML report, email HTML, plain text and one CSV per view into a folder.

    With --out DIR: into DIR, saying what changed since the report already there. With a
    config and no --out: into today's dated folder under report.out, as `run` writes it,
    saying what changed since the report before today's.

    \b
    Example:
      runreport report --db runs.duckdb --out reports --days 7
      runreport report --config runreport.toml --ui-url https://mlflow.example.com
    """
    config = config_from_flags(config_file, **flags)
    result = _render(config, dated=_dated(config_file, flags), since=since)
    click.echo(f"report: {result.index_html}")


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default="runreport-demo",
    show_default=True,
    envvar="RUNREPORT_DEMO_DIR",
    help="Folder for the demo store, warehouse and report.",
)
def demo(folder: Path) -> None:
    """Seed a local MLflow store, extract it and render the report: the first thing to run.

    \b
    Example:
      runreport demo --dir runreport-demo
    """
    # lazy: MLflow, for this command only
    from etl.demo.run import run_demo

    click.echo(run_demo(folder))


@cli.command()
@CONFIG_OPTION
@settings("tracking_uri", "db", "out")
@click.option(
    "--full",
    is_flag=True,
    envvar="RUNREPORT_FULL",
    show_envvar=True,
    help="Full extract instead of incremental.",
)
@click.option(
    "--no-email",
    is_flag=True,
    envvar="RUNREPORT_NO_EMAIL",
    show_envvar=True,
    help="Render the report but send no mail at all: neither the report nor the "
    "[mail] on_failure notice.",
)
def run(config_file: Path | None, full: bool, no_email: bool, **flags: Any) -> None:
    """The cron entry point: extract (incremental), report, optionally email.

    Reports go into OUT/YYYY-MM-DD, with OUT/latest pointing at the newest.

    \b
    Exit codes: 0 ok, 1 the job failed, 2 bad configuration, 75 another run holds the lock.
    \b
    Example:
      runreport run --config /etc/runreport.toml
    """
    # lazy: MLflow and the report's libraries, for this command only
    from etl.job import run_job

    config = config_from_flags(config_file, **flags)
    folder = run_job(config, force_full=full, send_email=not no_email)
    click.echo(f"report: {folder / 'index.html'}")


@cli.command()
@CONFIG_OPTION
@settings("db", "out")
@setting_option("mlflow_ui_url", "--ui-url")
@setting_option("mail_to", "--to", metavar="ADDR")
@setting_option("mail_from", "--from", metavar="ADDR")
@settings("smtp_host", "smtp_port", "smtp_user")
@setting_option(
    "smtp_security",
    "--starttls",
    flag_value="starttls",
    help="Upgrade to TLS with STARTTLS. [env var: "
    f"RUNREPORT_SMTP_SECURITY={'|'.join(get_args(SmtpSecurity))}; config: mail.security]",
)
@setting_option("smtp_security", "--ssl", flag_value="ssl", help="TLS from the first byte.")
@setting_option("mail_subject", "--subject", metavar="TEMPLATE")
@settings("attach_csv")
@click.option(
    "--dry-run",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.eml",
    envvar="RUNREPORT_DRY_RUN",
    show_envvar=True,
    help="Write the message to FILE.eml (opens in a mail client) instead of sending it.",
)
def email(config_file: Path | None, dry_run: Path | None, **flags: Any) -> None:
    """Render the report and send it: text, HTML with inline charts, CSVs on request.

    \b
    The SMTP password is read from RUNREPORT_SMTP_PASSWORD, never from an option.
    Example:
      RUNREPORT_SMTP_PASSWORD=... runreport email --to ml-team@example.com \\
        --smtp-host smtp.example.com --starttls --smtp-user reports
    """
    # lazy: the report's libraries, for this command only
    from etl.mail import MailSettings, email_report, required_recipients

    config = config_from_flags(config_file, **flags)
    mail = MailSettings.from_config(config)
    required_recipients(mail)  # a missing --to fails before the render
    result = _render(config, dated=_dated(config_file, flags))
    click.echo(email_report(result.out, mail, config.attach_csv, dry_run))


def _dated(config_file: Path | None, flags: dict[str, Any]) -> bool:
    """`report` and `email` write `run`'s dated folder when given a config and no --out."""
    return config_file is not None and flags.get("out") is None


EARLIEST_SINCE = date(1970, 1, 1)


def _render(config: Config, *, dated: bool, since: datetime | None = None) -> ReportResult:
    """The report of `report` and `email`: today's dated folder under report.out (as
    `run` writes it), or the folder --out names."""
    # lazy: the report's libraries (Jinja, matplotlib), for these commands only
    from etl.job import render_dated
    from etl.report.render import render_from_config

    day = since.date() if since else None
    if day is not None and not EARLIEST_SINCE <= day <= date.today() + timedelta(days=1):
        # a day later than today (in any time zone) is a typo; before 1970 no run exists
        # (and 0001-01-01 overflowed in the window's arithmetic)
        raise ConfigError(
            f"--since {day} is not a day runs can have started on",
            f"Give a date from {EARLIEST_SINCE} to today, e.g. --since {date.today()}",
        )
    if dated:
        return render_dated(config, since=day)
    return render_from_config(config, config.out, since=day)


def _extract_mode(given: Mode) -> Mode:
    """--full/--incremental, else RUNREPORT_EXTRACT_MODE, else full (two flags sharing one
    value cannot read one variable through click)."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source("mode") is not click.core.ParameterSource.DEFAULT:
        return given
    text = os.environ.get("RUNREPORT_EXTRACT_MODE", given).strip()
    mode = canonical(Mode, text)
    if mode is None:
        raise ConfigError(
            f"RUNREPORT_EXTRACT_MODE is {text!r}",
            f"Set it to {choice_words(Mode)}, or unset it",
        )
    return cast(Mode, mode)


def main() -> None:
    cli(prog_name="runreport")
