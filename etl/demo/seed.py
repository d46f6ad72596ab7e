"""Log demo runs that use every `mlflow.start_run` parameter, the way the article
"5 quick tips to improve your MLflow model experimentation" does.

Scikit-learn's bundled diabetes data (no download), split 3:1 with random_state=42, and
`mlflow.autolog()` on, so every fitted estimator gets the `estimator_name` and
`estimator_class` tags. Each seeding adds runs to two experiments, created by name only if
missing:

- `/mlflow_sdk_test`: the article's steps, all run now: `experiment_id=`, a run reopened by
  `run_id=` to log r2 after mse and rmse, one dated `run_name=` used twice, `tags=` and
  `description=`, a nested parent whose run is reopened later to add a child, a child
  attached with `parent_run_id=`, and a GridSearchCV fit whose child runs autolog makes.
  It carries the primary-metric tags (rmse, lower is better).
- `/diabetes_estimators`: Ridge, Lasso, ElasticNet and RandomForest runs from the past
  days, one of which fails, plus one Lasso run logged now by `experiment_id=`.

How the past dates are set: MLflow's fluent API always starts a run at the current time,
so a backdated run is made with `MlflowClient.create_run(start_time=...)` (09:00 UTC on its
day, with the tags `start_run` would have resolved: user, source), then opened with
`start_run(run_id=...)` for the fit, and closed with `set_terminated(end_time=...)`: its
start time plus the real wall time of the work. The mse/rmse/r2 metrics carry timestamps
shifted the same way; the metrics autolog adds carry the time of seeding.

MLflow 3's entities beyond runs, without new runs and without model artifacts (no
subprocess, seeding stays fast): autolog logs the training and evaluation data as dataset
inputs, and the first article run also logs the named dataset `DATASET_NAME` (context
"training"); two runs each record a logged model (`create_logged_model`, an output of the
run) with its test rmse; the registered model `REGISTERED_MODEL` gets one version from
each, and its alias `ALIAS` is set on the first and then moved to the second; and a few
traces in the article experiment, one of them an error, carry token usage and a
"correct" feedback assessment each.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.data.numpy_dataset import from_numpy
from mlflow.entities import AssessmentSource, LoggedModelOutput
from mlflow.exceptions import MlflowException
from mlflow.tracking import fluent
from mlflow.tracking._tracking_service import utils as tracking_utils
from mlflow.tracking.context.registry import resolve_tags
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import ElasticNet, Lasso, Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import GridSearchCV, train_test_split

from etl.errors import ConfigError, JobFailed
from etl.extract.reader import run_pages
from etl.extract.tracking import check_tracking_uri, redact, sqlite_path

if TYPE_CHECKING:
    from mlflow.entities import Run

ARTICLE_EXPERIMENT = "/mlflow_sdk_test"
ESTIMATORS_EXPERIMENT = "/diabetes_estimators"
PRIMARY_METRIC_TAGS = {
    "mlflow.experiment.primaryMetric.name": "rmse",
    "mlflow.experiment.primaryMetric.greaterIsBetter": "False",
}
EXPERIMENT_DESCRIPTIONS = {
    ARTICLE_EXPERIMENT: "Ridge regression on the diabetes data, following the article's tips.",
    ESTIMATORS_EXPERIMENT: "Which estimator does best on the diabetes data.",
}
# Environment variables MLflow's fluent API reads or writes; restored after seeding.
MLFLOW_STATE_VARS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
)
BACKDATED_START = (9, 0)  # hour, minute UTC on the run's day
DATASET_NAME = "diabetes (train)"
REGISTERED_MODEL = "diabetes-ridge"
ALIAS = "champion"
# (question, answered correctly, input tokens, output tokens); None: the call failed
DEMO_TRACES: tuple[tuple[str, bool | None, int, int], ...] = (
    ("Which alpha did best?", True, 42, 18),
    ("What is the test rmse?", False, 37, 25),
    ("Summarise the runs", None, 55, 0),
)
MINUTES_BETWEEN_BACKDATED_RUNS = 25


@dataclass
class SeedSummary:
    """What one seeding added to the store."""

    tracking_uri: str
    experiment_names: list[str]
    runs: int
    nested_child_runs: int
    failed_runs: int
    start_dates: list[date]
    runs_per_estimator: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def experiments(self) -> int:
        return len(self.experiment_names)

    def describe(self) -> str:
        names = ", ".join(self.experiment_names)
        dates = (
            f"{len(self.start_dates)} start dates, {self.start_dates[0]} to {self.start_dates[-1]}"
            if self.start_dates
            else "no start dates"
        )
        estimators = ", ".join(f"{name} {count}" for name, count in self.runs_per_estimator.items())
        return "\n".join(
            [
                f"Seeded {redact(self.tracking_uri)} in {self.seconds:.1f} s:",
                f"  {self.experiments} experiments: {names}",
                f"  {self.runs} runs: {self.nested_child_runs} nested child runs, "
                f"{self.failed_runs} failed; {dates}",
                f"  runs per estimator: {estimators or 'none'}",
            ]
        )


@dataclass
class Diabetes:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def seed_demo_runs(tracking_uri: str, log_models: bool = False) -> SeedSummary:
    """Log the demo runs into `tracking_uri` and say what was added.

    MLflow's global state (tracking URI, active experiment, autolog, active runs, and the
    MLFLOW_* variables it sets) is as it was before when this returns or raises.
    """

    uri = _writable_uri(tracking_uri)
    if mlflow.active_run() is not None:
        raise ConfigError(
            "an MLflow run is active in this process",
            "End it with mlflow.end_run() before seeding",
        )
    started = time.monotonic()
    with _restored_mlflow_state():
        try:
            mlflow.set_tracking_uri(uri)
            client = mlflow.MlflowClient(uri)
            experiment_ids = _get_or_create_experiments(client, uri)
            before = {run.info.run_id for run in _all_runs(client, experiment_ids)}
            mlflow.autolog(log_models=log_models, silent=True)
            _log_demo_runs(client, experiment_ids, _load_diabetes())
            added = [r for r in _all_runs(client, experiment_ids) if r.info.run_id not in before]
        except MlflowException as exc:
            first_line = str(exc).split("\n", 1)[0]
            raise JobFailed(
                f"seeding {redact(tracking_uri)} failed: {first_line}",
                "Check that the tracking URI names a store you can write to",
            ) from exc
    return _summarize(tracking_uri, list(experiment_ids), added, time.monotonic() - started)


def _writable_uri(tracking_uri: str) -> str:
    """Check the URI; a SQLite file that does not exist yet is created (seed is a writer)."""
    if tracking_uri.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite":
        path = sqlite_path(tracking_uri)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the folder {path.parent} for the store: {exc.strerror}",
                    "Pass --tracking-uri sqlite:///path/in/a/writable/folder/mlflow.db",
                ) from exc
        return tracking_uri
    return check_tracking_uri(tracking_uri)


@contextmanager
def _restored_mlflow_state() -> Iterator[None]:

    saved_uri = tracking_utils._tracking_uri
    saved_experiment_id = fluent._active_experiment_id
    saved_env = {name: os.environ.get(name) for name in MLFLOW_STATE_VARS}
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(name, None)
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run("FAILED")
        mlflow.autolog(disable=True, silent=True)
        mlflow.set_tracking_uri(saved_uri)  # type: ignore[arg-type]  # None restores the default
        fluent._active_experiment_id = saved_experiment_id
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _get_or_create_experiments(client: MlflowClient, uri: str) -> dict[str, str]:
    """Experiment name -> id, creating the missing ones (never a second one of a name)."""
    artifact_root = _artifact_root(uri)
    ids: dict[str, str] = {}
    for name, description in EXPERIMENT_DESCRIPTIONS.items():
        experiment = client.get_experiment_by_name(name)
        if experiment is not None and experiment.lifecycle_stage != "active":
            raise ConfigError(
                f"the experiment {name} is deleted in {redact(uri)}",
                "Restore it (mlflow experiments restore) or seed into another store",
            )
        tags = {"mlflow.note.content": description}
        if name == ARTICLE_EXPERIMENT:
            tags |= PRIMARY_METRIC_TAGS
        if experiment is None:
            location = f"{artifact_root}/{name.strip('/')}" if artifact_root else None
            ids[name] = client.create_experiment(name, artifact_location=location, tags=tags)
        else:
            ids[name] = experiment.experiment_id
            for key, value in tags.items():
                if key not in experiment.tags:  # a user's own description or metric stays
                    client.set_experiment_tag(ids[name], key, value)
    return ids


def _artifact_root(uri: str) -> str | None:
    """Beside the SQLite file, so artifacts don't land in whatever folder seed runs from."""
    path = sqlite_path(uri) if uri.lower().startswith("sqlite") else None
    return (path.resolve().parent / "mlartifacts").as_uri() if path else None


