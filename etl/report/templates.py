"""The Jinja2 templates of the report: loading, rendering, and errors that name the file.

A `templates` folder of your own is searched first, then the default templates, so a copy
of just the file you restyle is enough. Autoescape is on for everything but `.txt.j2`.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2

from etl.errors import ConfigError
from etl.report.format import NameCutter, filters
from etl.report.links import Links
from etl.report.model import EMAIL_HTML, INDEX_HTML, SUMMARY_TXT, Clock
from etl.resources import templates_dir

# each file of the report folder rendered from a template -> its template
PAGES = {name: f"{name}.j2" for name in (INDEX_HTML, EMAIL_HTML, SUMMARY_TXT)}


def _autoescape(name: str | None) -> bool:
    return name is None or not name.endswith(".txt.j2")


class Templates:
    def __init__(self, folder: Path | None = None) -> None:
        self.folders = [templates_dir()]
        if folder is not None:
            if not folder.is_dir():
                raise ConfigError(
                    f"templates folder {folder} not found",
                    "Point --templates at a folder holding your copies of the templates",
                )
            self.folders.insert(0, folder)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(f) for f in self.folders]),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters.update(filters(Clock("UTC"), Links()))
        for page in PAGES.values():
            self._load(page)

    def _load(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateError as exc:
            raise self._error(exc, name) from None

    def render(
        self,
        name: str,
        context: dict[str, Any],
        clock: Clock,
        links: Links | None = None,
        names: NameCutter | None = None,
    ) -> str:
        """Render the page `name`; `names` cuts the experiment names (all of them known,
        so no two cut alike)."""
        self.env.filters.update(filters(clock, links or Links(), names))
        template = self._load(name)
        try:
            return template.render(**context)
        except jinja2.TemplateError as exc:
            raise self._error(exc, name) from None

    def _error(self, exc: jinja2.TemplateError, page: str) -> ConfigError:
        hint = "Fix the template, or drop --templates to use the defaults"
        where = ", ".join(str(f) for f in self.folders)
        if isinstance(exc, jinja2.TemplateNotFound):
            place = _template_frame(exc.__traceback__)
            named_by = f" (named at {place})" if place else ""
            return ConfigError(f"template {exc.name} not found in {where}{named_by}", hint)
        if isinstance(exc, jinja2.TemplateSyntaxError):
            return ConfigError(
                f"template {exc.filename or exc.name or page}, line {exc.lineno}: {exc.message}",
                hint,
            )
        place = _template_frame(exc.__traceback__) or page
        return ConfigError(f"template {place}: {exc.message or exc}", hint)


def _template_frame(tb: TracebackType | None) -> str | None:
    """The innermost template line of a traceback (Jinja rewrites its frames to them)."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = f"{filename}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return found
