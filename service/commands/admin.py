"""Running expq itself: the worker, the database schema, the demo."""

from __future__ import annotations

import sys

import click

from service.config import MAX_FUSE, Settings, load_settings
from service.errors import InputError
from service.output import format_option


@click.command()
@click.option("--queues", help="Comma-separated: cpu, gpu, auto. Default: from the hardware.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Runs trained at once by this worker.",
)
@click.option(
    "--fuse",
    type=click.IntRange(1, MAX_FUSE),
    help=f"Runs of one shape and data each training process trains at once as one fused group;"
    f" 1 turns fusion off. Default: $EXPQ_FUSE, else {Settings.fuse}.",
)
@click.option("--loglevel", default="INFO", show_default=True, help="Celery log level.")
def worker(queues: str | None, concurrency: int, fuse: int | None, loglevel: str) -> None:
    """Start a Celery worker that trains queued runs."""
    from workers.command import (
        WorkerConfigError,
        cuda_available,
        resolve_queues,
        run_worker,
        wait_for_database,
    )

    # Only the queues need the probe before start; otherwise it runs once the worker is up.
    has_cuda = cuda_available() if not queues or "gpu" in queues else None
    try:
        chosen = resolve_queues(queues, bool(has_cuda))
    except WorkerConfigError as exc:
        raise InputError(str(exc)) from None
    wait_for_database(
        load_settings().database_url, lambda line: click.echo(f"expq worker: {line}", err=True)
    )
    run_worker(chosen, concurrency, loglevel, has_cuda, fuse)


@click.command()
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds to wait for the workers to answer.",
)
@format_option()
def workers(timeout: float, fmt: str) -> None:
    """List the live workers: their queues, concurrency, device and the runs they train."""
    from service.output import print_csv, print_json, print_table
    from workers.app import make_app
    from workers.control import INFO_COMMAND
    from workers.dispatch import broker_error

    app = make_app()
    try:
        replies = app.control.broadcast(INFO_COMMAND, reply=True, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - kombu raises many transport errors
        raise broker_error(app, exc) from None
    found = sorted(
        ({"worker": name, **info} for reply in replies or [] for name, info in reply.items()),
        key=lambda info: info["worker"],
    )
    if fmt == "json":
        print_json(found)
        return
    header = ["worker", "queues", "concurrency", "device", "active_runs", "uptime_s"]
    rows = [
        [
            info["worker"],
            ",".join(info.get("queues", [])),
            info.get("concurrency"),
            info.get("device"),
            " ".join(str(run["run_id"]) for run in info.get("active_runs", [])) or "-",
            info.get("uptime_seconds"),
        ]
        for info in found
    ]
    if fmt == "csv":
        print_csv(header, rows)
        return
    if not found:
        click.echo(f"no live workers answered within {timeout:g}s", err=True)
        return
    print_table(f"live workers: {len(found)}", header, rows)


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
    default=None,
    help="Epochs per demo run, instead of each task's default (10 to 20).",
)
def demo(epochs: int | None) -> None:
    """Train every task x model pair on an embedded broker and SQLite, then show the results."""
    from service.demo import run_demo

    sys.exit(run_demo(epochs))
