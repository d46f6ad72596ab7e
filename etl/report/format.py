"""How values read in the report: the Jinja filters the templates use.

Every filter returns plain text (escaped by Jinja's autoescape) except `cut` and
`short_id`, which build their markup from escaped parts themselves.
"""

from __future__ import annotations

import math

from markupsafe import Markup, escape

from etl.report.links import Links
from etl.report.model import STATUSES, Clock, Window
from etl.values import float_text

CUT_AT = 80


def metric(value: float | int | None) -> str:
    """A metric value: NaN, ∞ and −∞ spelled out, otherwise up to 6 significant digits."""
    return "" if value is None else float_text(float(value), "html")


def count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def duration(seconds: float | None) -> str:
    """1 h 05 min, 3 min 20 s, 12 s: precise enough to tell a crash from a real run."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"{max(seconds, 0):.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def hours(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:,.1f} h" if value < 48 else f"{value / 24:,.1f} d"


def window_words(window: Window) -> str:
    """What the window covers, as a heading reads it: "in the last 7 days", "since ..."."""
    if window.since:
        return f"since {window.since.isoformat()}"
    return f"in the last {window.days} day{'s' if window.days != 1 else ''}"


def cut(value: object, limit: int = CUT_AT) -> Markup:
    """Text cut to `limit` characters with an ellipsis; the whole value in a title."""
    if value is None:
        return Markup("")
    text = str(value)
    if len(text) <= limit:
        return escape(text)
    return Markup('<span title="{}">{}…</span>').format(text, text[: limit - 1])


def short_id(run_id: str | None) -> Markup:
    """The first 8 characters of a run id (enough to find it), the whole id on hover."""
    if not run_id:
        return Markup("")
    return Markup('<code title="{}">{}</code>').format(run_id, run_id[:8])


def plain_cut(value: object, limit: int = 60) -> str:
    """For the plain-text summary: no markup, just the ellipsis."""
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_class(status: str | None) -> str:
    return f"badge-{status.lower()}" if status and status in STATUSES else "badge-other"


def signed(value: float | None) -> str:
    """A change in a metric: +0.0123, −0.5 (6 significant digits)."""
    if value is None:
        return ""
    text = metric(value)
    return text.replace("-", "−") if text.startswith("-") else "+" + text


def rate(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f} %"


def filters(clock: Clock, links: Links) -> dict[str, object]:
    return {
        "run_url": links.run,
        "experiment_url": links.experiment,
        "signed": signed,
        "rate": rate,
        "metric": metric,
        "count": count,
        "duration": duration,
        "hours": hours,
        "when": clock.when,
        "day": clock.day,
        "window_words": window_words,
        "cut": cut,
        "short_id": short_id,
        "plain_cut": plain_cut,
        "status_class": status_class,
    }
