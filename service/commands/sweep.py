"""`expq sweep`: a grid or a random search, replicated over seeds, validated as a whole; or, with
--search, an adaptive study (service/commands/study.py), seen and stopped by its subcommands."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from service.commands.common import open_engine
from service.commands.submit import parse_tags, queueing_options, raw_spec, spec_options
from service.config import load_settings
from service.errors import BrokerUnavailable, InputError
from service.output import print_json, print_table
from service.search_space import SEARCHES

PLAN_ROWS = 50  # a dry run's table stops here: rendering is most of its time beyond
QUEUE_BATCH = 500  # runs stored in one transaction and published over one producer


class _SweepGroup(click.Group):
    """`expq sweep [OPTIONS]` queues a sweep; `expq sweep status|stop EXPERIMENT` are commands."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[OPTIONS] | status|stop EXPERIMENT")


@click.group(cls=_SweepGroup, invoke_without_command=True)
@spec_options
@click.option("--data", type=click.Path(path_type=Path), help="Training data, JSONL.")
@click.option("--val-data", type=click.Path(path_type=Path), help="Validation data, JSONL.")
@click.option(
    "--grid", "mode", flag_value="grid", default=True, help="Every combination (default)."
)
@click.option(
    "--random",
    "random_count",
    type=click.IntRange(1, 10_000),
    help="Sample this many points from the lists and ranges.",
)
@click.option(
    "--range",
    "ranges",
    multiple=True,
    metavar="NAME=LOW:HIGH[:log]",
    help="A numeric range to sample with --random; repeat for more.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Replicate every point over this many seeds (from --seed on).",
)
@click.option(
    "--early-stop",
    "early_stop",
    help="Stop a run after this many epochs without a better val loss (the same as --patience).",
)
@click.option(
    "--search",
    type=click.Choice(SEARCHES),
    help="Adaptive search: a study whose next trials an Optuna sampler proposes as earlier "
    "ones end, over the lists and --range options.",
)
@click.option(
    "--trials",
    type=click.IntRange(1, 10_000),
    help="With --search: the trials of the study in all (a grid's size by default).",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 1_000),
    default=1,
    show_default=True,
    help="With --search: the trials in flight at once.",
)
@click.option(
    "--objective",
    metavar="FIELD[:min|max]",
    help="With --search: the run field to optimise (default best_val_loss:min; metric fields "
    "are maximised by default).",
)
@click.option(
    "--prune",
    type=click.Choice(["median", "asha"]),
    help="Stop a run whose val loss is above its peers' median at that epoch (median), or "
    "outside the best 1/reduction of its peers at a rung (asha). Peers: the study's trials, "
    "or the sweep experiment's runs of the same task and loss.",
)
@click.option(
    "--prune-min-epochs",
    type=click.IntRange(1, 100_000),
    help="ASHA: the epochs of its first rung (1 by default); rungs follow at x reduction.",
)
@click.option(
    "--prune-reduction",
    type=click.IntRange(2, 100),
    help="ASHA: the reduction factor; the best 1/N of a rung go on (3 by default).",
)
@click.option(
    "--prune-warmup",
    type=click.IntRange(0, 100_000),
    default=1,
    show_default=True,
    help="Epochs before pruning may stop a run.",
)
@click.option(
    "--max-runs",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Refuse a sweep of more runs than this (points x seeds), counted before anything "
    "is built.",
)
@click.option("--experiment", help="Experiment to add the runs to (default: a new one).")
@queueing_options
@click.option(
    "--dry-run",
    is_flag=True,
    help=f"Print the runs the sweep would queue (a table shows the first {PLAN_ROWS}; "
    "--json lists all); queue none.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.option(
    "--wait",
    is_flag=True,
    help="With --search: wait until the study ends, then print its status.",
)
@click.pass_context
def sweep(
    ctx: click.Context,
    data: Path | None,
    val_data: Path | None,
    mode: str,
    random_count: int | None,
    ranges: tuple[str, ...],
    seeds: int,
    early_stop: str | None,
    search: str | None,
    trials: int | None,
    parallel: int,
    objective: str | None,
    prune: str | None,
    prune_min_epochs: int | None,
    prune_reduction: int | None,
    prune_warmup: int,
    max_runs: int,
    experiment: str | None,
    tags: tuple[str, ...],
    priority: int,
    dry_run: bool,
    as_json: bool,
    wait: bool,
    **options: Any,
) -> None:
    """Queue a sweep: any option may be a list (--lr 0.01,0.1), ranges need --random N or
    --search."""
    from service.submit import prepare_spec, read_data_file
    from service.sweep import expand, parse_range

    if ctx.invoked_subcommand is not None:
        return
    raw = raw_spec(options)
    if early_stop is not None:
        raw["patience"] = early_stop
    if prune is not None:
        raw |= {"prune": prune, "prune_warmup": prune_warmup}
    name = experiment or f"sweep-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if search is not None:
        if random_count is not None or seeds != 1:
            raise InputError("--search proposes its own points: drop --random and --seeds")
        from service.commands.study import queue_study
        from service.study_plan import SearchOptions

        chosen = SearchOptions(
            search, trials, parallel, objective, prune, prune_min_epochs, prune_reduction
        )
        queue_study(
            raw,
            [parse_range(text) for text in ranges],
            chosen,
            experiment=name,
            data=data,
            val_data=val_data,
            priority=priority,
            tags=parse_tags(tags),
            dry_run=dry_run,
            as_json=as_json,
            wait=wait,
        )
        return
    given = {"--trials": trials, "--objective": objective, "--prune-min-epochs": prune_min_epochs}
    given |= {"--prune-reduction": prune_reduction, "--wait": wait or None}
    given |= {"--parallel": None if parallel == 1 else parallel}
    stray = [option for option, value in given.items() if value is not None]
    if stray:
        raise InputError(f"{stray[0]} goes with --search")
    points, distinct = expand(
        raw,
        ranges=[parse_range(text) for text in ranges],
        random_count=random_count,
        seeds=seeds,
        max_runs=max_runs,
    )
    read_once = functools.cache(read_data_file)
    prepared = []
    for number, point in enumerate(points, start=1):
        try:
            prepared.append(prepare_spec(point, data, val_data, read_once))
        except InputError as exc:
            raise InputError(f"sweep point {number} of {len(points)}: {exc}") from None
    summary = f"{distinct} points x {seeds} seeds = {len(prepared)} runs"
    if dry_run:
        if as_json:
            print_json([spec.to_dict() for spec, _ in prepared])
            return
        _print_plan(prepared, summary)
        return
    runs, interrupted = _queue_all(prepared, name, parse_tags(tags), priority)
    if as_json:
        print_json([run.to_json() for run in runs])
    else:
        click.echo(" ".join(str(run.id) for run in runs))
    if interrupted:
        click.echo(
            f"interrupted: {len(runs)} of {len(prepared)} runs queued in experiment {name}, "
            f"each with its message; the other {len(prepared) - len(runs)} were not stored",
            err=True,
        )
        sys.exit(130)
    click.echo(f"{summary} queued in experiment {name}", err=True)


