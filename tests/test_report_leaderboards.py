"""Which runs compete (issue 21): leaderboards and nested searches on stores shaped like
real teams' (tests/team_stores.py), extracted and reported by the CLI.

Under sklearn autolog the top-level runs compete on the `accuracy` they log while each
GridSearchCV's children compete in their search on `mean_test_score`; PyCaret's models,
nested under sessions that log no metric, compete on Accuracy. Runs differing only by a
seed are one configuration; a sequence of reports on the PyCaret store tells a new best
within noise, one that is not, and a best deleted or lowered."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient

from etl.report.changes import param_changes
from etl.warehouse.settings import ViewSettings, apply_settings
from tests.conftest import log_run, new_store, run_cli
from tests.team_stores import (
    AUTOLOG_EXPERIMENT,
    PYCARET_EXPERIMENT,
    TeamStore,
    build_autolog_store,
    build_pycaret_store,
    log_pycaret_model,
    log_pycaret_session,
)
from tests.test_report import parse, table_rows

UI = "http://mlflow.example.com:5000"


def cli_ok(*args: str) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output


def extract(uri: str, db: Path) -> None:
    cli_ok("extract", "--full", "--tracking-uri", uri, "--db", str(db))


def query(db: Path, sql: str, settings: ViewSettings | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        if settings is not None:
            apply_settings(con, settings)
        return con.execute(sql).fetchall()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class Built:
    store: TeamStore
    db: Path


@pytest.fixture(scope="module")
def autolog(tmp_path_factory: pytest.TempPathFactory) -> Built:
    folder = tmp_path_factory.mktemp("autolog")
    store = build_autolog_store(folder / "store")
    db = folder / "runs.duckdb"
    extract(store.uri, db)
    return Built(store, db)


def best_of(runs: dict[str, float], greater: bool = True) -> tuple[str, float, int]:
    """The leaderboard's rule over runs started together: the best value, ties to the
    smallest run id; with how many runs tie."""
    best = max(runs.values()) if greater else min(runs.values())
    tied = sorted(run_id for run_id, value in runs.items() if value == best)
    return tied[0], best, len(tied)


def child_values(store: TeamStore, search: str, key: str) -> dict[str, float]:
    return {run_id: metrics[key] for run_id, metrics in store.children[search].items()}


# --- the autolog store: top-level runs and nested searches ----------------------------------


def test_the_leaderboard_ranks_top_level_runs_on_the_accuracy_they_log(autolog: Built) -> None:
    ids, values = autolog.store.run_ids, autolog.store.values
    assert values["grid-svc"] == pytest.approx(74 / 75)
    assert query(
        autolog.db,
        "select experiment_name, metric_key, greater_is_better, source, leaderboard_runs, "
        "run_id, run_name, value, runs_compared, tied_runs from leaderboard",
    ) == [
        (
            AUTOLOG_EXPERIMENT, "accuracy", True, "rule", "root", ids["grid-svc"], "grid-svc",
            values["grid-svc"], 7, 1,
        )
    ]  # fmt: skip
    # every top-level run competes, no child does
    ranked = query(autolog.db, "select run_name, value from ranked_runs order by rank")
    assert ranked == sorted(
        ((label, value) for label, value in values.items()), key=lambda item: -item[1]
    )


def test_each_nested_search_ranks_its_children_on_mean_test_score(autolog: Built) -> None:
    store = autolog.store
    assert query(
        autolog.db,
        "select child_metric_key, child_greater_is_better, child_source "
        "from experiment_primary_metric",
    ) == [("mean_test_score", True, "rule")]
    searches = query(
        autolog.db,
        "select parent_run_name, child_count, metric_key, best_child_run_id, best_child_value "
        "from nested_searches order by parent_run_name",
    )
    expected = []
    for search in ("grid-svc", "grid-tree"):
        best, value, _ = best_of(child_values(store, search, "mean_test_score"))
        expected.append((search, 4, "mean_test_score", best, value))
    assert searches == expected
    assert [row[4] for row in searches] == pytest.approx([0.93385, 0.98684], abs=1e-5)


def test_children_metric_config_picks_the_childs_key(autolog: Built) -> None:
    settings = ViewSettings(
        child_metrics={"iris-*": "std_test_score"}, metric_directions={"std_test_score": False}
    )
    searches = query(
        autolog.db,
        "select parent_run_name, metric_key, best_child_run_id, best_child_value "
        "from nested_searches order by parent_run_name",
        settings,
    )
    expected = []
    for search in ("grid-svc", "grid-tree"):
        best, value, _ = best_of(child_values(autolog.store, search, "std_test_score"), False)
        expected.append((search, "std_test_score", best, value))
    assert searches == expected
    # pinning the leaderboard's accuracy no longer empties the searches: children lack it
    pinned = query(
        autolog.db,
        "select metric_key, child_metric_key, child_source from experiment_primary_metric",
        ViewSettings(primary_metrics={AUTOLOG_EXPERIMENT: "accuracy"}),
    )
    assert pinned == [("accuracy", "mean_test_score", "rule")]


@pytest.mark.parametrize("runs", ["all", "children"])
def test_leaderboard_runs_all_or_children_ranks_the_children_too(autolog: Built, runs: str) -> None:
    """With every run (8 children against 7 top-level runs) the naming rule picks the
    children's mean_test_score, as before issue 21; with the children, their metric."""
    children = {
        run_id: metrics["mean_test_score"]
        for search in autolog.store.children.values()
        for run_id, metrics in search.items()
    }
    best = max(children.values())
    tied = {run_id for run_id, value in children.items() if value == best}
    client = MlflowClient(autolog.store.uri)
    first = min(tied, key=lambda run_id: (client.get_run(run_id).info.start_time, run_id))
    assert query(
        autolog.db,
        "select metric_key, leaderboard_runs, run_id, value, runs_compared, tied_runs "
        "from leaderboard",
        ViewSettings(leaderboard_runs=runs),
    ) == [("mean_test_score", runs, first, best, 8, len(tied))]
    assert len(tied) == 2 and best == pytest.approx(0.98684, abs=1e-5)


