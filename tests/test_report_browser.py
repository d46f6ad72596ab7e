"""The report in a real headless Chromium: it opens from disk with no network and no
console errors, its charts load, hostile run names run nothing, and email.html reads at
600 and 375 px wide (a phone) with no horizontal scrolling. The report is the second of
two around a change (a new best run and a failure), with links to an MLflow UI, so the
changes section is on the page. Without Chromium these tests fail under CI=true and skip
elsewhere."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from etl.report.render import ReportResult, render_report
from tests.conftest import log_run, run_cli
from tests.team_stores import (
    PYCARET_ACCURACY,
    build_autolog_store,
    build_pycaret_store,
    log_pycaret_session,
)
from tests.test_report import SCRIPT_NAME, build_team_store, extract

UI = "https://mlflow.example.com"
# copies for the lead to look at (the tests' own copies are under their tmp dirs)
SHOWCASE = {375: Path("/tmp/report-375.png"), 1280: Path("/tmp/report-index.png")}
# the first screens of the reports on a PyCaret-shaped and an autolog-shaped store
SCREENSHOTS = Path(tempfile.gettempdir()) / "runreport-screenshots"
FIRST_SCREEN = {1280: 900, 375: 812}  # viewport heights: a laptop, a phone
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
# the metric keys (td.key) whose text takes more than one line
KEY_LINES = """cells => cells.filter(cell => {
    if (!cell.firstChild) return false;
    const range = document.createRange();
    range.selectNodeContents(cell.firstChild);
    return new Set([...range.getClientRects()].map(rect => rect.top)).size > 1;
}).map(cell => cell.textContent)"""

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
    # a child of the grid search: its root run logs no r2, so the leaderboard ranks them all
    log_run(
        client, search, "a-much-longer-run-name-without-any-spaces-at-all",
        metrics={"r2": 0.97}, parent=facts.run_ids["grid"],
    )  # fmt: skip
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
    sizes: list[dict[str, Any]] = page.eval_on_selector_all(
        "img",
        "imgs => imgs.map(i => ({alt: i.alt, complete: i.complete, "
        "w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}))",
    )
    return sizes


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
        # runs by status is a table alone: a chart under it would say the same again
        assert [i["alt"] for i in images] == ["Runs per day, by status", "Runs per estimator"]
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


@pytest.mark.parametrize("width", [375, 600])
def test_email_fits_a_phone_with_images_blocked(
    report: ReportResult, browser: Any, tmp_path: Path, width: int
) -> None:
    """Many mail clients start with images blocked: the cid: images do not load, and the
    charts must not hold the page wider than the phone until they do."""
    preview = tmp_path / "email.html"
    preview.write_text(report.email_html.read_text(encoding="utf-8"), encoding="utf-8")
    page, log = open_page(browser, preview, width)
    try:
        assert log.page_errors == [] and log.dialogs == []
        images = image_sizes(page)
        assert len(images) == 2 and all(image["w"] == 0 for image in images)  # not loaded
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        widest = page.evaluate(
            "Math.max(...[...document.querySelectorAll('body *')]"
            ".map(e => e.getBoundingClientRect().right))"
        )
        assert widest <= width
        shot = tmp_path / f"email-{width}-no-images.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes().startswith(b"\x89PNG")
    finally:
        page.context.close()


def cli_ok(*args: str) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module", params=["pycaret", "autolog"])
def team_report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The second report of a team's store, rendered with its config as `runreport report`
    renders it: PyCaret after a fourth session (a new best, a parent newly left open; its
    session runs count as left open at once), autolog on a quiet day."""
    folder = tmp_path_factory.mktemp(request.param)
    build = build_pycaret_store if request.param == "pycaret" else build_autolog_store
    store = build(folder / "store")
    config = folder / "runreport.toml"
    config.write_text(
        f'[tracking]\nuri = "{store.uri}"\n[warehouse]\npath = "runs.duckdb"\n'
        f'[report]\nmlflow_ui_url = "{UI}"\npublic_url = "https://reports.example.com/ml"\n'
        + (
            'zombie_after_hours = 0\nestimator_from = "run_name"\n'
            if build is build_pycaret_store
            else ""
        ),
        encoding="utf-8",
    )
    out = folder / "report"
    cli_ok("extract", "--config", str(config))
    cli_ok("report", "--config", str(config), "--out", str(out))
    if request.param == "pycaret":
        better = {name: values[125] + 0.02 for name, values in PYCARET_ACCURACY.items()}
        log_pycaret_session(MlflowClient(store.uri), store, 126, better)
        cli_ok("extract", "--incremental", "--config", str(config))
    cli_ok("report", "--config", str(config), "--out", str(out))
    return request.param, out


def test_screenshots_of_the_first_screen_on_team_stores(
    team_report: tuple[str, Path], browser: Any
) -> None:
    """index.html at 1280 px and email.html at 375 px: what changed and the leaderboard are
    on the first screen. The PNGs go to SCREENSHOTS (printed), for a person to look at."""
    name, out = team_report
    SCREENSHOTS.mkdir(exist_ok=True)
    html = (out / "email.html").read_text(encoding="utf-8")
    preview = out / "email-preview.html"
    preview.write_text(html.replace('src="cid:', 'src="'), encoding="utf-8")
    try:
        for page_file, width, shown in (
            (out / "index.html", 1280, "index"), (preview, 375, "email")
        ):  # fmt: skip
            page, log = open_page(browser, page_file, width)
            try:
                assert log.console_errors == [] and log.page_errors == [] and log.blocked == []
                assert page.evaluate(OVERFLOW) <= 0
                for ident in ("changes", "leaderboard"):
                    top = page.eval_on_selector(f"#{ident}", "e => e.getBoundingClientRect().top")
                    assert top < FIRST_SCREEN[width], (name, shown, ident, top)
                if shown == "index":  # a metric key is never broken over two lines
                    assert page.eval_on_selector_all("td.key", KEY_LINES) == [], name
                page.set_viewport_size({"width": width, "height": FIRST_SCREEN[width]})
                page.screenshot(path=str(SCREENSHOTS / f"{name}-{shown}-{width}.png"))
                page.screenshot(
                    path=str(SCREENSHOTS / f"{name}-{shown}-{width}-full.png"), full_page=True
                )
            finally:
                page.context.close()
    finally:
        preview.unlink()
    print(f"screenshots of the {name} store's report: {SCREENSHOTS}")
