"""`expq watch`: a live view of runs, refreshed from the database, until they all end."""

from __future__ import annotations

import sys
import time

import click

from service.commands.common import open_engine
from service.errors import InputError
from service.progress import PROGRESS_COLUMNS, TERMINAL, progress_line, progress_row


def _fetch(engine, run_ids: tuple[int, ...], experiment: str | None) -> list:  # noqa: ANN001
    from service.store import get_run, list_runs

    if experiment is not None:
        runs = list_runs(engine, experiment=experiment, sort="id", descending=False, limit=None)
        if not runs:
            raise InputError(f"experiment {experiment!r} has no runs")
        return runs
    runs = [get_run(engine, run_id) for run_id in run_ids]
    missing = [run_id for run_id, run in zip(run_ids, runs, strict=True) if run is None]
    if missing:
        raise InputError(f"no run with id {missing[0]}")
    return runs


def _table(runs: list):  # noqa: ANN202 - a rich Table
    from rich.table import Table

    done = sum(run.status in TERMINAL for run in runs)
    table = Table(title=f"{done}/{len(runs)} runs finished", header_style="bold")
    for name in PROGRESS_COLUMNS:
        table.add_column(name)
    for run in runs:
        table.add_row(*progress_row(run))
    return table


def watch_runs(run_ids: tuple[int, ...], experiment: str | None, interval: float) -> list:
    """Refresh until every run is terminal: a live table on a terminal, else a line per change."""
    from rich.console import Console
    from rich.live import Live

    engine = open_engine()
    runs = _fetch(engine, run_ids, experiment)
    console = Console()
    if console.is_terminal:
        with Live(_table(runs), console=console, auto_refresh=False) as live:
            while not all(run.status in TERMINAL for run in runs):
                time.sleep(interval)
                runs = _fetch(engine, run_ids, experiment)
                live.update(_table(runs), refresh=True)
        return runs
    shown: dict[int, str] = {}
    while True:
        for run in runs:
            line = progress_line(run)
            if shown.get(run.id) != line:
                shown[run.id] = line
                click.echo(line)
        if all(run.status in TERMINAL for run in runs):
            return runs
        time.sleep(interval)
        runs = _fetch(engine, run_ids, experiment)


@click.command()
@click.argument("run_ids", type=int, nargs=-1)
@click.option("--experiment", help="Watch every run of this experiment.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
def watch(run_ids: tuple[int, ...], experiment: str | None, interval: float) -> None:
    """Follow runs live until they all end: exit 0 when all succeeded, 1 otherwise."""
    if bool(run_ids) == bool(experiment):
        raise InputError("give run ids or --experiment, not both and not neither")
    runs = watch_runs(run_ids, experiment, interval)
    if not all(run.status == "succeeded" for run in runs):
        sys.exit(1)