def _all_runs(client: MlflowClient, experiment_ids: dict[str, str]) -> Iterator[Run]:
    for page in run_pages(client, list(experiment_ids.values())):
        yield from page


def _load_diabetes() -> Diabetes:

    data = load_diabetes()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=42
    )
    return Diabetes(x_train, x_test, y_train, y_test)


def _ridge(alpha: float) -> Any:

    return Ridge(alpha=alpha, solver="cholesky")


def _fit_and_score(estimator: Any, data: Diabetes, x_train: Any = None) -> dict[str, float]:
    """Fit on the training set (under autolog) and score on the test set."""

    estimator.fit(data.x_train if x_train is None else x_train, data.y_train)
    # autolog names its post-training metrics after this variable: mean_squared_error_X_test
    X_test = data.x_test
    predicted = estimator.predict(X_test)
    mse = float(mean_squared_error(data.y_test, predicted))
    return {"mse": mse, "rmse": math.sqrt(mse), "r2": float(r2_score(data.y_test, predicted))}


def _log_scores(scores: dict[str, float], keys: tuple[str, ...] = ("mse", "rmse", "r2")) -> None:

    for key in keys:
        mlflow.log_metric(key, scores[key])


def _log_demo_runs(client: MlflowClient, experiment_ids: dict[str, str], data: Diabetes) -> None:
    _log_past_days(client, experiment_ids[ESTIMATORS_EXPERIMENT], data)
    models = _log_article_steps(experiment_ids, data)
    _register_models(client, models)
    _log_traces(experiment_ids[ARTICLE_EXPERIMENT])


