"""Rendering the report (HTML, email HTML, text, CSV, report.json) from the warehouse."""