def test_leaderboard_runs_per_experiment_from_the_config_file(
    autolog: Built, tmp_path: Path
) -> None:
    config = tmp_path / "runreport.toml"
    config.write_text(
        '[report]\nleaderboard_runs = "all"\n'
        '[report.leaderboard_runs_by_experiment]\n"iris-*" = "Children"\n"other" = "root"\n',
        encoding="utf-8",
    )
    out = tmp_path / "report"
    cli_ok("report", "--config", str(config), "--db", str(autolog.db), "--out", str(out))
    [row] = read_csv(out / "leaderboard.csv")
    assert (row["leaderboard_runs"], row["metric_key"], row["runs_compared"]) == (
        "children",
        "mean_test_score",
        "8",
    )
    # the warehouse keeps its own settings: the default ranks the top-level runs again
    assert query(autolog.db, "select leaderboard_runs from leaderboard") == [("root",)]
    bad = tmp_path / "bad.toml"
    bad.write_text('[report.leaderboard_runs_by_experiment]\n"x" = "roots"\n', encoding="utf-8")
    result = run_cli("report", "--config", str(bad), "--db", str(autolog.db), "--out", str(out))
    assert result.exit_code == 2
    assert "leaderboard_runs_by_experiment.x must be 'root' or 'all' or 'children'" in (
        result.output
    )


