"""The `expq` command line. Submitting and querying never import torch."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from service import __version__
from service.config import load_settings
from service.errors import ExpqError, InputError
from service.output import emit_losses, emit_run_detail, emit_runs, format_option, print_json

TERMINAL = ("succeeded", "failed", "diverged", "cancelled")
# submit option → spec field; every one is validated by models.spec, not by Click, so a bad
# value of any kind gets the same one-line error.
SPEC_OPTIONS: tuple[tuple[str, str], ...] = (
    ("task", "Task type: binary, sentiment, captioning or translation."),
    ("model", "Network: mlp or rnn."),
    ("cell", "Recurrent cell for --model rnn: rnn, lstm or gru."),
    ("hidden", "Hidden units per layer."),
    ("layers", "Number of hidden (or recurrent) layers."),
    ("activation", "MLP activation: relu, tanh or sigmoid."),
    ("dropout", "Dropout probability in [0, 1)."),
    ("lr", "SGD learning rate (> 0)."),
    ("momentum", "SGD momentum in [0, 1)."),
    ("weight-decay", "SGD weight decay (L2)."),
    ("epochs", "Number of training epochs."),
    ("batch-size", "Mini-batch size."),
    ("loss", "Loss: mse (on one-hot targets) or cross_entropy."),
    ("seq-len", "Sequence length / dependency distance of the built-in task."),
    ("samples", "Size of the built-in dataset (train + val)."),
    ("seed", "Random seed for data, initialisation and dropout."),
    ("device", "Where to train: auto, cpu or cuda (picks the queue)."),
    ("val-fraction", "Share held out for validation when no --val-data is given."),
    ("grad-clip", "Max gradient L2 norm; 0 disables clipping."),
    ("patience", "Stop early after this many epochs without a better val loss."),
    ("time-limit", "Seconds of training after which the run fails."),
)


class ExpqGroup(click.Group):
    """Prints every error as one line on stderr and exits with its documented code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ANN001, ANN201
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except ExpqError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OperationalError as exc:
            # The database went away after the first connection.
            lines = str(exc.orig or exc).strip().splitlines()
            click.echo(f"Error: database error: {lines[0] if lines else exc}", err=True)
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def _engine():  # noqa: ANN202 - sqlalchemy.Engine, imported lazily
    from service.db import get_engine

    return get_engine(load_settings().database_url)


def _spec_options(func):  # noqa: ANN001, ANN202 - a Click decorator
    for name, help_text in reversed(SPEC_OPTIONS):
        func = click.option(f"--{name}", help=help_text)(func)
    return func


def _raw_spec(options: dict[str, Any]) -> dict[str, Any]:
    return {
        name.replace("-", "_"): options[name.replace("-", "_")]
        for name, _ in SPEC_OPTIONS
        if options.get(name.replace("-", "_")) is not None
    }


def _parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key.strip():
            raise InputError(f"tag must look like KEY=VALUE; got {tag!r}")
        parsed[key.strip()] = value
    return parsed


def _wait_for(
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


@click.group(cls=ExpqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="expq")
def cli() -> None:
    """expq: train MLPs and RNNs on sequence tasks across a Celery worker fleet."""


@cli.command()
@_spec_options
@click.option(
    "--data", type=click.Path(path_type=Path), help="Training data, JSONL: {input, target}."
)
@click.option("--val-data", type=click.Path(path_type=Path), help="Validation data, JSONL.")
@click.option("--experiment", default="default", show_default=True, help="Experiment name.")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="A tag; repeat for more.")
@click.option(
    "--priority",
    type=click.IntRange(0, 9),
    default=0,
    show_default=True,
    help="0-9; higher runs first within a queue.",
)
@click.option("--idempotency-key", help="Submitting the same key again returns the same run.")
@click.option("--wait", is_flag=True, help="Wait until the run ends; exit 1 unless it succeeded.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def submit(
    data: Path | None,
    val_data: Path | None,
    experiment: str,
    tags: tuple[str, ...],
    priority: int,
    idempotency_key: str | None,
    wait: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Validate a training spec, store it as queued and send it to the workers."""
    from service.store import NewRun, get_run
    from service.submit import prepare_spec, submit_spec
    from workers.app import make_app
    from workers.dispatch import queue_for_device

    spec, files = prepare_spec(_raw_spec(options), data, val_data)
    new = NewRun(
        experiment=experiment,
        queue=queue_for_device(spec.device),
        priority=priority,
        tags=_parse_tags(tags),
        idempotency_key=idempotency_key,
    )
    settings = load_settings()
    engine = _engine()
    run = submit_spec(engine, make_app(settings.broker_url), spec, files, new)
    if wait:
        _wait_for(engine, [run.id], None, quiet=as_json)
        run = get_run(engine, run.id)
    if as_json:
        print_json(run.to_json())
    else:
        click.echo(run.id)
    if wait and run.status != "succeeded":
        sys.exit(1)


@cli.command()
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


@cli.group()
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
        _engine(),
        experiment=experiment,
        task=task,
        model=model,
        status=status,
        sort=field,
        descending=direction != "asc",
        limit=limit,
    )
    emit_runs(found, fmt, title=f"{len(found)} runs")


def _existing_run(engine, run_id: int):  # noqa: ANN001, ANN202
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

    engine = _engine()
    run = _existing_run(engine, run_id)
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
    engine = _engine()
    _existing_run(engine, run_id)
    emit_losses(get_losses(engine, run_id, split=split, epoch=epoch), fmt)


@runs.command("wait")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(0), help="Give up after this many seconds.")
def runs_wait(run_ids: tuple[int, ...], timeout: float | None) -> None:
    """Wait until the runs end: exit 0 when all succeeded, 1 otherwise."""
    statuses = _wait_for(_engine(), list(run_ids), timeout)
    if not all(status == "succeeded" for status in statuses.values()):
        sys.exit(1)


@runs.command("cancel")
@click.argument("run_id", type=int)
def runs_cancel(run_id: int) -> None:
    """Cancel a queued or running run; a running one stops within seconds."""
    from service.store import cancel_run

    before = cancel_run(_engine(), run_id)
    if before is None:
        raise InputError(f"no run with id {run_id}")
    if before not in ("queued", "running"):
        raise InputError(f"run {run_id} already ended {before}")
    click.echo(f"run {run_id}: cancelled (was {before})")


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from service.db import current_revision, head_revision, make_engine, upgrade

    engine = make_engine(load_settings().database_url)
    upgrade(engine)
    click.echo(f"database at revision {current_revision(engine)} (head {head_revision()})")


@cli.command()
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


def main() -> None:
    cli(prog_name="expq")
