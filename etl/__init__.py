"""runreport: MLflow run history as a DuckDB warehouse, and reports built from it."""

__version__ = "0.1.0"
