"""Where the view SQL and the templates live: inside an installed wheel, or in the checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"runreport is installed without its {name}/ folder")


def sql_dir() -> Path:
    return _find("sql")


def templates_dir() -> Path:
    return _find("templates")
