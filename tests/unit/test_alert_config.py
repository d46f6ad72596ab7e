"""[[channels]], [[alerts]], [alerting], report.channels and [[mail.digests]]: defaults
filled in, and one clear error line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.alerts import mail_digest_routes
from etl.config import resolve
from etl.errors import ConfigError

SLACK = '[[channels]]\nname = "ml-team"\nkind = "slack"\nurl_env = "RUNREPORT_SLACK_URL"\n'


def read(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "runreport.toml"
    path.write_text(text)
    return resolve(path, {}, environ={})


def test_every_kind_gets_its_defaults(tmp_path: Path) -> None:
    kinds = [
        "metric_regression", "new_best", "best_removed", "failure_rate", "stuck_runs",
        "trace_error_rate", "latency_p95_ms", "assessment_pass_rate", "daily_cost",
    ]  # fmt: skip
    rules = "".join(
        f'[[alerts]]\nname = "{kind}"\nkind = "{kind}"\nchannels = ["ml-team"]\n' for kind in kinds
    )
    config = read(tmp_path, SLACK + rules)
    options = {rule.name: dict(rule.options) for rule in config.alerts}
    assert options["metric_regression"] == {
        "metric": None, "threshold": None, "relative": None, "zscore": 3.0, "baseline_runs": 20,
    }  # fmt: skip
    assert options["failure_rate"] == {
        "window_hours": 24.0, "max_failed": 3, "max_rate": None, "min_runs": 5,
    }  # fmt: skip
    assert options["trace_error_rate"] == {"window_hours": 24.0, "max_rate": 0.1, "min_traces": 20}
    assert options["latency_p95_ms"] == {"window_hours": 24.0, "max_ms": 10000.0, "min_traces": 20}
    assert options["assessment_pass_rate"] == {
        "window_hours": 24.0, "min_rate": 0.8, "min_assessments": 20, "assessments": [],
    }  # fmt: skip
    assert options["daily_cost"] == {"window_hours": 24.0, "max_usd": 100.0}
    assert options["new_best"] == options["stuck_runs"] == {}
    assert config.alert_max_attempts == 24 and config.alert_retries == 2


def test_a_threshold_replaces_the_default_zscore(tmp_path: Path) -> None:
    rule = (
        '[[alerts]]\nname = "r"\nkind = "metric_regression"\nthreshold = 0.02\n'
        'channels = ["ml-team"]\n'
    )
    (alert,) = read(tmp_path, SLACK + rule).alerts
    assert (alert.option("threshold"), alert.option("zscore")) == (0.02, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[alerts]]\nname = "r"\nkind = "metric_regresion"\nchannels = ["ml-team"]\n',
            "[[alerts]] 'r': kind must be 'metric_regression' or",
        ),
        (
            '[[alerts]]\nname = "r"\nkind = "new_best"\nthreshold = 1\nchannels = ["ml-team"]\n',
            "[[alerts]] 'r' has unknown keys ['threshold']",
        ),
        (
            '[[alerts]]\nname = "r"\nkind = "stuck_runs"\nchannels = ["ops"]\n',
            "[[alerts]] 'r' names the channel 'ops', which no [[channels]] table has",
        ),
        (
            '[[alerts]]\nname = "r"\nkind = "metric_regression"\nthreshold = 1\nzscore = 2\n'
            'channels = ["ml-team"]\n',
            "give one of threshold, relative and zscore, not ['threshold', 'zscore']",
        ),
        (
            '[[alerts]]\nname = "r"\nkind = "failure_rate"\nmax_rate = "high"\n'
            'channels = ["ml-team"]\n',
            "[[alerts]] 'r': max_rate must be a number, not 'high'",
        ),
        ('[report]\nchannels = ["ops"]\n', "report.channels names the channel 'ops'"),
    ],
)
def test_rule_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, SLACK + text)
    assert message in caught.value.one_line()
    assert "\n" not in caught.value.one_line()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[channels]]\nname = "x"\nkind = "slack"\nurl = "https://hooks.slack.com/services/T/B/s3cret"\n',
            "a webhook URL holds a secret and is never written in the config",
        ),
        ('[[channels]]\nname = "x"\nkind = "discord"\nurl_env = "U"\n', "kind must be 'slack'"),
        ('[[channels]]\nname = "x"\nkind = "slack"\n', "url_env is missing"),
        (
            '[[channels]]\nname = "x"\nkind = "slack"\nurl_env = "no such"\n',
            "must name an environment variable",
        ),
        (
            '[[channels]]\nname = "x"\nkind = "email"\nurl_env = "U"\n',
            "has unknown keys ['url_env']",
        ),
        ('[[channels]]\nname = "x"\nkind = "email"\n', "to must be a list of text values"),
        (SLACK, "[[channels]] 'ml-team': the name is used twice"),
    ],
)
def test_channel_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, SLACK + text)
    assert message in caught.value.one_line()
    assert "s3cret" not in caught.value.one_line()


def test_mail_digests_route_each_team_its_experiments(tmp_path: Path) -> None:
    config = read(
        tmp_path,
        '[mail]\nto = ["leads@example.com"]\n'
        '[[mail.digests]]\nto = ["churn@example.com"]\nexperiments = ["churn*"]\n'
        '[[mail.digests]]\nto = ["vision@example.com", "cv@example.com"]\n'
        'experiments = ["cifar*", "imagenet"]\n'
        '[[mail.digests]]\nto = ["nlp@example.com"]\nexperiments = ["bert*"]\n',
    )
    names = ["churn-model", "churn-v2", "cifar10", "imagenet", "x"]
    routes = mail_digest_routes(config, [("default", name) for name in names])
    assert [(r.to, r.experiments) for r in routes] == [
        (("churn@example.com",), ["churn-model", "churn-v2"]),
        (("vision@example.com", "cv@example.com"), ["cifar10", "imagenet"]),
    ]


def test_mail_digests_route_each_team_its_workspaces(tmp_path: Path) -> None:
    """A digest by workspace gets every experiment of its workspaces; with globs too, those
    of its workspaces the globs cover (experiment names repeat across workspaces)."""
    config = read(
        tmp_path,
        '[[mail.digests]]\nto = ["a@example.com"]\nworkspaces = ["team-a"]\n'
        '[[mail.digests]]\nto = ["b@example.com"]\nworkspaces = ["team-b"]\n'
        'experiments = ["churn*"]\n'
        '[[mail.digests]]\nto = ["c@example.com"]\nworkspaces = ["team-c"]\n',
    )
    experiments = [("team-a", "churn"), ("team-a", "vision"), ("team-b", "churn"), ("team-b", "x")]
    routes = mail_digest_routes(config, experiments)
    assert [(r.to, r.experiments, r.workspaces) for r in routes] == [
        (("a@example.com",), ["churn", "vision"], ("team-a",)),
        (("b@example.com",), ["churn"], ("team-b",)),
    ]


def test_a_channel_experiments_filter_is_read(tmp_path: Path) -> None:
    config = read(
        tmp_path, SLACK.replace('kind = "slack"', 'kind = "slack"\nexperiments = ["churn*"]')
    )
    assert config.channels[0].experiments == ("churn*",)
