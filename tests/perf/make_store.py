"""Fast generator of big MLflow SQLite stores, for the extract benchmark.

Logging 100,000 runs one API call at a time takes hours; this writes them in a minute or
two. Run it alone to build (or warm the cache with) a store:

    python tests/perf/make_store.py --runs 120000

How it stays faithful to what MLflow itself writes:

- The schema is MLflow's own: `MlflowClient(uri).search_experiments()` runs MLflow's
  migrations. Experiments and their tags are made through `MlflowClient.create_experiment`,
  so ids, artifact locations and times are MLflow's; the deleted experiment is deleted with
  `MlflowClient.delete_experiment`, which marks its runs deleted the way MLflow does.
- Runs go in with `sqlite3.executemany` straight into `runs`, `tags`, `params`, `metrics`
  and `latest_metrics`, in the shapes of `SqlAlchemyStore` (mlflow/store/tracking/
  sqlalchemy_store.py) for `create_run` + `log_batch` + `set_terminated` + `delete_run`:
  `runs.name` and the `mlflow.runName` tag both hold the name; `user_id` is the
  `mlflow.user` tag (as `MlflowClient.create_run` does); `source_type` 'UNKNOWN' and empty
  `source_name`, `entry_point_name`, `source_version` (create_run hardcodes them; the real
  source lives in the `mlflow.source.*` tags); `artifact_uri` is the experiment's artifact
  location + run id + "artifacts"; `end_time` NULL while RUNNING; `lifecycle_stage`
  'deleted' with a `deleted_time` for deleted runs; a NaN metric is stored as value 0 with
  `is_nan` 1 and ±inf as ±1.7976931348623157e308 (`sanitize_metric_value`); and
  `latest_metrics` holds, per run and key, the point with the greatest (step, timestamp,
  value), as `_update_latest_metrics_if_necessary` keeps it.
- tests/test_generated_store.py is the check: it replays a generated plan through MLflow's
  API into a second store and compares the raw rows of both, reads a generated store back
  through `MlflowClient` (search_runs, get_metric_history, a start_time filter) and compares
  what `runreport extract` builds from it with what MLflow returns.

Bump GENERATOR_VERSION whenever the generated data changes: cached stores are keyed by it.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

GENERATOR_VERSION = 1
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
DAY_MS = 86_400_000
SPREAD_DAYS = 60
# What SqlAlchemyStore.sanitize_metric_value stores for ±inf.
FLOAT_MAX = 1.7976931348623157e308
# Runs are written in chunks of about this many, so memory stays small at any store size.
CHUNK_RUNS = 5_000
DIVERGED_SHARE = 0.004  # runs whose loss ends NaN (and val metric inf)
RELOGGED_SHARE = 0.05  # runs that log their val metric again at step 0 after training

USERS = ["alice", "bob", "chen", "dana", "emeka", "farah", "goran", "hana"]
USER_WEIGHTS = [30, 20, 15, 10, 10, 7, 5, 3]
PREDICATES = [
    "able",
    "bold",
    "calm",
    "dapper",
    "eager",
    "fun",
    "gentle",
    "honest",
    "keen",
    "lucky",
    "merry",
    "nimble",
    "polite",
    "quiet",
    "rare",
    "sassy",
    "tidy",
    "vast",
]
NOUNS = ["ant", "bass", "cat", "deer", "eel", "fox", "gnu", "hare", "ibis", "jay", "koi",
         "lark", "mole", "newt", "owl", "pug", "ram", "seal", "toad", "wolf"]  # fmt: skip
DOMAINS = ["churn", "fraud", "demand", "pricing", "ranking", "sentiment", "credit", "energy",
           "traffic", "retention"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Estimator:
    name: str
    dotted_class: str
    params: tuple[tuple[str, tuple[str, ...]], ...]  # five (key, possible values)
    metrics: tuple[str, ...]  # five keys; the last two are logged with history


CLASSIFIER_METRICS = (
    "training_accuracy_score", "training_f1_score", "training_log_loss", "val_accuracy", "loss",
)  # fmt: skip
REGRESSOR_METRICS = (
    "training_mean_squared_error", "training_r2_score", "training_mean_absolute_error",
    "val_rmse", "loss",
)  # fmt: skip
SEEDS = ("0", "7", "42", "1234")
ESTIMATORS = (
    Estimator(
        "RandomForestClassifier",
        "sklearn.ensemble._forest.RandomForestClassifier",
        (("n_estimators", ("100", "200", "500")), ("max_depth", ("None", "8", "16", "32")),
         ("min_samples_split", ("2", "5", "10")), ("criterion", ("gini", "entropy")),
         ("random_state", SEEDS)),
        CLASSIFIER_METRICS,
    ),
    Estimator(
        "LogisticRegression",
        "sklearn.linear_model._logistic.LogisticRegression",
        (("C", ("0.01", "0.1", "1.0", "10.0")), ("penalty", ("l1", "l2")),
         ("solver", ("lbfgs", "liblinear", "saga")), ("max_iter", ("100", "500", "1000")),
         ("random_state", SEEDS)),
        CLASSIFIER_METRICS,
    ),
    Estimator(
        "GradientBoostingRegressor",
        "sklearn.ensemble._gb.GradientBoostingRegressor",
        (("learning_rate", ("0.01", "0.05", "0.1")), ("n_estimators", ("100", "300", "1000")),
         ("max_depth", ("3", "5", "8")), ("subsample", ("0.5", "0.8", "1.0")),
         ("random_state", SEEDS)),
        REGRESSOR_METRICS,
    ),
    Estimator(
        "Ridge",
        "sklearn.linear_model._ridge.Ridge",
        (("alpha", ("0.1", "1.0", "10.0")), ("fit_intercept", ("True", "False")),
         ("solver", ("auto", "svd", "cholesky")), ("max_iter", ("None", "1000")),
         ("random_state", SEEDS)),
        REGRESSOR_METRICS,
    ),
    Estimator(
        "KNeighborsClassifier",
        "sklearn.neighbors._classification.KNeighborsClassifier",
        (("n_neighbors", ("3", "5", "11")), ("weights", ("uniform", "distance")),
         ("algorithm", ("auto", "ball_tree", "kd_tree")), ("leaf_size", ("30", "60")),
         ("p", ("1", "2"))),
        CLASSIFIER_METRICS,
    ),
)  # fmt: skip
# sklearn autolog makes a GridSearchCV parent run with one child per candidate.
GRID_SEARCH = Estimator(
    "GridSearchCV",
    "sklearn.model_selection._search.GridSearchCV",
    (("cv", ("3", "5")), ("n_jobs", ("None", "-1")), ("refit", ("True",)),
     ("scoring", ("accuracy", "neg_mean_squared_error", "f1")), ("estimator", ())),
    (),
)  # fmt: skip


@dataclass(slots=True)
class PlannedRun:
    """One run as the generator means it: what MLflow's API would have been told."""

    run_id: str
    experiment_id: str
    name: str
    user: str
    status: str
    start_time: int
    end_time: int | None
    deleted: bool
    tags: dict[str, str]  # mlflow.runName, mlflow.user and mlflow.parentRunId included
    params: dict[str, str]
    history: list[tuple[str, float, int, int]]  # (key, value, timestamp, step), as logged
    parent_id: str | None = None


