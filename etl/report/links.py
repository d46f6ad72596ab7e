"""Where the report links to: the MLflow UI's page of each entity it has one for (runs,
experiments, a nested search's children compared, registered models and their versions,
logged models, an experiment's traces), as the UI's routes spell them
(mlflow/server/js/src/experiment-tracking/routes.ts and model-registry/routes.ts), and the
address the report folder is served at (`report.public_url`), so no page names a local
path.

The UI address: `--ui-url`, RUNREPORT_UI_URL or `report.mlflow_ui_url`; without one,
the tracking URI of the newest extract when it is http(s) (the UI is served there), with
any credentials, query and fragment removed; otherwise none, and names show unlinked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from etl.errors import ConfigError
from etl.report.model import INDEX_HTML

# The most runs a compare-runs link names; a larger search links to the experiment's runs
# filtered to the parent's children (a URL of thousands of ids helps no one).
COMPARE_AT_MOST = 100


def check_url(url: str, what: str) -> str:
    """An http(s) URL without a trailing slash, or a ConfigError naming `what`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{what} must be an http(s) URL, not {url!r}",
            f"Set {what} to e.g. https://mlflow.example.com",
        )
    return url.strip().rstrip("/")


def ui_from_tracking_uri(uri: str | None) -> str | None:
    """The MLflow UI of an http(s) tracking URI: no user, password, query or fragment."""
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class Links:
    ui: str | None = None
    public: str | None = None  # the URL of this report folder

    @classmethod
    def resolve(cls, ui_url: str | None, public_url: str | None, tracking_uri: str | None) -> Links:
        ui = check_url(ui_url, "the MLflow UI URL") if ui_url else None
        public = check_url(public_url, "report.public_url") if public_url else None
        return cls(ui or ui_from_tracking_uri(tracking_uri), public)

    def experiment(self, experiment_id: object) -> str:
        if not self.ui or experiment_id is None:
            return ""
        return f"{self.ui}/#/experiments/{quote(str(experiment_id), safe='')}"

    def run(self, run_id: object, experiment_id: object) -> str:
        base = self.experiment(experiment_id)
        if not base or not run_id:
            return ""
        return f"{base}/runs/{quote(str(run_id), safe='')}"

    def model_version(self, name: object, version: object) -> str:
        """A registered model version; empty when the UI is unknown."""
        if not self.ui or name is None or version is None:
            return ""
        model, number = quote(str(name), safe=""), quote(str(version), safe="")
        return f"{self.ui}/#/models/{model}/versions/{number}"

    def registered_model(self, name: object) -> str:
        if not self.ui or name is None:
            return ""
        return f"{self.ui}/#/models/{quote(str(name), safe='')}"

    def logged_model(self, model_id: object, experiment_id: object) -> str:
        base = self.experiment(experiment_id)
        if not base or not model_id:
            return ""
        return f"{base}/models/{quote(str(model_id), safe='')}"

    def prompt(self, name: object, version: object = None) -> str:
        """A prompt in the registry (MLflow 3's prompts page), at `version` if given."""
        if not self.ui or name is None:
            return ""
        url = f"{self.ui}/#/prompts/{quote(str(name), safe='')}"
        return f"{url}?version={quote(str(version), safe='')}" if version is not None else url

    def traces(self, experiment_id: object) -> str:
        """The experiment's traces tab."""
        base = self.experiment(experiment_id)
        return f"{base}/traces" if base else ""

    def children(self, parent_id: object, experiment_id: object, child_ids: Sequence[str]) -> str:
        """A nested search's children side by side on MLflow's compare-runs page; past
        COMPARE_AT_MOST of them, the experiment's runs filtered to the parent's children."""
        base = self.experiment(experiment_id)
        if not base or not parent_id or not child_ids:
            return ""
        if len(child_ids) > COMPARE_AT_MOST:
            search = f"tags.mlflow.parentRunId = '{parent_id}'"
            return f"{base}?searchFilter={quote(search, safe='')}"
        runs = quote(json.dumps(list(child_ids), separators=(",", ":")), safe="")
        experiments = quote(json.dumps([str(experiment_id)]), safe="")
        return f"{self.ui}/#/compare-runs?runs={runs}&experiments={experiments}"

    def report_file(self, name: str = INDEX_HTML) -> str:
        return f"{self.public}/{name}" if self.public else ""
