"""`expq submit`: one validated run to the queue."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from service.commands.common import open_engine, wait_for
from service.config import load_settings
from service.errors import InputError
from service.output import print_json

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
    (
        "data-seed",
        "Seed of the built-in data and the validation split (default: --seed); seed replicates"
        " that share it share one dataset, and may train in one fused group.",
    ),
    ("device", "Where to train: auto, cpu or cuda (picks the queue)."),
    ("val-fraction", "Share held out for validation when no --val-data is given."),
    ("grad-clip", "Max gradient L2 norm; 0 disables clipping."),
    ("patience", "Stop early after this many epochs without a better val loss."),
    ("time-limit", "Seconds of training after which the run fails."),
)


def spec_options(func):  # noqa: ANN001, ANN202 - a Click decorator
    for name, help_text in reversed(SPEC_OPTIONS):
        func = click.option(f"--{name}", help=help_text)(func)
    return func


def raw_spec(options: dict[str, Any]) -> dict[str, Any]:
    return {
        name.replace("-", "_"): options[name.replace("-", "_")]
        for name, _ in SPEC_OPTIONS
        if options.get(name.replace("-", "_")) is not None
    }


def queueing_options(func):  # noqa: ANN001, ANN202 - a Click decorator
    """--tag and --priority, shared by submit and sweep."""
    func = click.option(
        "--priority",
        type=click.IntRange(0, 9),
        default=0,
        show_default=True,
        help="0-9; higher runs first within a queue.",
    )(func)
    return click.option(
        "--tag", "tags", multiple=True, metavar="K=V", help="A tag; repeat for more."
    )(func)


def parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key.strip():
            raise InputError(f"tag must look like KEY=VALUE; got {tag!r}")
        parsed[key.strip()] = value
    return parsed


@click.command()
@spec_options
@click.option(
    "--data", type=click.Path(path_type=Path), help="Training data, JSONL: {input, target}."
)
@click.option("--val-data", type=click.Path(path_type=Path), help="Validation data, JSONL.")
@click.option(
    "--from-run",
    type=int,
    help="Start from this run's exact spec (seed and data included); options given override it.",
)
@click.option("--experiment", help="Experiment name (default: the --from-run's, else default).")
@queueing_options
@click.option("--idempotency-key", help="Submitting the same key again returns the same run.")
@click.option("--wait", is_flag=True, help="Wait until the run ends; exit 1 unless it succeeded.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def submit(
    data: Path | None,
    val_data: Path | None,
    from_run: int | None,
    experiment: str | None,
    tags: tuple[str, ...],
    priority: int,
    idempotency_key: str | None,
    wait: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Validate a training spec, store it as queued and send it to the workers."""
    from service.store import NewRun, get_run
    from service.submit import prepare_spec, stored_data_reader, submit_spec
    from workers.app import make_app
    from workers.dispatch import queue_for_device

    raw = raw_spec(options)
    stored = None
    if from_run is not None:
        from service.store import get_runs

        [source] = get_runs(open_engine(), [from_run])  # the engine is cached per process
        raw = {**source.spec, **raw}
        experiment = experiment or source.experiment
        stored = stored_data_reader(open_engine(), from_run)
    spec, files = prepare_spec(raw, data, val_data, stored=stored)
    new = NewRun(
        experiment=experiment or "default",
        queue=queue_for_device(spec.device),
        priority=priority,
        tags=parse_tags(tags),
        idempotency_key=idempotency_key,
    )
    settings = load_settings()
    engine = open_engine(create=True)
    run = submit_spec(engine, make_app(settings.broker_url), spec, files, new)
    if not as_json:
        click.echo(run.id)
    if wait:
        try:
            if as_json:
                wait_for(engine, [run.id], None, quiet=True)
            else:
                from service.commands.watch import watch_runs

                watch_runs((run.id,), None, interval=0.5)
        except KeyboardInterrupt:
            # Ctrl-C stops the waiting, not the run: "Aborted." read as if the run was.
            click.echo(
                f"stopped waiting; run {run.id} goes on (`expq runs cancel {run.id}` stops it)",
                err=True,
            )
            sys.exit(130)
        run = get_run(engine, run.id)
    if as_json:
        print_json(run.to_json())
    if wait and run.status != "succeeded":
        sys.exit(1)
