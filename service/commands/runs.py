"""`expq runs ...`: querying and managing runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from service.commands.common import TERMINAL, open_engine, wait_for
from service.commands.lazy import LazyGroup
from service.errors import InputError
from service.output import (
    emit_compare,
    emit_losses,
    emit_metrics,
    emit_run_detail,
    emit_runs,
    emit_summary,
    fmt_number,
    format_option,
    print_json,
    print_table,
)

WHERE_HELP = (
    "Filter expression: comparisons (= != < <= > >=) and `in (...)` on a hyperparameter "
    "(lr, hidden, ...), tag.KEY, a summary field (status, experiment, final_val_loss, "
    "created_at, best_epoch, best_metric, ...), train_loss_t[T] / val_loss_t[T] (the last "
    "epoch's L_t), or a metric (accuracy, token_accuracy, exact_match) as val_NAME / "
    "train_NAME (last epoch), best_val_NAME (best epoch) or val_NAME_t[T], joined by "
    "and, or, not and parentheses; strings in quotes. A tag compares as a number with a "
    "number and as text with a string. A comparison with a value a run lacks (a tag, a "
    "hyperparameter that does not apply, a timestep) is unknown: neither it nor its `not` "
    "matches. "
    "Example: \"lr < 0.05 and (model = 'rnn' or tag.team = 'a') and val_exact_match >= 0.9\"."
)


def filter_options(command: Callable) -> Callable:
    """The run filters shared by `runs list`, `runs summary` and `export`."""
    for option in reversed(
        (
            click.option("--experiment", help="Only this experiment."),
            click.option("--task", help="Only this task type."),
            click.option("--model", help="Only this model."),
            click.option(
                "--status",
                type=click.Choice(["queued", "running", *TERMINAL]),
                help="Only this status.",
            ),
            click.option("--where", help=WHERE_HELP),
        )
    ):
        command = option(command)
    return command


def run_filter(experiment, task, model, status, where):  # noqa: ANN001, ANN201
    from service.filters import RunFilter, parse_where

    if where is not None:
        parse_where(where)  # a syntax error exits before any database work
    return RunFilter(experiment, task, model, status, where)


@click.group(cls=LazyGroup, lazy={"export-model": "service.commands.model:export_model"})
def runs() -> None:
    """Query and manage runs."""


@runs.command("list")
@filter_options
@click.option(
    "--sort",
    default="id:desc",
    show_default=True,
    help="FIELD[:asc|desc], FIELD any field --where takes; ascending unless :desc.",
)
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
    where: str | None,
    sort: str,
    limit: int,
    fmt: str,
) -> None:
    """List runs, newest first; --where and --sort take any field."""
    from service.filters import parse_sort
    from service.store import list_runs

    field, descending = parse_sort(sort)
    chosen = run_filter(experiment, task, model, status, where)
    found = list_runs(
        open_engine(),
        experiment=chosen.experiment,
        task=chosen.task,
        model=chosen.model,
        status=chosen.status,
        where=chosen.where,
        sort=field.name,
        descending=descending,
        limit=limit,
    )
    emit_runs(found, fmt, title=f"{len(found)} runs")


@runs.command("summary")
@filter_options
@click.option(
    "--group-by",
    "group_by",
    required=True,
    help="Comma-separated fields to group by, e.g. model,hidden or tag.team.",
)
@click.option(
    "--metric",
    default="final_val_loss",
    show_default=True,
    help="The numeric field summarised per group, e.g. best_metric, val_exact_match or "
    "val_loss_t[3].",
)
@click.option(
    "--sort",
    help="A group-by field or runs, count, mean, std, min, max; [:asc|desc]. "
    "Default: by the group-by fields.",
)
@format_option()
def runs_summary(
    experiment: str | None,
    task: str | None,
    model: str | None,
    status: str | None,
    where: str | None,
    group_by: str,
    metric: str,
    sort: str | None,
    fmt: str,
) -> None:
    """Count, mean, std, min and max of a metric per group of runs, computed in SQL.

    std is the sample standard deviation (n - 1), empty for a group with one value. Runs for
    which a group-by field has no value (a tag they lack, cell for an MLP) form one group
    whose value is empty (null in JSON), listed last.
    """
    from service.filters import parse_fields
    from service.store import SUMMARY_STATS, summarize_runs

    names = [field.name for field in parse_fields(group_by, "--group-by")]
    key, descending = _summary_sort(sort, names, SUMMARY_STATS)
    chosen = run_filter(experiment, task, model, status, where)
    groups = summarize_runs(open_engine(), chosen, group_by, metric)
    for name in reversed(names if key is None else [key]):
        # Stable sorts, innermost key first; groups without a value go last either way.
        present = sorted(
            (g for g in groups if g[name] is not None),
            key=lambda g, n=name: g[n],
            reverse=descending,
        )
        groups = present + [g for g in groups if g[name] is None]
    emit_summary(groups, names, metric, fmt)


def _summary_sort(
    sort: str | None, names: list[str], stats: tuple[str, ...]
) -> tuple[str | None, bool]:
    if sort is None:
        return None, False
    name, sep, direction = sort.rpartition(":")
    if not sep or direction.lower() not in ("asc", "desc"):
        name, direction = sort, "asc"
    name = name.strip()
    if name not in (*names, *stats):
        raise InputError(
            f"--sort: {name!r} is neither a group-by field ({', '.join(names)}) "
            f"nor one of {', '.join(stats)}"
        )
    return name, direction.lower() == "desc"


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
    """Show one run: its record, spec, loss curve, last per-timestep losses and the runs that
    trained beside it in its fused group."""
    from service.store import get_losses, group_members

    engine = open_engine()
    run = existing_run(engine, run_id)
    beside = [other for other in group_members(engine, run.group) if other != run_id]
    emit_run_detail(run, get_losses(engine, run_id), fmt, beside)


@runs.command("losses")
@click.argument("run_id", type=int)
@click.option("--split", type=click.Choice(["train", "val"]), help="Only this split.")
@click.option("--epoch", default="all", show_default=True, help="An epoch number, last or all.")
@format_option()
def runs_losses(run_id: int, split: str | None, epoch: str, fmt: str) -> None:
    """Per-timestep losses L_t and total losses L of a run (timestep empty for L)."""
    from service.store import get_losses

    _check_epoch(epoch)
    engine = open_engine()
    existing_run(engine, run_id)
    emit_losses(get_losses(engine, run_id, split=split, epoch=epoch), fmt)


@runs.command("metrics")
@click.argument("run_id", type=int)
@click.option("--split", type=click.Choice(["train", "val"]), help="Only this split.")
@click.option("--epoch", default="all", show_default=True, help="An epoch number, last or all.")
@format_option()
def runs_metrics(run_id: int, split: str | None, epoch: str, fmt: str) -> None:
    """Metrics of a run per epoch and split: accuracy, or token_accuracy and exact_match, and
    token_accuracy per output step (timestep empty for a whole-split metric)."""
    from service.metrics_read import get_metrics

    _check_epoch(epoch)
    engine = open_engine()
    existing_run(engine, run_id)
    emit_metrics(get_metrics(engine, run_id, split=split, epoch=epoch), fmt)


def _check_epoch(epoch: str) -> None:
    if epoch not in ("all", "last") and not epoch.isdigit():
        raise InputError(f"--epoch takes a number, last or all; got {epoch!r}")


@runs.command("compare")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@format_option()
def runs_compare(run_ids: tuple[int, ...], fmt: str) -> None:
    """Runs side by side; hyperparameters and tags that differ are marked."""
    from service.store import get_runs

    if len(run_ids) < 2:
        raise InputError("give two or more run ids to compare")
    emit_compare(get_runs(open_engine(), list(dict.fromkeys(run_ids))), fmt)


RESULT_FIELDS = (
    "status",
    "epochs_done",
    "final_train_loss",
    "final_val_loss",
    "best_val_loss",
    "final_metric",
    "best_epoch",
    "best_metric",
)


@runs.command("diff")
@click.argument("first", type=int)
@click.argument("second", type=int)
@format_option(choices=("table", "json"))
def runs_diff(first: int, second: int, fmt: str) -> None:
    """What differs between two runs: their specs (only the differing fields) and results."""
    from service.store import get_runs

    a, b = get_runs(open_engine(), [first, second])
    spec = [
        {"field": key, "a": a.spec.get(key), "b": b.spec.get(key)}
        for key in sorted(set(a.spec) | set(b.spec))
        if a.spec.get(key) != b.spec.get(key)
    ]
    results = [
        {"field": name, "a": getattr(a, name), "b": getattr(b, name), "delta": _delta(a, b, name)}
        for name in RESULT_FIELDS
    ]
    if fmt == "json":
        print_json({"a": a.id, "b": b.id, "spec": spec, "results": results})
        return
    print_table(
        f"run {a.id} vs run {b.id}: {len(spec)} spec fields differ",
        ("", "field", f"run {a.id}", f"run {b.id}", "b - a"),
        [
            *(["spec", row["field"], row["a"], row["b"], ""] for row in spec),
            *(
                [
                    "result",
                    row["field"],
                    fmt_number(row["a"]) if isinstance(row["a"], float) else row["a"],
                    fmt_number(row["b"]) if isinstance(row["b"], float) else row["b"],
                    fmt_number(row["delta"]),
                ]
                for row in results
            ),
        ],
    )


def _delta(a, b, name: str) -> float | None:  # noqa: ANN001 - two RunRecords
    left, right = getattr(a, name), getattr(b, name)
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return right - left
    return None


@runs.command("plot")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="The image file to write, e.g. losses.png.",
)
def runs_plot(run_ids: tuple[int, ...], output: Path) -> None:
    """Plot the total loss and the metrics per epoch (the best epoch starred) and the last
    epoch's per-timestep loss of runs."""
    from service.metrics_read import get_metrics
    from service.store import get_losses, get_runs

    engine = open_engine()
    chosen = get_runs(engine, list(dict.fromkeys(run_ids)))
    from service.plots import plot_runs  # matplotlib loads only here

    plot_runs(
        [(run, get_losses(engine, run.id), get_metrics(engine, run.id)) for run in chosen], output
    )
    click.echo(f"wrote {output}", err=True)


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
