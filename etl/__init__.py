"""runreport: MLflow run history as a DuckDB warehouse, and reports built from it.

The Python API (etl/api.py) does what the command line does:

    import etl
    etl.extract_warehouse("sqlite:///mlflow.db", "runs.duckdb")
    etl.render_report("runs.duckdb", "reports")
    con = etl.connect("runs.duckdb")  # read-only DuckDB connection
"""

from importlib.metadata import PackageNotFoundError, version

from etl.api import connect, extract_warehouse, render_report

try:
    __version__ = version("runreport")  # the one version: pyproject.toml's
except PackageNotFoundError:  # pragma: no cover - run from a checkout without installing
    __version__ = "0+unknown"

__all__ = ["__version__", "connect", "extract_warehouse", "render_report"]
