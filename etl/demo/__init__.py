"""The demo: seeded MLflow runs, extracted and reported in one command."""
