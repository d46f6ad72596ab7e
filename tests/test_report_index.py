"""Issue 22, report history: reports/index.html lists every retained dated report, newest
first, with its date, headline figures and changes, linking to each; rewritten by each
`run`; self-contained; names (user input) escaped."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from etl.config import resolve
from etl.job import render_dated
from etl.report.render import report_clock
from tests.conftest import build_rich_store, log_run, run_cli
from tests.test_job import today, write_config

NASTY = '<script>alert("x")</script> & <b>bold</b>'


class IndexPage(HTMLParser):
    """What a reader of index.html sees: each listed report's date, link and change lines,
    and every tag that could make a request."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, Any]] = []
        self.requesting: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("script", "link", "img", "iframe", "object", "embed") or "src" in attributes:
            self.requesting.append(tag)
        if tag == "li" and attributes.get("class") == "report":
            self.reports.append({"date": attributes["data-date"], "changes": [], "figures": {}})
        elif tag == "a" and attributes.get("class") == "day":
            self.reports[-1]["link"] = attributes["href"]
        elif tag == "li" and self.reports:
            self._in = "change"
        elif tag == "span" and attributes.get("data-figure"):
            self._in = f"figure:{attributes['data-figure']}"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("li", "span"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "change":
            self.reports[-1]["changes"].append(data)
        elif self._in and self._in.startswith("figure:"):
            self.reports[-1]["figures"][self._in[7:]] = data.split()[0]


def parse_index(path: Path) -> IndexPage:
    page = IndexPage()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_run_rewrites_the_index_of_retained_reports(tmp_path: Path) -> None:
    store = build_rich_store(tmp_path / "store")
    config_path = write_config(tmp_path, store.uri)
    config = resolve(config_path)
    out = tmp_path / "reports"
    old = out / "2020-01-01"  # older than the retention: pruned, then not listed
    old.mkdir(parents=True)
    (old / "report.json").write_text('{"date": "2020-01-01"}')
    (out / "notes").mkdir()  # not a report

    now = datetime.now(timezone.utc)
    assert run_cli("extract", "--config", str(config_path)).exit_code == 0
    render_dated(config, clock=report_clock(config, now - timedelta(days=2)))
    client = MlflowClient(store.uri)
    log_run(client, store.experiment_ids["beta"], NASTY, status="FAILED")
    assert run_cli("extract", "--config", str(config_path)).exit_code == 0
    render_dated(config, clock=report_clock(config, now - timedelta(days=1)))

    result = run_cli("run", "--config", str(config_path))
    assert result.exit_code == 0, result.output
    assert "step index done in" in result.output and "reports=3" in result.output

    index = out / "index.html"
    page = parse_index(index)
    days = [(date.fromisoformat(today()) - timedelta(days=n)).isoformat() for n in range(3)]
    assert [r["date"] for r in page.reports] == days, "newest first; the pruned one gone"
    assert [r["link"] for r in page.reports] == [f"{day}/index.html" for day in days]
    for entry in page.reports:
        assert (out / entry["link"]).is_file()
        figures = json.loads((out / entry["date"] / "report.json").read_text())
        for name in ("new_runs", "failed", "running", "zombies", "runs"):
            assert entry["figures"][name] == f"{figures[name]:,}", (entry["date"], name)
    first_day, second_day, run_day = page.reports[2], page.reports[1], page.reports[0]
    assert first_day["changes"] == []
    assert "First report: nothing to compare with." in index.read_text()
    assert second_day["changes"] == [f"1 new failed run: {NASTY}"]
    assert run_day["changes"] == []  # nothing happened since the day before
    raw = index.read_text(encoding="utf-8")
    assert "<script>" not in raw and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in raw
    assert page.requesting == [], "self-contained: nothing the page would fetch"
    assert "http://" not in raw and "https://" not in raw

    # the next run rewrites it: a report folder removed by hand is no longer listed
    for leftover in (out / days[1]).iterdir():
        leftover.unlink()
    (out / days[1]).rmdir()
    assert run_cli("run", "--config", str(config_path)).exit_code == 0
    assert [r["date"] for r in parse_index(index).reports] == [days[0], days[2]]


def test_the_index_opens_in_chromium_without_a_request(tmp_path: Path, chromium: Any) -> None:
    store = build_rich_store(tmp_path / "store")
    config_path = write_config(tmp_path, store.uri)
    assert run_cli("run", "--config", str(config_path)).exit_code == 0
    index = tmp_path / "reports" / "index.html"
    page = chromium.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(index.as_uri())
    assert requests == [index.as_uri()]
    assert page.locator("li.report").count() == 1
    assert page.locator("a.day").inner_text() == today()
    page.locator("a.day").click()
    page.wait_for_load_state()
    assert page.url == (tmp_path / "reports" / today() / "index.html").as_uri()
    page.close()
