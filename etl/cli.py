"""The `runreport` command line: parses options and calls the modules that do the work."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from etl import __version__
from etl.errors import RunreportError, scrub_credentials
from etl.extract import reader as extract_defaults

log = logging.getLogger("runreport")


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def db_option(
    default: str | None = "runs.duckdb", text: str = "The DuckDB warehouse file."
) -> Decorator:
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=default,
        envvar="RUNREPORT_DB",
        show_envvar=True,
        show_default=default is not None,
        help=text,
    )


def out_option(default: str | None, text: str) -> Decorator:
    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        envvar="RUNREPORT_OUT",
        show_envvar=True,
        show_default=default is not None,
        help=text,
    )


DB_OPTION = db_option()
TRACKING_URI_OPTION = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    show_envvar=True,
    help="MLflow tracking URI: sqlite:///mlflow.db, http(s)://host:port, or an mlruns folder. "
    "Default: [tracking] uri of --config, else MLflow's own default (sqlite:///mlflow.db in "
    "the working directory).",
)


class RunreportGroup(click.Group):
    """Catches runreport's errors once: one line on stderr, the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except RunreportError as exc:
            click.echo(f"runreport: error: {exc.one_line()}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("runreport: interrupted; the previous warehouse is unchanged", err=True)
            sys.exit(130)
        except Exception as exc:  # unforeseen: still one line for cron, unless debugging
            if os.environ.get("RUNREPORT_DEBUG"):
                raise
            failure = RunreportError(
                f"{exc.__class__.__name__}: {exc}",
                "Set RUNREPORT_DEBUG=1 to see the traceback",
            )
            click.echo(f"runreport: error: {failure.one_line()}", err=True)
            sys.exit(1)


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
        datefmt="%Y-%m-%dT%H:%M:%S%z",
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
@TRACKING_URI_OPTION
@db_option(
    None, "The DuckDB warehouse file. Default: [warehouse] path of --config, else runs.duckdb."
)
@click.option("--full", "mode", flag_value="full", default=True, help="Rebuild from scratch.")
@click.option(
    "--incremental",
    "mode",
    flag_value="incremental",
    help="Re-read only runs that can have changed since the last extract. "
    "[env var: RUNREPORT_EXTRACT_MODE=full|incremental]",
)
@click.option(
    "--metric-history",
    is_flag=True,
    default=None,
    envvar="RUNREPORT_METRIC_HISTORY",
    help="Also fill metric_history with every logged point. Slow on big stores: one "
    "get_metric_history call per run and metric key.",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 50_000),
    default=extract_defaults.DEFAULT_PAGE_SIZE,
    show_default=True,
    envvar="RUNREPORT_PAGE_SIZE",
    help="Runs per search_runs request; larger pages are faster and use more memory.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=None,
    envvar="RUNREPORT_WORKERS",
    help="Processes reading experiments in parallel for a full extract: faster, above all "
    "against a tracking server, but each holds its own copy of MLflow (about 170 MB). "
    "Default: 1.",
)
def extract(
    config_file: Path | None,
    tracking_uri: str | None,
    db: Path | None,
    mode: str,
    metric_history: bool | None,
    page_size: int,
    workers: int | None,
) -> None:
    """Every run of every experiment, deleted ones included, into the DuckDB file.

    \b
    Example:
      runreport extract --tracking-uri sqlite:///mlflow.db --db runs.duckdb
      runreport extract --incremental --config runreport.toml
    """
    from datetime import timedelta

    from etl.config import load_config
    from etl.extract.tracking import default_tracking_uri
    from etl.refresh import run_extract
    from etl.warehouse.settings import ViewSettings

    config = load_config(config_file)
    mode = _extract_mode(mode)
    run_extract(
        tracking_uri or config.tracking_uri or default_tracking_uri(),
        db or config.db,
        mode=mode,
        metric_history=config.metric_history if metric_history is None else metric_history,
        page_size=page_size,
        workers=workers or config.workers,
        overlap=timedelta(minutes=config.overlap_minutes),
        view_settings=ViewSettings(
            timezone=config.timezone,
            zombie_after_hours=config.zombie_after_hours,
            metric_directions=config.metric_directions,
        ),
    )


