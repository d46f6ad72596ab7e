"""One exception hierarchy, caught once in the CLI and printed as one line with a hint."""

from __future__ import annotations

import re

# user:password@ (or a lone token@) inside any URI in a message, e.g. one MLflow quotes
_URI_CREDENTIALS = re.compile(r"://([^/@\s:]+)(:[^/@\s]*)?@")


def scrub_credentials(text: str) -> str:
    """The text with every URI's password (or lone token) replaced by ***."""
    return _URI_CREDENTIALS.sub(
        lambda m: f"://{m.group(1)}:***@" if m.group(2) else "://***@", text
    )


class RunreportError(Exception):
    """A failure the user can act on. `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message}. {self.hint}"
        return scrub_credentials(" ".join(text.split()))


class JobFailed(RunreportError):
    """The job ran and failed (unreachable server, bad query, SMTP refusal): exit 1."""


class ConfigError(RunreportError):
    """Bad usage or configuration (wrong URI scheme, missing store, bad config key): exit 2."""

    exit_code = 2


class LockHeld(RunreportError):
    """Another run holds the warehouse lock; cron tries again next time: exit 75."""

    exit_code = 75