def _log_past_days(client: MlflowClient, experiment_id: str, data: Diabetes) -> None:
    """A few days of estimator comparisons, one of which fails."""

    mlflow.set_experiment(experiment_id=experiment_id)
    # A broken feature: one column with missing values makes the fit raise.
    broken_x_train = data.x_train.copy()
    broken_x_train[::7, 2] = np.nan
    plan: list[tuple[int, str, Any, Any]] = [
        (6, "Ridge", _ridge(1.0), None),
        (6, "Lasso", Lasso(alpha=0.1), None),
        (4, "Lasso", Lasso(alpha=0.5), None),
        (4, "ElasticNet", ElasticNet(alpha=0.1, l1_ratio=0.5), None),
        (3, "ElasticNet", ElasticNet(alpha=0.01, l1_ratio=0.5), broken_x_train),
        (3, "ElasticNet", ElasticNet(alpha=0.01, l1_ratio=0.5), None),
        (1, "RandomForest", RandomForestRegressor(n_estimators=10, random_state=42), None),
        (
            1,
            "RandomForest",
            RandomForestRegressor(n_estimators=20, max_depth=4, random_state=42),
            None,
        ),
    ]
    today = datetime.now(timezone.utc).date()
    slot_of_day: Counter[int] = Counter()
    for days_ago, label, estimator, x_train in plan:
        day = today - timedelta(days=days_ago)
        start = datetime(day.year, day.month, day.day, *BACKDATED_START, tzinfo=timezone.utc)
        start += timedelta(minutes=MINUTES_BETWEEN_BACKDATED_RUNS * slot_of_day[days_ago])
        slot_of_day[days_ago] += 1
        try:
            with _backdated_run(client, experiment_id, start, f"{label} {day}") as shift:
                scores = _fit_and_score(estimator, data, x_train)
                stamp = shift(int(time.time() * 1000))
                mlflow.log_metrics({k: scores[k] for k in ("mse", "rmse", "r2")}, timestamp=stamp)
        except ValueError:
            if x_train is None:
                raise  # only the run with the broken feature is meant to fail


