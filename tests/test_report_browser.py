"""The report in a real headless Chromium: it opens from disk with no network and no
console errors, its charts load, hostile run names run nothing, and email.html reads at
600 px wide. Without Chromium these tests fail under CI=true and skip elsewhere."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from etl.report.render import ReportResult, render_report
from tests.test_report import SCRIPT_NAME, build_team_store, extract

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
    return render_report(db, folder / "report", now=now)


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
        shot = tmp_path / "index.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes().startswith(b"\x89PNG")
    finally:
        page.context.close()


def test_email_reads_at_600_px(report: ReportResult, browser: Any, tmp_path: Path) -> None:
    # a mail client resolves cid: to the attached PNG; a browser reads the file beside it
    html = report.email_html.read_text(encoding="utf-8")
    cids = re.findall(r'src="cid:([^"]+)"', html)
    assert cids == ["runs_per_day.png", "runs_per_estimator.png"]
    preview = report.out / "email-preview.html"
    preview.write_text(html.replace('src="cid:', 'src="'), encoding="utf-8")
    try:
        page, log = open_page(browser, preview, 600)
        try:
            assert log.console_errors == [] and log.page_errors == [] and log.blocked == []
            assert log.dialogs == []
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0
            images = image_sizes(page)
            assert len(images) == 2
            for image in images:
                assert image["complete"] and image["w"] > 0, image
                assert 400 < image["shown"] <= 600, image
            shot = tmp_path / "email.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(b"\x89PNG")
        finally:
            page.context.close()
    finally:
        preview.unlink()
