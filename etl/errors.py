"""One exception hierarchy, caught once in the CLI and printed as one line with a hint."""

from __future__ import annotations

import json
import re

from etl.redact import redact_text

# the one redaction (etl.redact), under the name the CLI's log filter imports
scrub_credentials = redact_text


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


# DuckDB puts some errors' details in a JSON object after the message's first words
_JSON_DETAIL = re.compile(r"\{.*\}")


def driver_message(exc: BaseException) -> str:
    """The first line of a driver's error in words: DuckDB's JSON detail
    ({"exception_message": ...}) replaced by its message, the class name if it is empty."""
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    match = _JSON_DETAIL.search(text)
    if match:
        try:
            detail = json.loads(match.group(0))
        except ValueError:
            return text
        if isinstance(detail, dict) and detail.get("exception_message"):
            text = text[: match.start()].rstrip(" :") + ": " + str(detail["exception_message"])
    return text


def write_failed(path: object, exc: OSError) -> JobFailed:
    """An OS error while writing `path` (a full disk, a quota, no permission), as one line
    naming the path, which is left as it was."""
    reason = exc.strerror or str(exc)
    return JobFailed(
        f"writing {path} failed: {reason}; {path} is unchanged",
        "Free space on its disk or fix its permissions (or choose another folder), then try again",
    )


class LockHeld(RunreportError):
    """Another run holds the warehouse lock; cron tries again next time: exit 75."""

    exit_code = 75


# What is true after Ctrl-C, by command: each writes its files aside and renames them in.
AFTER_INTERRUPT = {
    "extract": "the previous warehouse is unchanged",
    "run": "the warehouse and the report are each the previous or the new one, whole; "
    "the mail may or may not have gone out",
    "report": "the report folder is the previous report or the new one, whole",
    "email": "the report folder is the previous report or the new one, whole; "
    "the mail may or may not have gone out",
    "sql": "nothing was changed (runreport sql only reads)",
    "views": "nothing was changed",
    "alerts": "what was recorded as sent is not sent again; the rest goes at the next run",
    "export": "the Parquet export folder is the previous export or the new one, whole",
    "seed": "the tracking store may hold part of the demo runs; run runreport seed again",
    "demo": "the demo folder may be incomplete; run runreport demo again",
}


def interrupted_message(command: str | None) -> str:
    """The line printed on Ctrl-C: what is true for the command that was interrupted."""
    after = AFTER_INTERRUPT.get(command or "")
    return f"runreport: interrupted; {after}" if after else "runreport: interrupted"
