"""MLflow stores shaped like real teams', built through MLflow's own API, for the tests
and the screenshots of the report on them.

- `build_autolog_store`: sklearn autolog with GridSearchCV (the children of a search log
  `mean_test_score`, the top-level runs `accuracy`), runs that differ only by a seed, and
  logged models carrying only autolog's training metrics.
- `build_pycaret_store`: PyCaret's layout, mimicked with MlflowClient: a "Session
  Initialized" run per setup() left RUNNING, its models nested under it with the
  estimator in the run name and PyCaret's metric names (Accuracy, AUC, ..., TT).

Each is built once per test session (tests/templates.py) and copied, so a test pays for
a file copy; both return the ids a test needs. Their names are kept stable: other test
modules import them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

from tests import templates
from tests.conftest import StoreFacts, new_store
from tests.templates import copy_store, template

AUTOLOG_EXPERIMENT = "iris-autolog"
PYCARET_EXPERIMENT = "pycaret-churn"
# the metrics PyCaret logs per model (compare_models' grid; its "TT (Sec)" as TT)
PYCARET_METRICS = ("Accuracy", "AUC", "Recall", "Prec.", "F1", "Kappa", "MCC", "TT")
# the estimators' params PyCaret logs (get_params(), less the noise); random_state is
# the session_id of setup()
PYCARET_PARAMS = {
    "Logistic Regression": {
        "C": "1.0",
        "class_weight": "None",
        "max_iter": "1000",
        "penalty": "l2",
        "solver": "lbfgs",
    },
    "Random Forest Classifier": {
        "bootstrap": "True",
        "criterion": "gini",
        "max_depth": "None",
        "n_estimators": "100",
        "n_jobs": "-1",
    },
    "Extra Trees Classifier": {
        "bootstrap": "False",
        "criterion": "gini",
        "max_depth": "None",
        "n_estimators": "100",
        "n_jobs": "-1",
    },
    "Decision Tree Classifier": {
        "criterion": "gini",
        "max_depth": "None",
        "min_samples_leaf": "1",
    },
}
# Accuracy of each model in the sessions build_pycaret_store logs (session_id -> value)
PYCARET_ACCURACY = {
    "Logistic Regression": {123: 0.785, 124: 0.790, 125: 0.795},
    "Random Forest Classifier": {123: 0.790, 124: 0.800, 125: 0.810},
    "Decision Tree Classifier": {123: 0.720, 124: 0.730, 125: 0.710},
}


@dataclass
class TeamStore(StoreFacts):
    """StoreFacts with the values a test ranks by."""

    values: dict[str, float] = field(default_factory=dict)  # run label -> its metric
    # search label -> child run id -> the child's metrics
    children: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    model_ids: dict[str, str] = field(default_factory=dict)  # run label -> logged model


def _from_template(name: str, log: Callable[[str, Path], TeamStore], folder: Path) -> TeamStore:
    """The store `log(uri, folder)` makes, built once per session and copied into
    `folder`; built in `folder` itself outside a pytest session."""
    if templates.session is None:
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        MlflowClient(uri).search_experiments()  # creates the schema
        return log(uri, folder)
    path, facts = template(name, lambda here: log(new_store(here), here))
    return dataclasses.replace(
        facts,
        uri=copy_store(path, folder),
        run_ids=dict(facts.run_ids),
        experiment_ids=dict(facts.experiment_ids),
    )


# --- sklearn autolog with GridSearchCV ------------------------------------------------------


def build_autolog_store(folder: Path) -> TeamStore:
    """A team using `mlflow.sklearn.autolog()` on iris (half for training, half for
    testing): each top-level run fits one model and logs its test `accuracy` itself, as
    such code does; autolog adds its `training_*` metrics and every estimator param.

    - `logreg-C0.01`, `logreg-C1`: LogisticRegression;
    - `forest-seed-0/1/2`: one RandomForestClassifier differing only by `random_state`;
    - `grid-svc` (SVC, C x kernel) and `grid-tree` (DecisionTree, max_depth x
      min_samples_leaf): GridSearchCV, 2x2, cv=2; autolog makes a child run per point,
      logging only `mean_test_score`, `std_test_score`, `rank_test_score` and the fit and
      score times. 8 children log more than the 7 top-level runs: the old naming rule
      ranked the experiment by the children's `mean_test_score`.
    - logged models of `logreg-C0.01`, `logreg-C1` and `forest-seed-1`, as MLflow 3's
      autolog records them: the model carries the run's `training_accuracy_score` and
      `training_f1_score`, and none of `accuracy`.

    `values`: each top-level run's test accuracy; `children`: each search's child runs
    with their metrics; `model_ids`: the logged model of a run label."""
    return _from_template("autolog", _log_autolog_store, folder)


@contextlib.contextmanager
def _autolog(uri: str) -> Iterator[None]:
    """sklearn autolog into `uri`, for this block only. MLflow's own context manager puts
    the tracking URI back as it was (unset included): set_tracking_uri(previous) would pin
    it, and MLFLOW_TRACKING_URI with it, for every later test of the session."""
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        with _use_tracking_uri(uri), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        mlflow.sklearn.autolog(disable=True)
        # forget the explicit configuration too: a later mlflow.autolog() (the demo seed)
        # leaves an integration configured on its own as it is, disabled here
        AUTOLOGGING_INTEGRATIONS.pop("sklearn", None)


def _log_autolog_store(uri: str, folder: Path) -> TeamStore:
    # imported here: sklearn is slow to import and only these stores need it
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    client = MlflowClient(uri)
    store = TeamStore(uri)
    experiment_id = client.create_experiment(
        AUTOLOG_EXPERIMENT, artifact_location=(folder / "artifacts").as_uri()
    )
    store.experiment_ids[AUTOLOG_EXPERIMENT] = experiment_id
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.5, random_state=0, stratify=y
    )
    models = {
        "logreg-C0.01": LogisticRegression(C=0.01, max_iter=500),
        "logreg-C1": LogisticRegression(C=1.0, max_iter=500),
        **{
            f"forest-seed-{seed}": RandomForestClassifier(
                n_estimators=3, max_depth=2, random_state=seed
            )
            for seed in range(3)
        },
        "grid-svc": GridSearchCV(SVC(), {"C": [0.01, 1.0], "kernel": ["linear", "rbf"]}, cv=2),
        "grid-tree": GridSearchCV(
            DecisionTreeClassifier(random_state=0),
            {"max_depth": [1, 3], "min_samples_leaf": [1, 10]},
            cv=2,
        ),
    }
    with _autolog(uri):
        for label, model in models.items():
            with mlflow.start_run(experiment_id=experiment_id, run_name=label) as run:
                model.fit(x_train, y_train)
                accuracy = float((model.predict(x_test) == y_test).mean())
                mlflow.log_metric("accuracy", accuracy)
            store.run_ids[label] = run.info.run_id
            store.values[label] = accuracy
    for label in ("grid-svc", "grid-tree"):
        found = client.search_runs(
            [experiment_id], f"tags.mlflow.parentRunId = '{store.run_ids[label]}'"
        )
        store.children[label] = {child.info.run_id: dict(child.data.metrics) for child in found}
    for label in ("logreg-C0.01", "logreg-C1", "forest-seed-1"):
        store.model_ids[label] = _log_model_record(client, experiment_id, store.run_ids[label])
    return store


def _log_model_record(client: MlflowClient, experiment_id: str, run_id: str) -> str:
    """A logged model of the run (its record only) with the training metrics autolog links
    to it."""
    model = client.create_logged_model(
        experiment_id, name="model", source_run_id=run_id, model_type="sklearn"
    )
    metrics = client.get_run(run_id).data.metrics
    for key in ("training_accuracy_score", "training_f1_score"):
        client.log_metric(run_id, key, metrics[key], step=0, model_id=model.model_id)
    client.finalize_logged_model(model.model_id, "READY")
    return model.model_id


# --- PyCaret ------------------------------------------------------------------------------


def build_pycaret_store(folder: Path) -> TeamStore:
    """A team using PyCaret's `setup(log_experiment=True)` and `compare_models()`: each
    session (session_id 123, 124, 125) leaves its "Session Initialized <USI>" run RUNNING
    (PyCaret never ends it: a parent left open) with setup()'s params, and nests under it
    one FINISHED run per model, named after the estimator ("Logistic Regression", "Random
    Forest Classifier", "Decision Tree Classifier": no estimator tag), with the
    estimator's params (`random_state` = the session_id: a seed) and PyCaret's metrics
    `Accuracy`, `AUC`, `Recall`, `Prec.`, `F1`, `Kappa`, `MCC`, `TT` (train time). Accuracy is
    PYCARET_ACCURACY; the other metrics follow it.

    run_ids: `session-<id>` and `<model label>-<id>` (`lr`, `rf`, `dt`); `values`: the
    Accuracy of each model run."""
    return _from_template("pycaret", _log_pycaret_store, folder)


MODEL_LABELS = {
    "Logistic Regression": "lr",
    "Random Forest Classifier": "rf",
    "Extra Trees Classifier": "et",
    "Decision Tree Classifier": "dt",
}


def _log_pycaret_store(uri: str, folder: Path) -> TeamStore:
    client = MlflowClient(uri)
    store = TeamStore(uri)
    experiment_id = client.create_experiment(
        PYCARET_EXPERIMENT, artifact_location=(folder / "artifacts").as_uri()
    )
    store.experiment_ids[PYCARET_EXPERIMENT] = experiment_id
    for session_id in (123, 124, 125):
        accuracy = {name: values[session_id] for name, values in PYCARET_ACCURACY.items()}
        log_pycaret_session(client, store, session_id, accuracy)
    return store


def log_pycaret_session(
    client: MlflowClient, store: TeamStore, session_id: int, accuracy: dict[str, float]
) -> None:
    """One PyCaret session into the store's PyCaret experiment: its open "Session
    Initialized" run and one model run per estimator name, with that Accuracy."""
    experiment_id = store.experiment_ids[PYCARET_EXPERIMENT]
    usi = f"{session_id:04x}"
    session = client.create_run(
        experiment_id,
        run_name=f"Session Initialized {usi}",
        tags={"Source": "setup", "USI": usi, "mlflow.source.type": "NOTEBOOK"},
    )
    session_run = session.info.run_id
    client.log_batch(
        session_run,
        params=[
            Param(key, value)
            for key, value in {
                "session_id": str(session_id),
                "target": "Churn",
                "train_size": "0.7",
                "fold": "10",
                "fold_strategy": "stratifiedkfold",
            }.items()
        ],
    )
    store.run_ids[f"session-{session_id}"] = session_run  # left RUNNING, as PyCaret does
    for name, value in accuracy.items():
        label = f"{MODEL_LABELS[name]}-{session_id}"
        store.run_ids[label] = log_pycaret_model(
            client, store, session_run, name, value, session_id
        )
        store.values[label] = value


def log_pycaret_model(
    client: MlflowClient,
    store: TeamStore,
    session_run: str,
    name: str,
    accuracy: float,
    session_id: int,
    params: dict[str, str] | None = None,
) -> str:
    """One model run of compare_models() under its session run; returns its id."""
    run = client.create_run(
        store.experiment_ids[PYCARET_EXPERIMENT],
        run_name=name,
        tags={"Source": "compare_models", "mlflow.parentRunId": session_run},
    )
    now = int(time.time() * 1000)
    scores = dict(
        zip(
            PYCARET_METRICS,
            (accuracy, accuracy + 0.05, accuracy - 0.1, accuracy - 0.05, accuracy - 0.08,
             accuracy - 0.4, accuracy - 0.38, 0.25),
            strict=True,
        )
    )  # fmt: skip
    logged = {**(params or PYCARET_PARAMS[name]), "random_state": str(session_id)}
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(key, value, now, 0) for key, value in scores.items()],
        params=[Param(key, value) for key, value in logged.items()],
    )
    run_id: str = run.info.run_id
    client.set_terminated(run_id)
    return run_id
