"""The Celery task: thin, it takes a run id and hands it to the runner."""

from __future__ import annotations

import logging

from service.config import load_settings
from service.db import get_engine
from workers.app import TRAIN_TASK, app
from workers.runner import execute_run

log = logging.getLogger(__name__)


@app.task(name=TRAIN_TASK)
def train_run(run_id: int) -> str | None:
    """Train run `run_id`; a redelivered or stale message finds the claim held and does nothing."""
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        log.error("train_run: ignoring a message whose run id is not an integer: %r", run_id)
        return None
    settings = load_settings()
    return execute_run(get_engine(settings.database_url), run_id, settings)