def _print_plan(prepared: list, summary: str) -> None:
    params = [spec.params() for spec, _ in prepared]
    varying = [name for name in params[0] if any(p[name] != params[0][name] for p in params)]
    shown = f" (the first {PLAN_ROWS} shown; --json lists all)" if len(params) > PLAN_ROWS else ""
    print_table(
        f"dry run: {summary}{shown}",
        ["#", *varying],
        ([k + 1, *[p[name] for name in varying]] for k, p in enumerate(params[:PLAN_ROWS])),
    )


@contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """Ctrl-C sets the event rather than raising, so that a sweep stops between two runs and
    never between a run's insert and its message; a second Ctrl-C raises at once."""
    stop = threading.Event()

    def interrupted(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _queue_all(prepared: list, name: str, tags: dict[str, str], priority: int) -> tuple[list, bool]:
    """Store and publish the runs in batches; the runs queued, and whether Ctrl-C stopped it
    (between two batches: a batch is stored and published whole)."""
    from service.store import NewRun, save_dataset
    from service.submit import submit_batch
    from workers.app import make_app
    from workers.dispatch import queue_for_device

    app = make_app(load_settings().broker_url)
    engine = open_engine(create=True)
    check_broker(app)
    for digest, content in {d: c for _, files in prepared for d, c in files.items()}.items():
        save_dataset(engine, digest, content)  # once for the sweep, not once a run
    runs: list = []
    with _stop_on_interrupt() as stop:
        for start in range(0, len(prepared), QUEUE_BATCH):
            if stop.is_set():
                return runs, True
            batch = [
                (spec, NewRun(name, queue_for_device(spec.device), priority, tags))
                for spec, _ in prepared[start : start + QUEUE_BATCH]
            ]
            try:
                runs += submit_batch(engine, app, name, batch)
            except BrokerUnavailable as exc:
                raise BrokerUnavailable(
                    f"{exc}; {len(runs)} of {len(prepared)} runs were queued in experiment {name}"
                ) from exc
    return runs, False


def check_broker(app) -> None:  # noqa: ANN001 - a Celery app
    """Fail before the first run is stored when the broker is down, so no sweep is half queued."""
    from service.config import mask_url

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:  # noqa: BLE001 - kombu raises many transport errors
        raise BrokerUnavailable(f"broker unreachable at {mask_url(app.conf.broker_url)}") from exc


def _add_study_commands() -> None:
    from service.commands.study import status, stop

    sweep.add_command(status)
    sweep.add_command(stop)


_add_study_commands()