@contextmanager
def _backdated_run(
    client: MlflowClient, experiment_id: str, start: datetime, run_name: str
) -> Iterator[Any]:
    """A run that started at `start`; yields a function that shifts a timestamp (ms) of now
    into the run's time frame. An exception inside marks it FAILED, as `with start_run` does."""

    start_ms = int(start.timestamp() * 1000)
    offset_ms = start_ms - int(time.time() * 1000)
    run = client.create_run(
        experiment_id, start_time=start_ms, run_name=run_name, tags=resolve_tags()
    )
    status = "FINISHED"
    try:
        with mlflow.start_run(run_id=run.info.run_id):
            yield lambda now_ms: now_ms + offset_ms
    except BaseException:
        status = "FAILED"
        raise
    finally:
        client.set_terminated(
            run.info.run_id, status=status, end_time=int(time.time() * 1000) + offset_ms
        )


def _log_article_steps(experiment_ids: dict[str, str], data: Diabetes) -> list[str]:
    """The article's tips, in the order a person would run them in a notebook; returns
    the ids of the logged models two of the runs record, oldest first."""

    models = []
    # experiment_id: set_experiment for the runs that follow, experiment_id= per run.
    experiment = mlflow.set_experiment(ARTICLE_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment.experiment_id) as first:
        train = from_numpy(data.x_train, targets=data.y_train, name=DATASET_NAME)
        mlflow.log_input(train, context="training")
        scores = _fit_and_score(_ridge(0.8), data)
        _log_scores(scores)
        models.append(
            _log_model_record(first.info, "ridge-article", {"alpha": "0.8"}, scores, train)
        )
    with mlflow.start_run(experiment_id=experiment_ids[ESTIMATORS_EXPERIMENT]):
        _log_scores(_fit_and_score(Lasso(alpha=0.05), data))

    # run_id, part 1: a run that logs mse and rmse only; r2 comes later.
    with mlflow.start_run() as run_without_r2:
        late_scores = _fit_and_score(_ridge(0.9), data)
        _log_scores(late_scores, ("mse", "rmse"))

    # run_name: a dated name, used twice (names are not unique); tags and description.
    run_name = f"Ridge Regression {datetime.now(timezone.utc).date()}"
    with mlflow.start_run(
        run_name=run_name,
        tags={"dataset": "sklearn diabetes", "stage": "tuning"},
        description="Ridge, alpha 0.5: less regularisation than the 0.8 run.",
    ):
        _log_scores(_fit_and_score(_ridge(0.5), data))
    with mlflow.start_run(run_name=run_name, tags={"dataset": "sklearn diabetes"}):
        _log_scores(_fit_and_score(_ridge(0.6), data))

    # nested: a parent with one child; the parent keeps the best child rmse so far.
    with mlflow.start_run(run_name="Ridge Regression Nested") as parent:
        with mlflow.start_run(run_name="Child Run: alpha 0.1", nested=True):
            child_scores = _fit_and_score(_ridge(0.1), data)
            _log_scores(child_scores)
        best_rmse = child_scores["rmse"]
        mlflow.log_metric("best_rmse", best_rmse, step=0)

    # GridSearchCV under autolog makes one child run per parameter combination.
    with mlflow.start_run(run_name="Ridge GridSearchCV", tags={"stage": "tuning"}) as searched:
        search = GridSearchCV(
            _ridge(1.0),
            {"alpha": [0.1, 0.5, 1.0]},
            cv=3,
            scoring="neg_root_mean_squared_error",
        )
        search_scores = _fit_and_score(search, data)
        _log_scores(search_scores)
        best = {"alpha": str(search.best_params_["alpha"])}
        models.append(_log_model_record(searched.info, "ridge-search", best, search_scores, train))

    # parent_run_id: a child attached to the finished parent without reopening it.
    with mlflow.start_run(run_name="Child Run: alpha 0.3", parent_run_id=parent.info.run_id):
        attached_scores = _fit_and_score(_ridge(0.3), data)
        _log_scores(attached_scores)

    # nested, later: reopen the parent by run_id and add another child.
    with mlflow.start_run(run_id=parent.info.run_id):
        with mlflow.start_run(run_name="Child Run: alpha 0.2", nested=True):
            later_scores = _fit_and_score(_ridge(0.2), data)
            _log_scores(later_scores)
        best_rmse = min(best_rmse, attached_scores["rmse"], later_scores["rmse"])
        mlflow.log_metric("best_rmse", best_rmse, step=1)

    # run_id, part 2: reopen the first run to log r2 after the fact.
    with mlflow.start_run(run_id=run_without_r2.info.run_id):
        mlflow.log_metric("r2", late_scores["r2"])
    return models


