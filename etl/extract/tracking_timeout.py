"""A bounded wait on the tracking server (the setting `tracking.timeout_seconds`).

MLflow's HTTP client waits 120 s per attempt and retries 7 times with backoff: a server that
accepts connections and never answers held the job for 20 minutes. The budget is the
longest one request to the server may take, retries and their backoff included; MLflow's
own variables (MLFLOW_HTTP_REQUEST_TIMEOUT, _MAX_RETRIES, _BACKOFF_FACTOR, _BACKOFF_JITTER)
are set from it unless the user set them. The bound holds for a server that is silent
(the usual hang); one that trickles a byte at a time can outlast it, since the timeout
applies to each wait for data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

RETRIES_FROM = 30  # a shorter budget is one attempt: retries would leave each too little time
RETRIES = 2
BACKOFF_FACTOR = 1  # urllib3 sleeps 0 s, then 2 s (+ up to JITTER) between the attempts
JITTER = 1.0


def mlflow_http_settings(seconds: int) -> dict[str, str]:
    """MLflow's HTTP variables that keep one request, retries included, within `seconds`."""
    if seconds < RETRIES_FROM:
        attempts, backoff, jitter, sleeping = 1, 0, 0.0, 0.0
    else:
        attempts, backoff, jitter = RETRIES + 1, BACKOFF_FACTOR, JITTER
        sleeping = BACKOFF_FACTOR * 2 ** (RETRIES - 1) + JITTER
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int((seconds - sleeping) // attempts))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(attempts - 1),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(backoff),
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": str(jitter),
    }


def bound_tracking_wait(seconds: int, environ: MutableMapping[str, str] | None = None) -> int:
    """Set MLflow's HTTP variables for the budget (before any request); returns it."""
    env = os.environ if environ is None else environ
    for name, value in mlflow_http_settings(seconds).items():
        env.setdefault(name, value)  # one the user set wins: they asked MLflow for it
    # each retry would log a warning; the failure itself is the one line the job prints
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    return seconds