@cli.command()
@TRACKING_URI_OPTION
@click.option(
    "--log-models",
    is_flag=True,
    envvar="RUNREPORT_LOG_MODELS",
    help="Let autolog save model artifacts too (slower, more disk).",
)
def seed(tracking_uri: str | None, log_models: bool) -> None:
    """Log demo runs that use every mlflow.start_run parameter.

    \b
    Example:
      runreport seed --tracking-uri sqlite:///mlflow.db
    """
    from etl.demo.seed import seed_demo_runs
    from etl.extract.tracking import default_tracking_uri

    summary = seed_demo_runs(tracking_uri or default_tracking_uri(), log_models=log_models)
    click.echo(summary.describe())


@cli.command()
@DB_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default=None,
    envvar="RUNREPORT_SQL_FORMAT",
    help="Output format. Default: a table on a terminal, CSV in a pipe.",
)
@click.option("--schema", is_flag=True, help="List the tables and views with their columns.")
@click.argument("query", required=False)
def sql(db: Path, fmt: str | None, schema: bool, query: str | None) -> None:
    """Run one read-only SQL query against the warehouse.

    \b
    Examples:
      runreport sql "select status, count(*) from runs group by all"
      runreport sql --format json "select * from runs_per_estimator"
      runreport sql --schema
    """
    from etl.errors import ConfigError
    from etl.warehouse.query import print_query, print_schema

    fmt = fmt or ("table" if sys.stdout.isatty() else "csv")
    if schema:
        print_schema(db, fmt)
    elif query:
        print_query(db, query, fmt)
    else:
        raise ConfigError("no query given", 'Pass one, e.g. runreport sql "select * from runs"')


@cli.command()
@DB_OPTION
@out_option(
    "reports", "Folder the report is written into (replaced whole when the render succeeds)."
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    envvar="RUNREPORT_SINCE",
    help="Start of the 'what happened' window (a date). Default: the last --days days.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    default=7,
    show_default=True,
    envvar="RUNREPORT_DAYS",
    help="Length of the 'what happened' window.",
)
@click.option(
    "--templates",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="RUNREPORT_TEMPLATES",
    help="A folder with your own copies of the templates, to restyle the report.",
)
def report(db: Path, out: Path, since: datetime | None, days: int, templates: Path | None) -> None:
    """HTML report, email HTML, plain text and one CSV per view into a folder.

    \b
    Example:
      runreport report --db runs.duckdb --out reports --days 7
    """
    from etl.report.render import render_report

    result = render_report(
        db, out, since=since.date() if since else None, days=days, templates=templates
    )
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
    from etl.demo.run import run_demo

    click.echo(run_demo(folder))


@cli.command()
@CONFIG_OPTION
@TRACKING_URI_OPTION
@db_option(None, "Overrides [warehouse] path (default runs.duckdb).")
@out_option(None, "Overrides [report] out (default reports); reports go into OUT/YYYY-MM-DD.")
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
    help="Render the report but send nothing.",
)
def run(
    config_file: Path | None,
    tracking_uri: str | None,
    db: Path | None,
    out: Path | None,
    full: bool,
    no_email: bool,
) -> None:
    """The cron entry point: extract (incremental), report, optionally email.

    \b
    Exit codes: 0 ok, 1 the job failed, 2 bad configuration, 75 another run holds the lock.
    \b
    Example:
      runreport run --config /etc/runreport.toml
    """
    from etl.config import load_config
    from etl.job import run_job

    config = load_config(config_file)
    config.tracking_uri = tracking_uri or config.tracking_uri
    config.db = db or config.db
    config.out = out or config.out
    folder = run_job(config, force_full=full, send_email=not no_email)
    click.echo(f"report: {folder / 'index.html'}")


