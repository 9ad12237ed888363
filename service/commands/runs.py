"""`expq runs ...`: querying and managing runs."""

from __future__ import annotations

import sys

import click

from service.commands.common import TERMINAL, open_engine, wait_for
from service.errors import InputError
from service.output import emit_losses, emit_run_detail, emit_runs, format_option


@click.group()
def runs() -> None:
    """Query and manage runs."""


@runs.command("list")
@click.option("--experiment", help="Only this experiment.")
@click.option("--task", help="Only this task type.")
@click.option("--model", help="Only this model.")
@click.option(
    "--status", type=click.Choice(["queued", "running", *TERMINAL]), help="Only this status."
)
@click.option("--sort", default="id:desc", show_default=True, help="FIELD[:asc|desc].")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=50,
    show_default=True,
    help="At most this many runs.",
)
@format_option()
def runs_list(
    experiment: str | None,
    task: str | None,
    model: str | None,
    status: str | None,
    sort: str,
    limit: int,
    fmt: str,
) -> None:
    """List runs, newest first."""
    from service.store import RUN_SORT_FIELDS, list_runs

    field, _, direction = sort.partition(":")
    if field not in RUN_SORT_FIELDS or direction not in ("", "asc", "desc"):
        raise InputError(
            f"--sort takes FIELD[:asc|desc] with FIELD one of {', '.join(RUN_SORT_FIELDS)}"
        )
    found = list_runs(
        open_engine(),
        experiment=experiment,
        task=task,
        model=model,
        status=status,
        sort=field,
        descending=direction != "asc",
        limit=limit,
    )
    emit_runs(found, fmt, title=f"{len(found)} runs")


def existing_run(engine, run_id: int):  # noqa: ANN001, ANN202
    from service.store import get_run

    run = get_run(engine, run_id)
    if run is None:
        raise InputError(f"no run with id {run_id}")
    return run


@runs.command("show")
@click.argument("run_id", type=int)
@format_option(choices=("table", "json"))
def runs_show(run_id: int, fmt: str) -> None:
    """Show one run: its record, spec, loss curve and last per-timestep losses."""
    from service.store import get_losses

    engine = open_engine()
    run = existing_run(engine, run_id)
    emit_run_detail(run, get_losses(engine, run_id), fmt)


@runs.command("losses")
@click.argument("run_id", type=int)
@click.option("--split", type=click.Choice(["train", "val"]), help="Only this split.")
@click.option("--epoch", default="all", show_default=True, help="An epoch number, last or all.")
@format_option()
def runs_losses(run_id: int, split: str | None, epoch: str, fmt: str) -> None:
    """Per-timestep losses L_t and total losses L of a run (timestep empty for L)."""
    from service.store import get_losses

    if epoch not in ("all", "last") and not epoch.isdigit():
        raise InputError(f"--epoch takes a number, last or all; got {epoch!r}")
    engine = open_engine()
    existing_run(engine, run_id)
    emit_losses(get_losses(engine, run_id, split=split, epoch=epoch), fmt)


@runs.command("wait")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(0), help="Give up after this many seconds.")
def runs_wait(run_ids: tuple[int, ...], timeout: float | None) -> None:
    """Wait until the runs end: exit 0 when all succeeded, 1 otherwise."""
    statuses = wait_for(open_engine(), list(run_ids), timeout)
    if not all(status == "succeeded" for status in statuses.values()):
        sys.exit(1)


@runs.command("cancel")
@click.argument("run_id", type=int)
def runs_cancel(run_id: int) -> None:
    """Cancel a queued or running run; a running one stops within seconds."""
    from service.lifecycle import cancel_run

    before = cancel_run(open_engine(), run_id)
    if before is None:
        raise InputError(f"no run with id {run_id}")
    if before not in ("queued", "running"):
        raise InputError(f"run {run_id} already ended {before}")
    click.echo(f"run {run_id}: cancelled (was {before})")
