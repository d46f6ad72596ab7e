"""How values read in the report: the Jinja filters the templates use, and the one-line
headline of a report (the mail's subject leads with it).

Every filter returns plain text (escaped by Jinja's autoescape) except `cut`, `name_cut`
and `short_id`, which build their markup from escaped parts themselves.

Experiment names are cut in the middle ("churn-model-…-retrain-v2"), where names that
share a prefix still differ, and never so that two names look the same (`NameCutter`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup, escape

from etl.redact import redact_text
from etl.report.links import Links
from etl.report.model import STATUSES, Clock, Window
from etl.values import float_text

CUT_AT = 80
ID_SHOWN = 8  # characters of a run id the report shows
# the keys of a dataset source's JSON (MLflow's DatasetSource.to_json) that name its place
SOURCE_KEYS = ("uri", "url", "path", "delta_table_name", "table_name")


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
    return Markup('<code title="{}">{}</code>').format(run_id, run_id[:ID_SHOWN])


def named(name: object, ident: str | None, limit: int = 40) -> str:
    """A run for the plain-text summary: its name, or its short id when it has none."""
    if name:
        return plain_cut(name, limit)
    return (ident or "")[:ID_SHOWN]


def middle_cut(text: str, limit: int, head: int | None = None) -> str:
    """`text` in at most `limit` characters, cut with an ellipsis after its first `head`
    characters (default: in the middle)."""
    if len(text) <= limit:
        return text
    head = max(limit // 2, 1) if head is None else head
    tail = max(limit - 1 - head, 0)
    return text[:head] + "…" + (text[len(text) - tail :] if tail else "")


class NameCutter:
    """Names cut in the middle so that no two look alike: where two cut to the same text,
    the cut moves towards where they differ, and they keep more characters when no cut of
    that length tells them apart (at worst, whole)."""

    def __init__(self, names: Iterable[object] = ()) -> None:
        self.names = {str(name) for name in names if name is not None}
        self._shown: dict[int, dict[str, str]] = {}

    def cut(self, name: str, limit: int) -> str:
        if len(name) <= limit:
            return name
        if name not in self.names:  # not among the names given: take it in
            self.names.add(name)
            self._shown.clear()
        if limit not in self._shown:
            self._shown[limit] = self._distinct(limit)
        return self._shown[limit][name]

    def _distinct(self, limit: int) -> dict[str, str]:
        shown = {name: middle_cut(name, limit) for name in self.names}
        for _ in range(len(self.names) + 1):  # each round settles a group (or makes it whole)
            alike: dict[str, list[str]] = defaultdict(list)
            for name, text in shown.items():
                alike[text].append(name)
            clashes = [names for names in alike.values() if len(names) > 1]
            if not clashes:
                return shown
            for names in clashes:
                shown.update(_apart(names, limit))
        return {name: name for name in self.names}  # cuts kept meeting: every name whole


def _apart(names: list[str], limit: int) -> dict[str, str]:
    """The shortest cuts (at least `limit` long) that tell these names apart, the
    ellipsis as near the middle as that allows."""
    longest = max(len(name) for name in names)
    for width in range(limit, longest):
        middle = max(width // 2, 1)
        heads = sorted(range(1, width - 1), key=lambda head: abs(head - middle))
        for head in heads:
            texts = {name: middle_cut(name, width, head) for name in names}
            if len(set(texts.values())) == len(names):
                return texts
    return {name: name for name in names}


def dataset_uri(source: str | None) -> str:
    """Where a dataset came from, read from its source JSON as MLflow stores it
    ({"uri": ...}, {"url": ...}, {"path": ...}; else its first text value): "" when it
    names no place (a code source's tags); any credentials in it hidden."""
    if not source:
        return ""
    try:
        parsed = json.loads(source)
    except ValueError:
        return redact_text(source)
    if not isinstance(parsed, dict):
        return ""
    texts = [parsed.get(key) for key in SOURCE_KEYS] + list(parsed.values())
    place = next((text for text in texts if isinstance(text, str) and text.strip()), "")
    return redact_text(place)


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


def plural(count_: int, word: str) -> str:
    return f"{count_:,} {word}{'' if count_ == 1 else 's'}"


def in_words(names: list[str]) -> str:
    """ "a", "a and b", "a, b and 3 more experiments": experiment names for a headline."""
    shown = [middle_cut(name, 40) for name in names[:2]]
    if len(names) <= 2:
        return " and ".join(shown)
    return f"{', '.join(shown)} and {plural(len(names) - 2, 'more experiment')}"


def headline(figures: Mapping[str, Any], changes: Mapping[str, Any] | None) -> str:
    """The report's most important news on one line, most important first, as the mail's
    subject leads with it: "New best in churn-model; 3 new runs since the last report, 1
    failed". `figures` and `changes` as report.json holds them."""
    news = ["the last extract failed"] if figures.get("extract_failure") else []
    told = len(news)
    if changes is None:
        news.append(
            f"first report: {plural(figures.get('new_runs') or 0, 'new run')} in the last "
            f"{plural(figures.get('window_days') or 0, 'day')}, {figures.get('failed') or 0} "
            "failed"
        )
    else:
        for key, words in (("new_best", "new best in"), ("best_removed", "best run removed in")):
            names = [str(row.get("experiment_name")) for row in changes.get(key) or []]
            if names:
                news.append(f"{words} {in_words(names)}")
        for key, word, words in (
            ("new_stuck", "run", "newly stuck"),
            ("new_parents_left_open", "parent", "newly left open"),
        ):
            if changes.get(key):
                news.append(f"{plural(len(changes[key]), word)} {words}")
        runs = figures.get("new_runs_since_previous") or 0
        failed = len(changes.get("new_failures") or [])
        if runs or failed:
            news.append(f"{plural(runs, 'new run')} since the last report, {failed} failed")
        elif len(news) == told:
            news.append("nothing new since the last report")
    text = "; ".join(news)
    return text[:1].upper() + text[1:]


def filters(clock: Clock, links: Links, names: NameCutter | None = None) -> dict[str, object]:
    cutter = names or NameCutter()

    def name_cut(value: object, limit: int = CUT_AT) -> Markup:
        """An experiment name cut in the middle, never like another's; whole on hover."""
        if value is None:
            return Markup("")
        text = str(value)
        shown = cutter.cut(text, limit)
        if shown == text:
            return escape(text)
        return Markup('<span title="{}">{}</span>').format(text, shown)

    def plain_name(value: object, limit: int = 60) -> str:
        return "" if value is None else cutter.cut(" ".join(str(value).split()), limit)

    return {
        "name_cut": name_cut,
        "plain_name": plain_name,
        "named": named,
        "as_of": clock.as_of,
        "dataset_uri": dataset_uri,
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