@cli.command()
@DB_OPTION
@out_option("reports", "Folder the report is rendered into before it is sent.")
@click.option(
    "--to",
    "to_addrs",
    multiple=True,
    metavar="ADDR",
    help="Recipient; repeat for more. Default: RUNREPORT_MAIL_TO (comma-separated).",
)
@click.option("--from", "from_addr", metavar="ADDR", help="Sender. Env: RUNREPORT_MAIL_FROM.")
@click.option("--smtp-host", help="SMTP server. Env: RUNREPORT_SMTP_HOST. Default: localhost.")
@click.option(
    "--smtp-port",
    type=click.IntRange(1, 65535),
    help="Env: RUNREPORT_SMTP_PORT. Default: 25; 587 with --starttls; 465 with --ssl.",
)
@click.option(
    "--smtp-user",
    help="Env: RUNREPORT_SMTP_USER. The password comes only from RUNREPORT_SMTP_PASSWORD.",
)
@click.option("--starttls", "security", flag_value="starttls", help="Upgrade to TLS with STARTTLS.")
@click.option("--ssl", "security", flag_value="ssl", help="TLS from the first byte (port 465).")
@click.option(
    "--subject",
    metavar="TEMPLATE",
    help="Subject with {fields} of report.json (date, new_runs, failed, running, zombies, "
    "runs, experiments, window_days, ...). Env: RUNREPORT_MAIL_SUBJECT. "
    "Default: 'MLflow runs {date}: {new_runs} new, {failed} failed'.",
)
@click.option(
    "--attach-csv",
    is_flag=True,
    envvar="RUNREPORT_ATTACH_CSV",
    show_envvar=True,
    help="Attach one CSV file per view.",
)
@click.option(
    "--dry-run",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.eml",
    envvar="RUNREPORT_DRY_RUN",
    show_envvar=True,
    help="Write the message to FILE.eml (opens in a mail client) instead of sending it.",
)
def email(
    db: Path,
    out: Path,
    to_addrs: tuple[str, ...],
    from_addr: str | None,
    smtp_host: str | None,
    smtp_port: int | None,
    smtp_user: str | None,
    security: str | None,
    subject: str | None,
    attach_csv: bool,
    dry_run: Path | None,
) -> None:
    """Render the report and send it: text, HTML with inline charts, CSVs on request.

    \b
    The SMTP password is read from RUNREPORT_SMTP_PASSWORD, never from an option.
    Example:
      RUNREPORT_SMTP_PASSWORD=... runreport email --to ml-team@example.com \\
        --smtp-host smtp.example.com --starttls --smtp-user reports
    """
    from etl.mail import MailSettings, email_report, required_recipients
    from etl.report.render import render_report

    settings = MailSettings.from_env(
        to_addrs=to_addrs,
        from_addr=from_addr,
        host=smtp_host,
        port=smtp_port,
        user=smtp_user,
        security=security,
        subject_template=subject,
    )
    required_recipients(settings)  # a missing --to fails before the render
    render_report(db, out)
    click.echo(email_report(out, settings, attach_csv, dry_run))


def _extract_mode(given: str) -> str:
    """--full/--incremental, else RUNREPORT_EXTRACT_MODE, else full (two flags sharing one
    value cannot read one variable through click)."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source("mode") is not click.core.ParameterSource.DEFAULT:
        return given
    mode = os.environ.get("RUNREPORT_EXTRACT_MODE", given).strip().lower()
    if mode not in ("full", "incremental"):
        from etl.errors import ConfigError

        raise ConfigError(
            f"RUNREPORT_EXTRACT_MODE is {mode!r}", 'Set it to "full" or "incremental", or unset it'
        )
    return mode


def main() -> None:
    cli(prog_name="runreport")
