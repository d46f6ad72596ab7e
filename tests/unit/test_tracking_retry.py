"""tracking.retries onto MLflow's HTTP retries: within tracking.timeout_seconds, always."""

from __future__ import annotations

import pytest

from etl.errors import ConfigError
from etl.extract.tracking import TrackingRetry, configure_tracking_client, tracking_retry


@pytest.mark.parametrize("seconds", [1, 2, 5, 10, 29, 30, 31, 60, 300, 3600])
@pytest.mark.parametrize("retries", [0, 1, 3, 10])
def test_every_attempt_wait_and_backoff_fit_in_the_budget(seconds: int, retries: int) -> None:
    plan = tracking_retry(seconds, retries)
    assert plan.longest() <= seconds
    assert 0 <= plan.retries <= retries
    assert plan.attempt_timeout >= min(5, seconds // (plan.retries + 1))


def test_the_default_settings_keep_three_retries_with_backoff() -> None:
    assert tracking_retry(300, 3) == TrackingRetry(3, 1, 1.0, 73)
    assert tracking_retry(60, 3).mlflow_variables() == {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1.0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "13",
    }


def test_more_retries_than_mlflow_allows_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at most 10"):
        tracking_retry(300, 11)


def test_a_variable_the_user_set_wins_and_ours_are_replaced() -> None:
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5"}
    plan = configure_tracking_client(300, 3, env)
    assert plan.retries == 5 and env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "73"
    configure_tracking_client(60, 3, env)  # a second job in the same process
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "13"
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"


def test_the_check_reads_mlflows_variables_and_defaults() -> None:
    assert TrackingRetry.from_environment({}) == TrackingRetry(7, 2, 1.0, 120)
    garbled = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "many", "MLFLOW_HTTP_REQUEST_TIMEOUT": "0"}
    assert TrackingRetry.from_environment(garbled) == TrackingRetry(7, 2, 1.0, 1)
