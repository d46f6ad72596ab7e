"""`runreport demo`: seed a local store, extract it, render the report, say what to open."""

from __future__ import annotations

import shlex
from pathlib import Path

from etl.demo.seed import seed_demo_runs
from etl.refresh import run_extract
from etl.report.render import render_report


def run_demo(folder: Path) -> str:
    """Run the whole pipeline on DIR/mlflow.db; return the lines a person reads next."""
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    store_uri = f"sqlite:///{folder / 'mlflow.db'}"
    db = folder / "runs.duckdb"
    seeded = seed_demo_runs(store_uri)
    extracted = run_extract(store_uri, db)
    report = render_report(db, folder / "reports")
    query = "select estimator_name, runs, failed from runs_per_estimator"
    return "\n".join(
        [
            seeded.describe(),
            "",
            f"Warehouse: {db} ({extracted.runs} runs, {extracted.experiments} experiments)",
            f"Report:    {report.index_html}",
            f"Email:     {report.email_html}",
            "",
            "Next, try:",
            f"  runreport sql --db {shlex.quote(str(db))} {shlex.quote(query)}",
            f"  open {shlex.quote(str(report.index_html))}",
        ]
    )