def test_the_best_logged_model_is_ranked_by_its_own_metric(autolog: Built, tmp_path: Path) -> None:
    """autolog's models carry training_accuracy_score and training_f1_score, not the
    runs' accuracy: the naming rule picks among the models' keys."""
    store = autolog.store
    training = {
        label: MlflowClient(store.uri).get_run(store.run_ids[label]).data.metrics
        for label in store.model_ids
    }
    assert query(
        autolog.db,
        "select metric_key, greater_is_better, model_id, value, models_compared, tied_models, "
        "source from best_logged_model",
    ) == [
        (
            "training_accuracy_score", True, store.model_ids["forest-seed-1"],
            training["forest-seed-1"]["training_accuracy_score"], 3, 1, "models",
        )
    ]  # fmt: skip
    result = run_cli("report", "--db", str(autolog.db), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    [row] = table_rows(parse(tmp_path / "r" / "index.html"), "best_logged_model")
    assert "training_accuracy_score" in " ".join(cell.text() for cell in row)


# --- the naming rule: training keys below held-out ones -------------------------------------


def test_training_keys_rank_below_validation_keys_of_the_same_kind(
    autolog: Built, tmp_path: Path
) -> None:
    kinds = query(
        autolog.db,
        "select metric_key, greater_is_better, is_training, metric_kind "
        "from metric_key_directions where metric_key in "
        "('accuracy', 'training_accuracy_score', 'mean_test_score', 'training_log_loss')",
    )
    assert kinds == [
        ("accuracy", True, False, "accuracy"),
        ("mean_test_score", True, False, "mean"),
        ("training_accuracy_score", True, True, "accuracy"),
        ("training_log_loss", False, True, "log_loss"),
    ]
    uri = new_store(tmp_path / "store")
    client = MlflowClient(uri)
    keras = client.create_experiment("keras-fit")
    ids = [
        log_run(client, keras, "a", metrics={"train_loss": 0.10, "val_loss": 0.50}),
        log_run(client, keras, "b", metrics={"train_loss": 0.20, "val_loss": 0.40}),
        log_run(client, keras, "c", metrics={"train_loss": 0.05}),
    ]
    # no held-out key of its kind: a training key stays in the running
    mixed = client.create_experiment("mixed")
    log_run(client, mixed, "d", metrics={"train_loss": 0.3, "val_accuracy": 0.7})
    log_run(client, mixed, "e", metrics={"train_loss": 0.2})
    db = tmp_path / "runs.duckdb"
    extract(uri, db)
    assert query(
        db,
        "select experiment_name, metric_key, greater_is_better, source from "
        "experiment_primary_metric order by experiment_name",
    ) == [("keras-fit", "val_loss", False, "rule"), ("mixed", "train_loss", False, "rule")]
    assert query(
        db, "select run_id, value from leaderboard where experiment_name = 'keras-fit'"
    ) == [(ids[1], 0.40)]


# --- configurations over seeds ----------------------------------------------------------------


def test_leaderboard_groups_runs_that_differ_only_by_seed(autolog: Built) -> None:
    store = autolog.store
    params = MlflowClient(store.uri).get_run(store.run_ids["forest-seed-0"]).data.params
    configuration = ", ".join(
        f"{key}={value}" for key, value in sorted(params.items()) if key != "random_state"
    )
    seeds = [store.values[f"forest-seed-{seed}"] for seed in range(3)]
    assert sorted(seeds) == pytest.approx([68 / 75, 70 / 75, 73 / 75])
    groups = query(
        autolog.db,
        "select group_rank, best_run_name, params, runs, mean_value, std_value, min_value, "
        "max_value from leaderboard_groups",
    )
    assert [(row[0], row[1], row[3]) for row in groups] == [
        (1, "grid-svc", 1),
        (2, "logreg-C1", 1),
        (3, "forest-seed-2", 3),
        (4, "grid-tree", 1),
        (5, "logreg-C0.01", 1),
    ]
    forest = groups[2]
    assert forest[2] == configuration and "random_state" not in forest[2]
    assert forest[3:] == (
        3,
        pytest.approx(statistics.mean(seeds), rel=1e-12),
        pytest.approx(statistics.stdev(seeds), rel=1e-9),
        min(seeds),
        max(seeds),
    )
    # a group of one run has no spread
    assert {row[5] for row in groups if row[3] == 1} == {None}
    assert query(
        autolog.db,
        "select group_runs, group_mean, group_std from ranked_runs "
        "where run_name = 'forest-seed-0'",
    ) == [(3, pytest.approx(statistics.mean(seeds)), pytest.approx(statistics.stdev(seeds)))]


def test_seed_params_extend_the_seed_keys(tmp_path: Path) -> None:
    uri = new_store(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("cv-folds")
    for fold_seed, value in (("1", 0.70), ("2", 0.74)):
        log_run(client, exp, f"fold-{fold_seed}", params={"lr": "0.1", "Fold_Seed": fold_seed},
                metrics={"accuracy": value})  # fmt: skip
    log_run(client, exp, "no-params", metrics={"accuracy": 0.5})
    db = tmp_path / "runs.duckdb"
    extract(uri, db)
    sql = "select params, runs, mean_value, std_value from leaderboard_groups"
    assert query(db, sql) == [
        ("Fold_Seed=2, lr=0.1", 1, 0.74, None),  # the best mean first
        ("Fold_Seed=1, lr=0.1", 1, 0.70, None),
        (None, 1, 0.5, None),  # a run without params is a group of its own
    ]
    assert query(db, sql, ViewSettings(seed_params=["fold_seed"])) == [
        ("lr=0.1", 2, pytest.approx(0.72), pytest.approx(statistics.stdev([0.70, 0.74]))),
        (None, 1, 0.5, None),
    ]


@pytest.mark.pure
def test_param_changes_name_at_most_ten_keys_in_order() -> None:
    previous = {f"p{n:02d}": "a" for n in range(12)} | {"same": "x", "gone": "1"}
    now = {f"p{n:02d}": "b" for n in range(12)} | {"same": "x", "added": "2"}
    changes = param_changes(previous, now)
    assert changes is not None and len(changes) == 10
    assert changes[:3] == [
        {"key": "added", "previous": None, "now": "2"},
        {"key": "gone", "previous": "1", "now": None},
        {"key": "p00", "previous": "a", "now": "b"},
    ]
    assert changes[-1]["key"] == "p07"
    assert param_changes(None, now) is None


# --- the PyCaret store: five reports around four changes ---------------------------------


@dataclass
class Story:
    store: TeamStore
    reports: list[dict[str, Any]]
    summaries: list[str]
    emails: list[str]
    boards: list[list[dict[str, str]]]


@pytest.fixture(scope="module")
def pycaret(tmp_path_factory: pytest.TempPathFactory) -> Story:
    folder = tmp_path_factory.mktemp("pycaret")
    store = build_pycaret_store(folder / "store")
    client = MlflowClient(store.uri)
    db, out = folder / "runs.duckdb", folder / "reports"
    story = Story(store, [], [], [], [])

    def report() -> None:
        extract(store.uri, db)
        cli_ok("report", "--db", str(db), "--out", str(out), "--ui-url", UI)
        story.reports.append(json.loads((out / "report.json").read_text(encoding="utf-8")))
        story.summaries.append((out / "summary.txt").read_text(encoding="utf-8"))
        story.emails.append((out / "email.html").read_text(encoding="utf-8"))
        story.boards.append(read_csv(out / "leaderboard.csv"))

    report()
    # a fourth session: the forest again, a little better (within the seeds' spread)
    log_pycaret_session(client, store, 126, {"Random Forest Classifier": 0.815})
    report()
    # extra trees in that session: clearly better
    session = store.run_ids["session-126"]
    store.run_ids["et-126"] = log_pycaret_model(
        client, store, session, "Extra Trees Classifier", 0.86, 126
    )
    report()
    client.delete_run(store.run_ids["et-126"])  # the best is deleted
    report()
    client.log_metric(store.run_ids["rf-126"], "Accuracy", 0.70)  # the best is lowered
    report()
    return story


def test_pycaret_models_compete_although_their_sessions_log_nothing(pycaret: Story) -> None:
    """The root runs (the open sessions) log no metric: the leaderboard ranks every run,
    on Accuracy (ties of the naming rule go to the first key ignoring case)."""
    [row] = pycaret.boards[0]
    ids = pycaret.store.run_ids
    assert {key: row[key] for key in ("metric_key", "source", "leaderboard_runs", "run_id")} == {
        "metric_key": "Accuracy",
        "source": "rule",
        "leaderboard_runs": "all",
        "run_id": ids["rf-125"],
    }
    assert (row["value"], row["runs_compared"], row["group_runs"]) == ("0.81", "9", "3")
    assert float(row["group_mean"]) == pytest.approx(0.80)
    assert float(row["group_std"]) == pytest.approx(0.01)
    assert "its configuration 0.8 ± 0.01 over 3 runs" in pycaret.summaries[0]
    assert "its configuration: 0.8 ± 0.01 over 3 runs" in pycaret.emails[0]
    assert pycaret.reports[0]["changes"] is None


def test_a_new_best_within_the_seeds_spread_is_within_noise(pycaret: Story) -> None:
    ids = pycaret.store.run_ids
    changes = pycaret.reports[1]["changes"]
    [best] = changes["new_best"]
    assert {key: best[key] for key in ("run_id", "metric", "value", "previous_run_id")} == {
        "run_id": ids["rf-126"],
        "metric": "Accuracy",
        "value": 0.815,
        "previous_run_id": ids["rf-125"],
    }
    assert best["delta"] == pytest.approx(0.005)
    assert best["within_noise"] is True  # 0.005 against the group's ± 0.01
    assert best["param_changes"] == [{"key": "random_state", "previous": "125", "now": "126"}]
    assert changes["best_removed"] == []
    assert "NEW BEST (WITHIN NOISE) in pycaret-churn" in pycaret.summaries[1]
    assert "varies by ± 0.01 over its seeds" in pycaret.summaries[1]
    assert "New best, within noise" in pycaret.emails[1]


def test_a_clearly_better_new_best_names_the_params_it_changed(pycaret: Story) -> None:
    ids = pycaret.store.run_ids
    [best] = pycaret.reports[2]["changes"]["new_best"]
    assert (best["run_id"], best["value"], best["previous_run_id"]) == (
        ids["et-126"],
        0.86,
        ids["rf-126"],
    )
    # 0.045 against the forest's spread over its 4 seeds
    assert statistics.stdev([0.79, 0.80, 0.81, 0.815]) < best["delta"]
    assert best["within_noise"] is False
    assert best["param_changes"] == [{"key": "bootstrap", "previous": "True", "now": "False"}]
    assert (
        "NEW BEST in pycaret-churn: Extra Trees Classifier Accuracy = 0.86"
        in (pycaret.summaries[2])
    )
    assert "params changed: bootstrap True -> False" in pycaret.summaries[2]


def test_a_deleted_best_is_told_not_nothing_new(pycaret: Story) -> None:
    ids, exp = pycaret.store.run_ids, pycaret.store.experiment_ids[PYCARET_EXPERIMENT]
    changes = pycaret.reports[3]["changes"]
    assert changes["new_best"] == []
    assert changes["best_removed"] == [
        {
            "experiment_id": exp,
            "experiment_name": PYCARET_EXPERIMENT,
            "run_id": ids["et-126"],
            "run_name": "Extra Trees Classifier",
            "metric": "Accuracy",
            "value": 0.86,
            "new_best_run_id": ids["rf-126"],
            "new_best_run_name": "Random Forest Classifier",
            "new_value": 0.815,
        }
    ]
    summary = pycaret.summaries[3]
    assert "Nothing new" not in summary
    assert (
        "BEST RUN REMOVED OR LOWERED in pycaret-churn: Extra Trees Classifier Accuracy = 0.86 "
        "no longer leads; now Random Forest Classifier at 0.815"
    ) in summary
    assert "Best run removed or lowered" in pycaret.emails[3]


def test_a_lowered_best_is_told(pycaret: Story) -> None:
    ids = pycaret.store.run_ids
    changes = pycaret.reports[4]["changes"]
    assert changes["new_best"] == []
    assert [
        (row["run_id"], row["value"], row["new_best_run_id"], row["new_value"])
        for row in changes["best_removed"]
    ] == [(ids["rf-126"], 0.815, ids["rf-125"], 0.81)]
    assert pycaret.reports[4]["state"]["leaderboard"][0]["run_id"] == ids["rf-125"]
