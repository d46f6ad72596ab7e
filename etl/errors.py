"""One exception hierarchy, caught once in the CLI and printed as one line with a hint."""

from __future__ import annotations


class RunreportError(Exception):
    """A failure the user can act on. `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message}. {self.hint}"
        return " ".join(text.split())


class JobFailed(RunreportError):
    """The job ran and failed (unreachable server, bad query, SMTP refusal): exit 1."""


class ConfigError(RunreportError):
    """Bad usage or configuration (wrong URI scheme, missing store, bad config key): exit 2."""

    exit_code = 2


class LockHeld(RunreportError):
    """Another run holds the warehouse lock; cron tries again next time: exit 75."""

    exit_code = 75
