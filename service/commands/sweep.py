"""`expq sweep`: a grid or a random search, replicated over seeds, validated as a whole."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from service.commands.common import open_engine
from service.commands.submit import parse_tags, queueing_options, raw_spec, spec_options
from service.config import load_settings
from service.errors import BrokerUnavailable, InputError
from service.output import print_json, print_table


@click.command()
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
    "--prune",
    type=click.Choice(["median"]),
    help="Stop a run whose val loss is above the median of the sweep's other runs at that epoch.",
)
@click.option(
    "--prune-warmup",
    type=click.IntRange(0, 100_000),
    default=1,
    show_default=True,
    help="Epochs before pruning may stop a run.",
)
@click.option("--experiment", help="Experiment to add the runs to (default: a new one).")
@queueing_options
@click.option("--dry-run", is_flag=True, help="Print the runs the sweep would queue; queue none.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
def sweep(
    data: Path | None,
    val_data: Path | None,
    mode: str,
    random_count: int | None,
    ranges: tuple[str, ...],
    seeds: int,
    early_stop: str | None,
    prune: str | None,
    prune_warmup: int,
    experiment: str | None,
    tags: tuple[str, ...],
    priority: int,
    dry_run: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Queue a sweep: any option may be a list (--lr 0.01,0.1), ranges need --random N."""
    from service.submit import prepare_spec, read_data_file
    from service.sweep import expand, parse_range

    raw = raw_spec(options)
    if early_stop is not None:
        raw["patience"] = early_stop
    if prune is not None:
        raw |= {"prune": prune, "prune_warmup": prune_warmup}
    points, distinct = expand(
        raw,
        ranges=[parse_range(text) for text in ranges],
        random_count=random_count,
        seeds=seeds,
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
    runs = _queue_all(prepared, experiment, parse_tags(tags), priority)
    if as_json:
        print_json([run.to_json() for run in runs])
        return
    click.echo(" ".join(str(run.id) for run in runs))
    click.echo(f"{summary} queued in experiment {runs[0].experiment}", err=True)


def _print_plan(prepared: list, summary: str) -> None:
    varying = sorted(
        {
            name
            for spec, _ in prepared
            for name, value in spec.params().items()
            if value != prepared[0][0].params()[name]
        }
    )
    print_table(
        f"dry run: {summary}",
        ["#", *varying],
        (
            [k + 1, *[spec.params()[name] for name in varying]]
            for k, (spec, _) in enumerate(prepared)
        ),
    )


def _queue_all(prepared: list, experiment: str | None, tags: dict[str, str], priority: int) -> list:
    from service.store import NewRun
    from service.submit import submit_spec
    from workers.app import make_app
    from workers.dispatch import queue_for_device

    name = experiment or f"sweep-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    app = make_app(load_settings().broker_url)
    engine = open_engine(create=True)
    _check_broker(app)
    runs = []
    for spec, files in prepared:
        new = NewRun(
            experiment=name, queue=queue_for_device(spec.device), priority=priority, tags=tags
        )
        try:
            runs.append(submit_spec(engine, app, spec, files, new))
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"{exc}; {len(runs)} of {len(prepared)} runs were queued in experiment {name}"
            ) from exc
    return runs


def _check_broker(app) -> None:  # noqa: ANN001 - a Celery app
    """Fail before the first run is stored when the broker is down, so no sweep is half queued."""
    from service.config import mask_url

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:  # noqa: BLE001 - kombu raises many transport errors
        raise BrokerUnavailable(f"broker unreachable at {mask_url(app.conf.broker_url)}") from exc
