"""Reading MLflow: pages of runs and experiments as plain columnar records. Imports no DuckDB."""
