"""`expq export`: matching runs, or their losses or metrics as a long table, as CSV or JSON on
stdout."""

from __future__ import annotations

import os
import sys

import click

from service.commands.common import open_engine
from service.commands.runs import filter_options, run_filter
from service.errors import InputError


@click.command()
@filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv or json, written to stdout.",
)
@click.option(
    "--losses",
    is_flag=True,
    help="Export the losses of the matching runs' winning attempts, one row per value "
    "(run_id, epoch, split, timestep, value), instead of the runs.",
)
@click.option(
    "--metrics",
    is_flag=True,
    help="Export the metrics of the matching runs' winning attempts, one row per value "
    "(run_id, epoch, split, name, timestep, value), instead of the runs.",
)
def export(
    experiment: str | None,
    task: str | None,
    model: str | None,
    status: str | None,
    where: str | None,
    fmt: str,
    losses: bool,
    metrics: bool,
) -> None:
    """Export runs with their hyperparameters, tags and summary (or --losses, or --metrics),
    streamed."""
    from service.metrics_read import iter_metrics
    from service.output import export_losses, export_metrics, export_runs
    from service.store import iter_losses, iter_runs, tag_keys

    if losses and metrics:
        raise InputError("give --losses or --metrics, not both")
    chosen = run_filter(experiment, task, model, status, where)
    engine = open_engine()
    try:
        if losses:
            export_losses(iter_losses(engine, chosen), fmt)
        elif metrics:
            export_metrics(iter_metrics(engine, chosen), fmt)
        else:
            export_runs(iter_runs(engine, chosen), fmt, tag_keys(engine, chosen))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (`| head`) left: stop quietly, and keep Python's exit flush from failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