def _log_model_record(
    run: Any, name: str, params: dict[str, str], scores: dict[str, float], dataset: Any
) -> str:
    """A logged model of the run (its record only: no artifacts) with the test rmse, as an
    output of the run; returns its id."""

    client = MlflowClient()
    model = client.create_logged_model(
        run.experiment_id, name=name, source_run_id=run.run_id, params=params, model_type="sklearn"
    )
    client.log_metric(
        run.run_id,
        "rmse",
        scores["rmse"],
        step=0,
        model_id=model.model_id,
        dataset_name=dataset.name,
        dataset_digest=dataset.digest,
    )
    client.log_outputs(run.run_id, [_model_output(model.model_id)])
    client.finalize_logged_model(model.model_id, "READY")
    return model.model_id


def _model_output(model_id: str) -> Any:

    return LoggedModelOutput(model_id, step=0)


def _register_models(client: MlflowClient, model_ids: list[str]) -> None:
    """One version of REGISTERED_MODEL per logged model; ALIAS on the first, then moved to
    the last. A second seeding adds versions to the same registered model."""

    try:
        client.get_registered_model(REGISTERED_MODEL)
    except MlflowException:
        client.create_registered_model(
            REGISTERED_MODEL, description="Ridge regression on the diabetes data."
        )
    versions = [
        client.create_model_version(
            REGISTERED_MODEL, f"models:/{model_id}", model_id=model_id, await_creation_for=0
        ).version
        for model_id in model_ids
    ]
    client.set_registered_model_alias(REGISTERED_MODEL, ALIAS, str(versions[0]))
    client.set_registered_model_alias(REGISTERED_MODEL, ALIAS, str(versions[-1]))


def _log_traces(experiment_id: str) -> None:
    """DEMO_TRACES as one-span traces with token usage, each with a feedback assessment."""

    mlflow.set_experiment(experiment_id=experiment_id)
    trace_ids = []
    for question, correct, input_tokens, output_tokens in DEMO_TRACES:
        try:
            with mlflow.start_span("ask the runs", span_type="CHAT_MODEL") as span:
                span.set_inputs({"question": question})
                span.set_attribute(
                    "mlflow.chat.tokenUsage",
                    {
                        "input_tokens": input_tokens,
                        "output_tokens": output_tokens,
                        "total_tokens": input_tokens + output_tokens,
                    },
                )
                trace_ids.append(span.trace_id)
                if correct is None:
                    raise TimeoutError("the model did not answer")
                span.set_outputs({"answer": "see the leaderboard"})
        except TimeoutError:
            pass  # recorded as an ERROR trace
    mlflow.flush_trace_async_logging()
    source = AssessmentSource(source_type="HUMAN", source_id="demo reviewer")
    for trace_id, (_, correct, _, _) in zip(trace_ids, DEMO_TRACES, strict=True):
        if correct is not None:
            mlflow.log_feedback(trace_id=trace_id, name="correct", value=correct, source=source)


def _summarize(
    tracking_uri: str, experiment_names: list[str], added: list[Run], seconds: float
) -> SeedSummary:
    start_dates = sorted(
        {datetime.fromtimestamp(r.info.start_time / 1000, timezone.utc).date() for r in added}
    )
    estimators = Counter(r.data.tags.get("estimator_name", "no estimator") for r in added)
    return SeedSummary(
        tracking_uri=tracking_uri,
        experiment_names=experiment_names,
        runs=len(added),
        nested_child_runs=sum("mlflow.parentRunId" in r.data.tags for r in added),
        failed_runs=sum(r.info.status == "FAILED" for r in added),
        start_dates=start_dates,
        runs_per_estimator=dict(estimators.most_common()),
        seconds=seconds,
    )
