"""The one redaction (etl.redact): fast checks of what it hides and what it keeps."""

from __future__ import annotations

import pytest

from etl.errors import JobFailed, scrub_credentials
from etl.extract.tracking import redact
from etl.redact import is_secret_key, redact_text, redact_uri, remember_secrets_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "API request to http://alice:s3cret@127.0.0.1:5000/api/2.0/mlflow/runs/search failed",
            "API request to http://alice:***@127.0.0.1:5000/api/2.0/mlflow/runs/search failed",
        ),
        ("http://alice:s3/cr#t?x@host:5000/", "http://alice:***@host:5000/"),
        (
            "see 'http://bob:p@ss:w0rd@h.example.org/x' now",
            "see 'http://bob:***@h.example.org/x' now",
        ),
        ("https://ghp_T0KEN@github.com/org/repo", "https://***@github.com/org/repo"),
        ("postgresql+psycopg2://u:pw@db:5432/mlflow", "postgresql+psycopg2://u:***@db:5432/mlflow"),
        (
            "http://[::1]:5000 and http://u:pw@[::1]:5000/",
            "http://[::1]:5000 and http://u:***@[::1]:5000/",
        ),
        ("http://h/x?key=abc&page=2", "http://h/x?key=***&page=2"),
        ("http://h/x?page=2&TOKEN=abc#frag", "http://h/x?page=2&TOKEN=***"),
        ("http://h/x?Password=a/b%20c", "http://h/x?Password=***"),
        (
            "http://h/?access_token=a&api_key=b&apikey=c&sig=d&secret=e",
            "http://h/?access_token=***&api_key=***&apikey=***&sig=***&secret=***",
        ),
        (
            "s3://b/o?X-Amz-Signature=f00&X-Amz-Credential=AKIA",
            "s3://b/o?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("('http://h/?token=abc')", "('http://h/?token=***')"),
    ],
)
def test_secrets_in_free_text_are_hidden(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert scrub_credentials(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:///mlflow.db",
        "sqlite:////abs/path/runs.db",
        "file:///home/me/mlruns",
        "http://127.0.0.1:5000/api/2.0/mlflow/runs/search?max_results=1000&page_token=",
        "mail oncall@example.com about http://host:5000",
        "http://h/?monkey=banana&keyboard=1",
        "models:/name@champion",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


def test_a_uri_alone_may_hold_spaces_in_its_password() -> None:
    assert redact_uri("http://alice:two words@host:5000") == "http://alice:***@host:5000"
    assert redact("http://alice:s3/cr#t?x@host:5000/") == "http://alice:***@host:5000/"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"


def test_secret_environment_values_are_hidden_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-9f8e7d")
    monkeypatch.setenv("RUNREPORT_SMTP_PASSWORD", "abc")  # too short to hide safely
    assert redact_text("Bearer tok-9f8e7d rejected (abc)") == "Bearer *** rejected (abc)"


def test_secret_keys() -> None:
    assert all(map(is_secret_key, ["token", "Refresh_Token", "x-amz-signature", "client.secret"]))
    assert not any(map(is_secret_key, ["monkey", "page_token_count", "tokens", "keyboard"]))


def test_error_one_line_is_redacted() -> None:
    error = JobFailed("extract from http://u:pw@h:1/?token=t failed", "retry")
    assert error.one_line() == "extract from http://u:***@h:1/?token=*** failed. retry"


def test_item3_a_password_with_a_space_is_hidden_by_its_value() -> None:
    """Issue 23, item 3: no pattern expects a space in a password; the value is known."""
    uri = "postgresql://alice:pa ss%20w0rd@db.example.org:5432/mlflow"
    remember_secrets_of(uri)
    message = "could not connect: password 'pa ss w0rd' rejected for pa ss%20w0rd"
    assert redact_text(message) == "could not connect: password '***' rejected for ***"
    assert "pa ss" not in redact_text(f"failed: {uri}")


@pytest.mark.parametrize("key", ["sessionid", "api_key", "access_token", "session", "jwt"])
def test_item13_secret_query_names_are_hidden(key: str) -> None:
    assert redact_text(f"http://h/ui?{key}=abcd1234&page=2") == f"http://h/ui?{key}=***&page=2"
