"""The report's GenAI and Prompts sections, and what changed in them (issue 24), on a
store made through MLflow's own GenAI APIs (tests/genai_store.py): what a GenAI lead reads
first — what it cost, who used it, whether quality held, which prompt is in production."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import mlflow
import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli
from tests.genai_store import JUDGE, PROMPT, GenaiStore, build_genai_store, log_issues
from tests.test_entities import fluent_api
from tests.test_report import Node, own_text, parse, table_rows


def extract(store: GenaiStore, db: Path) -> None:
    result = run_cli("extract", "--tracking-uri", store.uri, "--db", str(db))
    assert result.exit_code == 0, result.output


def report(db: Path, out: Path) -> dict:
    result = run_cli("report", "--db", str(db), "--out", str(out))
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def texts(page: Node, table: str) -> list[list[str]]:
    return [[own_text(cell) for cell in row] for row in table_rows(page, table)]


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def genai(tmp_path_factory: pytest.TempPathFactory) -> GenaiStore:
    store = build_genai_store(tmp_path_factory.mktemp("genai-report"))
    log_issues(store)
    return store


def test_genai_section_says_cost_usage_quality_and_issues(
    genai: GenaiStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    extract(genai, db)
    figures = report(db, tmp_path / "report")
    [(cost,)] = query(db, "select sum(total_cost) from traces")
    assert figures["traces"]["cost_usd"] == pytest.approx(cost)
    assert figures["traces"]["previous_cost_usd"] is None
    assert figures["traces"]["open_issues"] == 2  # the resolved one is done with

    page = parse(tmp_path / "report" / "index.html")
    usage = query(
        db,
        "select model_name, sum(calls) from trace_model_usage group by all order by 2 desc, 1",
    )
    by_model = texts(page, "genai_cost_by_model")
    assert sorted((row[0], int(row[2])) for row in by_model) == sorted(usage)
    assert f"{cost:.4g} USD" in own_text(page.find_id("genai-cost"))
    users = {row[0] for row in texts(page, "genai_usage_per_user")}
    assert users == {"alice", "bob", "carol"}
    names = {row[0] for row in texts(page, "traces_by_name")}
    assert names == {"chat", "summarize"}
    rates = {row[1]: row[4] for row in texts(page, "assessment_pass_rates")}
    assert rates["correct"] == "67 %"  # the human overrode the judge: valid feedback only
    issues = texts(page, "open_issues")
    assert [row[0] for row in issues] == ["wrong refund policy new", "tone new"]
    assert issues[0][1] == "high"


def test_prompts_section_and_what_changed(genai: GenaiStore, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    extract(genai, db)
    out = tmp_path / "report"
    first = report(db, out)
    versions = query(db, "select count(*) from prompt_versions")[0][0]
    assert first["prompts"]["versions_registered"] == versions
    page = parse(out / "index.html")
    assert len(texts(page, "prompt_versions")) == versions

    # the prompt's production alias moves, and the judge now fails two answers
    with fluent_api(genai.uri, genai.experiment_id):
        mlflow.genai.set_prompt_alias(PROMPT, "production", 2)
        for label in ("alice_2", "served"):
            mlflow.log_feedback(
                trace_id=genai.traces[label], name="correct", value=False, source=JUDGE
            )
    MlflowClient(genai.uri)  # the store is closed again by fluent_api
    extract(genai, db)
    second = report(db, out)
    moves = second["changes"]["alias_moves"]
    assert [(m["kind"], m["name"], m["alias"], m["change"]) for m in moves] == [
        ("prompt", PROMPT, "production", "moved")
    ]
    assert (moves[0]["previous_version"], moves[0]["version"]) == ("1", "2")
    [drop] = second["changes"]["pass_rate_drops"]
    assert drop["assessment_name"] == "correct"
    assert drop["previous_pass_rate"] == pytest.approx(2 / 3)
    assert drop["pass_rate"] == pytest.approx(2 / 5)
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    assert f"- ALIAS production of prompt {PROMPT}: moved from version 1 to version 2" in summary
    assert "- PASS RATE FELL in support bot: correct 67 % -> 40 % (5 judged)" in summary
    page = parse(out / "index.html")
    assert [row[1:5] for row in texts(page, "changed_aliases")] == [
        ["prompt", PROMPT, "production", "moved"]
    ]
    assert texts(page, "pass_rate_drops")[0][1:4] == ["correct", "67 %", "40 %"]


def test_the_summary_carries_cost_issues_and_prompts(genai: GenaiStore, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    extract(genai, db)
    figures = report(db, tmp_path / "report")
    summary = (tmp_path / "report" / "summary.txt").read_text(encoding="utf-8")
    assert f"Cost {figures['traces']['cost_usd']:.4g} USD." in summary
    assert "2 open issues MLflow detected." in summary
    assert f"- REGISTERED {PROMPT} version 2" in summary
