"""The DuckDB warehouse: building it, opening it, its views, its lock. Imports no MLflow."""
