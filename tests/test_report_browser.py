"""The report in a real headless Chromium: it opens from disk with no network and no
console errors, its charts load, hostile run names run nothing, and email.html reads at
600 and 375 px wide (a phone) with no horizontal scrolling. The report is the second of
two around a change (a new best run and a failure), with links to an MLflow UI, so the
changes section is on the page. Without Chromium these tests fail under CI=true and skip
elsewhere."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from etl.report.render import ReportResult, render_report
from tests.conftest import log_run, run_cli
from tests.test_report import SCRIPT_NAME, build_team_store, extract

UI = "https://mlflow.example.com"
# copies for the lead to look at (the tests' own copies are under their tmp dirs)
SHOWCASE = {375: Path("/tmp/report-375.png"), 1280: Path("/tmp/report-index.png")}

pytestmark = pytest.mark.browser


@dataclass
class PageLog:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    folder = tmp_path_factory.mktemp("browser")
    now = datetime.now(timezone.utc)
    facts = build_team_store(folder / "store", int(now.timestamp() * 1000))
    db = folder / "runs.duckdb"
    extract(facts.uri, db)
    render_report(db, folder / "report", now=now, ui_url=UI)
    client = MlflowClient(facts.uri)
    search = facts.experiment_ids["search"]
    log_run(
        client, search, "a-much-longer-run-name-without-any-spaces-at-all", metrics={"r2": 0.97}
    )
    log_run(client, facts.experiment_ids["hostile"], "crashed-overnight", status="FAILED")
    result = run_cli("extract", "--incremental", "--tracking-uri", facts.uri, "--db", str(db))
    assert result.exit_code == 0, result.output
    return render_report(db, folder / "report", ui_url=UI)


@pytest.fixture(scope="module")
def browser(chromium: Any) -> Any:
    return chromium


def open_page(browser: Any, path: Path, width: int) -> tuple[Any, PageLog]:
    """Open a file with every request that is not file: or data: blocked and recorded."""
    log = PageLog()
    context = browser.new_context(viewport={"width": width, "height": 900})

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(("file:", "data:")):
            request_route.continue_()
        else:
            log.blocked.append(url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))

    def on_dialog(dialog: Any) -> None:
        log.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.as_uri(), wait_until="load")
    return page, log


def image_sizes(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        "img",
        "imgs => imgs.map(i => ({alt: i.alt, complete: i.complete, "
        "w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}))",
    )


def test_index_opens_from_disk_with_charts_and_no_errors(
    report: ReportResult, browser: Any, tmp_path: Path
) -> None:
    page, log = open_page(browser, report.index_html, 1280)
    try:
        assert log.console_errors == []
        assert log.page_errors == []
        assert log.blocked == []
        assert log.dialogs == []  # the run named <script>alert('x')</script> ran nothing
        images = image_sizes(page)
        assert [i["alt"] for i in images] == [
            "Runs per day, by status",
            "Runs by status",
            "Runs per estimator",
        ]
        for image in images:
            assert image["complete"] and image["w"] > 0 and image["h"] > 0, image
            assert image["shown"] > 200, image
        assert SCRIPT_NAME in page.inner_text("#recent_runs")
        assert page.eval_on_selector_all("script", "s => s.length") == 0
        # headline figures as a reader sees them
        new_runs = page.inner_text("[data-figure=new_runs] .value")
        assert new_runs == f"{report.figures['new_runs']:,}"
        # numbers are right-aligned
        align = page.eval_on_selector(
            "#runs_per_estimator td.num", "td => getComputedStyle(td).textAlign"
        )
        assert align == "right"
        assert page.inner_text("#new_best").count("a-much-longer-run-name") == 1
        shot = tmp_path / "index.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes().startswith(b"\x89PNG")
        shutil.copy(shot, SHOWCASE[1280])
    finally:
        page.context.close()


@pytest.mark.parametrize("width", [600, 375])
def test_email_reads_without_horizontal_scrolling(
    report: ReportResult, browser: Any, tmp_path: Path, width: int
) -> None:
    # a mail client resolves cid: to the attached PNG; a browser reads the file beside it
    html = report.email_html.read_text(encoding="utf-8")
    cids = re.findall(r'src="cid:([^"]+)"', html)
    assert cids == ["runs_per_day.png", "runs_per_estimator.png"]
    preview = report.out / f"email-preview-{width}.html"
    preview.write_text(html.replace('src="cid:', 'src="'), encoding="utf-8")
    try:
        page, log = open_page(browser, preview, width)
        try:
            assert log.console_errors == [] and log.page_errors == [] and log.blocked == []
            assert log.dialogs == []
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0
            # nothing sticks out of the page either (a cell wider than its table)
            widest = page.evaluate(
                "Math.max(...[...document.querySelectorAll('body *')]"
                ".map(e => e.getBoundingClientRect().right))"
            )
            assert widest <= width
            images = image_sizes(page)
            assert len(images) == 2
            for image in images:
                assert image["complete"] and image["w"] > 0, image
                assert width * 0.7 < image["shown"] <= width, image
            assert "What changed" in page.inner_text("#changes")
            shot = tmp_path / f"email-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(b"\x89PNG")
            if width in SHOWCASE:
                shutil.copy(shot, SHOWCASE[width])
        finally:
            page.context.close()
    finally:
        preview.unlink()
