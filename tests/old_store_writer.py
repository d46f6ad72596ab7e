"""Write a small store with whatever MLflow runs this script (tests/old_mlflow.py runs it
with MLflow 2.16, 3.0, ... in their own environments): only APIs MLflow 2.16 has.

usage: python old_store_writer.py TRACKING_URI
"""

import math
import sys

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param


def main(uri: str) -> None:
    client = MlflowClient(uri)
    alpha = client.create_experiment("alpha", tags={"team": "växjö"})
    gone = client.create_experiment("gone")

    def run(experiment: str, name: str, **tags: str) -> str:
        created = client.create_run(experiment, run_name=name, tags=tags)
        return created.info.run_id

    plain = run(alpha, "plain", owner="ana")
    client.log_batch(
        plain,
        metrics=[
            Metric("loss", value, 1_700_000_000_000 + step, step)
            for step, value in enumerate([0.9, 0.5, 0.2])
        ],
        params=[Param("alpha", "0.5")],
    )
    odd = run(alpha, "odd metrics")
    client.log_batch(
        odd,
        metrics=[
            Metric("nan", math.nan, 1_700_000_000_000, 0),
            Metric("pinf", math.inf, 1_700_000_000_000, 0),
            Metric("ninf", -math.inf, 1_700_000_000_000, 0),
        ],
    )
    parent = run(alpha, "search")
    child = run(alpha, "child", **{"mlflow.parentRunId": parent})
    client.log_metric(child, "score", 0.8)
    data = Dataset("diabetes", "d-train", "code", '{"file": "train.csv"}', None, None)
    client.log_inputs(plain, [DatasetInput(data, [InputTag("mlflow.data.context", "training")])])
    for run_id in (plain, odd, parent, child):
        client.set_terminated(run_id)
    failed = run(alpha, "failed")
    client.set_terminated(failed, status="FAILED")
    run(alpha, "running")
    deleted = run(alpha, "deleted")
    client.delete_run(deleted)
    run(gone, "in deleted experiment")
    client.delete_experiment(gone)


if __name__ == "__main__":
    main(sys.argv[1])