@dataclass
class ExperimentInfo:
    experiment_id: str
    artifact_location: str
    weight: float


@dataclass
class GeneratedStore:
    path: Path
    uri: str
    runs: int
    experiment_ids: list[str]
    seconds: float
    plans: list[PlannedRun] = field(default_factory=list)  # only when keep_plans=True


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def sanitize_metric_value(value: float) -> tuple[int, float]:
    """(is_nan, stored value), as SqlAlchemyStore.sanitize_metric_value stores a metric."""
    if math.isnan(value):
        return 1, 0.0
    if math.isinf(value):
        return 0, FLOAT_MAX if value > 0 else -FLOAT_MAX
    return 0, value


def latest_points(history: Iterable[tuple[str, float, int, int]]) -> dict[str, tuple]:
    """key -> (is_nan, stored value, timestamp, step) of the latest point of each key: the
    greatest (step, timestamp, stored value), as MLflow's latest_metrics keeps it."""
    latest: dict[str, tuple] = {}
    for key, value, timestamp, step in history:
        is_nan, stored = sanitize_metric_value(value)
        old = latest.get(key)
        if old is None or (step, timestamp, stored) > (old[3], old[2], old[1]):
            latest[key] = (is_nan, stored, timestamp, step)
    return latest


class RunPlanner:
    """Plans runs with the shapes real ones have, deterministically from a seed."""

    def __init__(
        self,
        experiments: list[ExperimentInfo],
        rng: random.Random,
        until_ms: int,
        diverged_share: float = DIVERGED_SHARE,
    ) -> None:
        self.experiments = experiments
        self.diverged_share = diverged_share
        self.weights = [e.weight for e in experiments]
        self.rng = rng
        self.until_ms = until_ms  # no time of any run lies after this

    def new_run_id(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4).hex

    def run_name(self) -> str:
        rng = self.rng
        return f"{rng.choice(PREDICATES)}-{rng.choice(NOUNS)}-{rng.randint(0, 1000)}"

    def families(self, count: int, start_ms: int) -> Iterator[list[PlannedRun]]:
        """Top-level runs with their children, `count` runs in all, started from start_ms."""
        made = 0
        while made < count:
            family = self.family(count - made, start_ms)
            made += len(family)
            yield family

    def family(self, room: int, start_ms: int) -> list[PlannedRun]:
        rng = self.rng
        experiment = rng.choices(self.experiments, self.weights)[0]
        start = rng.randrange(start_ms, self.until_ms)
        user = rng.choices(USERS, USER_WEIGHTS)[0]
        source = self.source_tags(user)
        # ~10% of top-level runs are a GridSearchCV parent with 2-6 children.
        children = rng.randint(2, 6) if rng.random() < 0.10 else 0
        children = min(children, room - 1)
        base = rng.choice(ESTIMATORS)
        if children:
            parent = self.run(experiment, GRID_SEARCH, start, user, source, None, base)
            family = [parent]
            offset = start
            for _ in range(children):
                offset = min(offset + rng.randint(1_000, 60_000), self.until_ms)
                family.append(self.run(experiment, base, offset, user, source, parent, None))
            self.cover_children(parent, family[1:])
            return family
        return [self.run(experiment, base, start, user, source, None, None)]

    def source_tags(self, user: str) -> dict[str, str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.7:
            kind, name = "LOCAL", rng.choice(["train.py", f"/home/{user}/project/train.py"])
        elif roll < 0.9:
            kind, name = "NOTEBOOK", f"/Users/{user}/notebooks/explore.ipynb"
        else:
            kind, name = "JOB", "nightly_retrain.py"
        tags = {"mlflow.source.type": kind, "mlflow.source.name": name}
        if kind != "NOTEBOOK":
            tags["mlflow.source.git.commit"] = f"{rng.getrandbits(160):040x}"
        return tags

    def status(self) -> str:
        roll = self.rng.random()
        if roll < 0.86:
            return "FINISHED"
        if roll < 0.94:
            return "FAILED"
        if roll < 0.97:
            return "RUNNING"  # crashed processes leave runs RUNNING for good
        return "KILLED"

    def run(
        self,
        experiment: ExperimentInfo,
        estimator: Estimator,
        start: int,
        user: str,
        source: dict[str, str],
        parent: PlannedRun | None,
        child_estimator: Estimator | None,
    ) -> PlannedRun:
        rng = self.rng
        run_id = self.new_run_id()
        name = self.run_name()
        status = self.status()
        duration = int(rng.lognormvariate(11, 1.2))  # median ~1 min, long tail to hours
        last_time = min(start + duration, self.until_ms)
        end = None if status == "RUNNING" else last_time
        tags = {"mlflow.runName": name, "mlflow.user": user, **source}
        tags["estimator_name"] = estimator.name
        tags["estimator_class"] = estimator.dotted_class
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.run_id
        if rng.random() < 0.02:
            tags["mlflow.note.content"] = f"retry of {self.run_name()} with <new> features & ünï"
        params = {}
        for key, values in estimator.params:
            if values:
                params[key] = rng.choice(values)
            else:  # GridSearchCV's estimator param names the searched estimator
                params[key] = f"{child_estimator.name}()" if child_estimator else "None"
        metrics = estimator.metrics or (child_estimator.metrics if child_estimator else ())
        history = self.metric_history(metrics, start, last_time)
        return PlannedRun(
            run_id=run_id,
            experiment_id=experiment.experiment_id,
            name=name,
            user=user,
            status=status,
            start_time=start,
            end_time=end,
            deleted=rng.random() < 0.03,
            tags=tags,
            params=params,
            history=history,
            parent_id=parent.run_id if parent else None,
        )

    def metric_history(
        self, keys: tuple[str, ...], start: int, end: int
    ) -> list[tuple[str, float, int, int]]:
        """One point for the first three keys, 3-8 steps for the last two (loss curves)."""
        rng = self.rng
        span = max(end - start, 10)
        history: list[tuple[str, float, int, int]] = []
        for key in keys[:3]:
            history.append((key, round(rng.random(), 6), end, 0))
        steps = rng.randint(3, 8)
        diverged = rng.random() < self.diverged_share
        for key in keys[3:]:
            level = rng.uniform(0.5, 2.0)
            for step in range(steps):
                timestamp = start + span * (step + 1) // (steps + 1)
                value = round(level * 0.7**step + rng.random() * 0.01, 6)
                if diverged and step == steps - 1:
                    value = math.nan if key == "loss" else math.inf
                history.append((key, value, timestamp, step))
        if len(keys) > 3 and rng.random() < RELOGGED_SHARE:
            # the newest point is not the latest one: MLflow's latest is by step first
            history.append((keys[3], round(rng.random(), 6), end, 0))
        return history

    def cover_children(self, parent: PlannedRun, children: list[PlannedRun]) -> None:
        """A parent ends after its last child, as a GridSearchCV run does."""
        if parent.end_time is None:
            return
        ends = [c.end_time for c in children if c.end_time is not None]
        if ends and max(ends) > parent.end_time:
            parent.end_time = min(max(ends) + 1_000, self.until_ms)
            keys = tuple(dict.fromkeys(key for key, *_ in parent.history))
            parent.history = self.metric_history(keys, parent.start_time, parent.end_time)


def artifact_uri(experiment: ExperimentInfo, run_id: str) -> str:
    from mlflow.utils.uri import append_to_uri_path

    return append_to_uri_path(experiment.artifact_location, run_id, "artifacts")


def write_runs(
    con: sqlite3.Connection,
    runs: list[PlannedRun],
    experiments: dict[str, ExperimentInfo],
    deleted_at: int,
) -> None:
    """Insert planned runs into MLflow's tables in the shapes SqlAlchemyStore writes."""
    run_rows, tag_rows, param_rows, metric_rows, latest_rows = [], [], [], [], []
    for run in runs:
        run_id = run.run_id
        run_rows.append(
            (
                run_id, run.name, "UNKNOWN", "", "", run.user, run.status, run.start_time,
                run.end_time, "", "deleted" if run.deleted else "active",
                artifact_uri(experiments[run.experiment_id], run_id), int(run.experiment_id),
                min(deleted_at, (run.end_time or run.start_time) + DAY_MS) if run.deleted else None,
            )
        )  # fmt: skip
        tag_rows.extend((key, value, run_id) for key, value in run.tags.items())
        param_rows.extend((key, value, run_id) for key, value in run.params.items())
        for key, value, timestamp, step in run.history:
            is_nan, stored = sanitize_metric_value(value)
            metric_rows.append((key, stored, timestamp, run_id, step, is_nan))
        for key, (is_nan, stored, timestamp, step) in latest_points(run.history).items():
            latest_rows.append((key, stored, timestamp, step, is_nan, run_id))
    con.executemany(
        "insert into runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
        "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
        "experiment_id, deleted_time) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        run_rows,
    )
    con.executemany('insert into tags ("key", value, run_uuid) values (?, ?, ?)', tag_rows)
    con.executemany('insert into params ("key", value, run_uuid) values (?, ?, ?)', param_rows)
    con.executemany(
        'insert into metrics ("key", value, timestamp, run_uuid, step, is_nan) '
        "values (?, ?, ?, ?, ?, ?)",
        metric_rows,
    )
    con.executemany(
        'insert into latest_metrics ("key", value, timestamp, step, is_nan, run_uuid) '
        "values (?, ?, ?, ?, ?, ?)",
        latest_rows,
    )


def bulk_connection(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    # Only this process touches the file while generating; a crash leaves a temp file.
    con.execute("pragma journal_mode = off")
    con.execute("pragma synchronous = off")
    con.execute("pragma cache_size = -524288")  # 512 MiB: random-key index inserts
    return con


def create_experiments(uri: str, count: int, rng: random.Random) -> list[ExperimentInfo]:
    """Experiments through MLflow's API, with the tags teams put on them; sizes vary."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    made = []
    for index in range(count):
        domain = DOMAINS[index % len(DOMAINS)]
        tags = {"team": rng.choice(["growth", "risk", "platform", "research"])}
        if index % 2 == 0:
            tags["mlflow.experiment.primaryMetric.name"] = "val_accuracy"
            tags["mlflow.experiment.primaryMetric.greaterIsBetter"] = "True"
        if index % 5 == 0:
            tags["mlflow.note.content"] = f"{domain} models, v{index // len(DOMAINS) + 1}"
        experiment_id = client.create_experiment(f"{domain}-model-{index:02d}", tags=tags)
        experiment = client.get_experiment(experiment_id)
        made.append(ExperimentInfo(experiment_id, experiment.artifact_location, 0.0))
    # A few big experiments, many small ones, as real stores have.
    for experiment in made:
        experiment.weight = min(rng.paretovariate(1.2), 50.0)
    return made


def active_experiments(uri: str) -> list[ExperimentInfo]:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    found = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50_000)
    return [
        ExperimentInfo(e.experiment_id, e.artifact_location, 1.0)
        for e in found
        if e.experiment_id != "0"
    ]


def insert_planned(
    path: Path,
    planner: RunPlanner,
    count: int,
    start_ms: int,
    keep_plans: bool,
) -> list[PlannedRun]:
    by_id = {e.experiment_id: e for e in planner.experiments}
    kept: list[PlannedRun] = []
    con = bulk_connection(path)
    try:
        chunk: list[PlannedRun] = []
        for family in planner.families(count, start_ms):
            chunk.extend(family)
            if len(chunk) >= CHUNK_RUNS:
                write_chunk(con, chunk, by_id, planner.until_ms)
                kept.extend(chunk if keep_plans else ())
                chunk = []
        if chunk:
            write_chunk(con, chunk, by_id, planner.until_ms)
            kept.extend(chunk if keep_plans else ())
    finally:
        con.close()
    return kept


def write_chunk(
    con: sqlite3.Connection,
    chunk: list[PlannedRun],
    experiments: dict[str, ExperimentInfo],
    deleted_at: int,
) -> None:
    con.execute("begin")
    write_runs(con, chunk, experiments, deleted_at)
    con.execute("commit")


def generate_store(
    path: Path,
    runs: int,
    experiments: int = 50,
    seed: int = 0,
    deleted_experiments: int = 1,
    now_ms: int | None = None,
    keep_plans: bool = False,
    diverged_share: float = DIVERGED_SHARE,
) -> GeneratedStore:
    """A new store at `path` with `runs` runs across `experiments` experiments, started over
    the last 60 days; the last `deleted_experiments` experiments are then deleted."""
    from mlflow import MlflowClient

    began = time.perf_counter()
    if path.exists():
        raise FileExistsError(f"{path} exists; the generator only makes new stores")
    uri = sqlite_uri(path)
    client = MlflowClient(uri)
    client.search_experiments()  # runs MLflow's migrations: the schema is MLflow's own
    rng = random.Random(seed)
    made = create_experiments(uri, experiments, rng)
    end_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    start_ms = end_ms - SPREAD_DAYS * DAY_MS
    planner = RunPlanner(made, rng, end_ms, diverged_share)
    plans = insert_planned(path, planner, runs, start_ms, keep_plans)
    for experiment in made[len(made) - deleted_experiments :] if deleted_experiments else []:
        client.delete_experiment(experiment.experiment_id)
    return GeneratedStore(
        path, uri, runs, [e.experiment_id for e in made], time.perf_counter() - began, plans
    )


def add_runs(path: Path, runs: int, seed: int = 1, keep_plans: bool = False) -> GeneratedStore:
    """`runs` new runs in the store's active experiments, started within the last minute:
    what lands between two extracts."""
    began = time.perf_counter()
    uri = sqlite_uri(path)
    made = active_experiments(uri)
    now = int(time.time() * 1000)
    planner = RunPlanner(made, random.Random(seed), now)
    plans = insert_planned(path, planner, runs, now - 60_000, keep_plans)
    return GeneratedStore(
        path, uri, runs, [e.experiment_id for e in made], time.perf_counter() - began, plans
    )


def cached_store(
    runs: int, experiments: int = 50, seed: int = 0, cache_dir: Path = CACHE_DIR
) -> tuple[Path, float | None]:
    """The cached store for these numbers, generated first if missing.

    Returns its path and the generation time in seconds (None when it came from the cache).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = f"mlflow-v{GENERATOR_VERSION}-{runs}runs-{experiments}exp-seed{seed}.db"
    path = cache_dir / name
    if path.exists():
        return path, None
    tmp = cache_dir / f".{name}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        made = generate_store(tmp, runs, experiments, seed)
        tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path, made.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="Write here instead of the cache.")
    args = parser.parse_args()
    if args.out:
        made = generate_store(args.out, args.runs, args.experiments, args.seed)
        print(f"{made.uri}: {args.runs} runs in {made.seconds:.1f} s")
        return
    path, seconds = cached_store(args.runs, args.experiments, args.seed)
    took = "already cached" if seconds is None else f"generated in {seconds:.1f} s"
    print(f"sqlite:///{path}: {args.runs} runs, {took}")


if __name__ == "__main__":
    main()
