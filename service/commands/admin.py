"""Running expq itself: the worker, the database schema, the demo."""

from __future__ import annotations

import sys

import click

from service.config import load_settings
from service.errors import InputError


@click.command()
@click.option("--queues", help="Comma-separated: cpu, gpu, auto. Default: from the hardware.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Runs trained at once by this worker.",
)
@click.option("--loglevel", default="INFO", show_default=True, help="Celery log level.")
def worker(queues: str | None, concurrency: int, loglevel: str) -> None:
    """Start a Celery worker that trains queued runs."""
    from workers.command import WorkerConfigError, cuda_available, resolve_queues, run_worker

    needs_probe = not queues or "gpu" in queues
    try:
        chosen = resolve_queues(queues, cuda_available() if needs_probe else False)
    except WorkerConfigError as exc:
        raise InputError(str(exc)) from None
    run_worker(chosen, concurrency, loglevel)


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from service.db import current_revision, head_revision, make_engine, upgrade

    engine = make_engine(load_settings().database_url)
    upgrade(engine)
    click.echo(f"database at revision {current_revision(engine)} (head {head_revision()})")


@click.command()
@click.option(
    "--epochs",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Epochs per demo run.",
)
def demo(epochs: int) -> None:
    """Train every task x model pair on an embedded broker and SQLite, then show the results."""
    from service.demo import run_demo

    sys.exit(run_demo(epochs))
