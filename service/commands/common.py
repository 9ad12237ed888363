"""What several commands share: the engine, waiting on runs, terminal statuses."""

from __future__ import annotations

import time

import click

from service.config import load_settings
from service.errors import InputError
from service.progress import TERMINAL


def open_engine(*, create: bool = False):  # noqa: ANN202 - sqlalchemy.Engine, imported lazily
    """The configured database; only commands that submit pass `create`, so that a read never
    makes a database (a typo in a path is an error, not an empty history)."""
    from service.db import get_engine

    return get_engine(load_settings().database_url, create=create)


def wait_for(
    engine, run_ids: list[int], timeout: float | None, quiet: bool = False
) -> dict[int, str]:  # noqa: ANN001
    """Poll the store until every run is terminal or the deadline passes; their statuses."""
    from service.store import run_statuses

    deadline = None if timeout is None else time.monotonic() + timeout
    reported: dict[int, str] = {}
    while True:
        statuses = run_statuses(engine, run_ids)
        missing = [run_id for run_id in run_ids if run_id not in statuses]
        if missing:
            raise InputError(f"no run with id {missing[0]}")
        if not quiet:
            for run_id, status in statuses.items():
                if reported.get(run_id) != status:
                    click.echo(f"run {run_id}: {status}", err=True)
            reported = dict(statuses)
        if all(status in TERMINAL for status in statuses.values()):
            return statuses
        if deadline is not None and time.monotonic() >= deadline:
            return statuses
        time.sleep(0.5)
