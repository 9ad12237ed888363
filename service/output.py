"""Rendering for the CLI: rich tables for people, clean JSON and CSV on stdout for pipes."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from service.records import LossRecord, RunRecord

FORMATS = ("table", "json", "csv")
_SPARKS = "▁▂▃▄▅▆▇█"


def format_option(*, choices: Sequence[str] = FORMATS) -> Callable:
    """The shared `--format` option of every listing."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default="table",
        show_default=True,
        help="Output format: a table for people, json or csv for scripts.",
    )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, allow_nan=False))


def print_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def fmt_number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def sparkline(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    return "".join(
        _SPARKS[min(len(_SPARKS) - 1, int((v - low) / span * len(_SPARKS)))]
        if math.isfinite(v)
        else "!"
        for v in values
    )


def print_table(title: str | None, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console = Console()
    if not console.is_terminal:
        # Piped output would otherwise wrap at 80 columns.
        console = Console(width=160)
    console.print(table)


RUN_COLUMNS = (
    "id",
    "experiment",
    "task",
    "model",
    "status",
    "epochs",
    "train_loss",
    "val_loss",
    "best_val",
    "metric",
    "device",
    "worker",
)


def _run_row(run: RunRecord) -> list[Any]:
    return [
        run.id,
        run.experiment,
        run.task,
        run.model,
        run.status,
        f"{run.epochs_done}/{run.params.get('epochs')}",
        fmt_number(run.final_train_loss),
        fmt_number(run.final_val_loss),
        fmt_number(run.best_val_loss),
        fmt_number(run.final_metric),
        run.device or "-",
        run.worker or "-",
    ]


def emit_runs(runs: Sequence[RunRecord], fmt: str, title: str | None = None) -> None:
    if fmt == "json":
        print_json([run.to_json() for run in runs])
    elif fmt == "csv":
        params = sorted({name for run in runs for name in run.params})
        fields = [
            "id",
            "experiment",
            "task",
            "model",
            "status",
            "device",
            "worker",
            "attempt",
            "epochs_done",
            "final_train_loss",
            "final_val_loss",
            "best_val_loss",
            "final_metric",
            "created_at",
            "started_at",
            "finished_at",
        ]
        print_csv(
            fields + [f"param.{name}" for name in params],
            (
                [run.to_json()[f] for f in fields] + [run.params.get(n) for n in params]
                for run in runs
            ),
        )
    else:
        print_table(title, RUN_COLUMNS, (_run_row(run) for run in runs))


def emit_losses(losses: Sequence[LossRecord], fmt: str) -> None:
    if fmt == "json":
        print_json([loss.to_json() for loss in losses])
    elif fmt == "csv":
        print_csv(
            ["epoch", "split", "timestep", "value"],
            ([r.epoch, r.split, r.timestep, r.value] for r in losses),
        )
    else:
        print_table(
            None,
            ("epoch", "split", "timestep", "value"),
            (
                [
                    r.epoch,
                    r.split,
                    "total" if r.timestep is None else r.timestep,
                    fmt_number(r.value, 6),
                ]
                for r in losses
            ),
        )


def emit_run_detail(run: RunRecord, losses: Sequence[LossRecord], fmt: str) -> None:
    """`runs show`: the record, its spec, the total loss per epoch and the last epoch's L_t."""
    if fmt == "json":
        print_json({**run.to_json(), "losses": [loss.to_json() for loss in losses]})
        return
    from rich.console import Console

    totals = {
        split: [r.value for r in losses if r.split == split and r.timestep is None]
        for split in ("train", "val")
    }
    last = max((r.epoch for r in losses), default=None)
    fields = [
        ("status", run.status),
        ("experiment", run.experiment),
        ("task", run.task),
        ("model", run.model),
        ("device", run.device or "-"),
        ("worker", run.worker or "-"),
        ("attempt", f"{run.attempt}/{run.max_attempts}"),
        ("epochs", f"{run.epochs_done}/{run.params.get('epochs')}"),
        ("final train loss", fmt_number(run.final_train_loss)),
        ("final val loss", fmt_number(run.final_val_loss)),
        ("best val loss", fmt_number(run.best_val_loss)),
        ("final metric", fmt_number(run.final_metric)),
        ("train L by epoch", sparkline(totals["train"])),
        ("val L by epoch", sparkline(totals["val"])),
        ("created", run.created_at.isoformat()),
        ("started", run.started_at.isoformat() if run.started_at else "-"),
        ("finished", run.finished_at.isoformat() if run.finished_at else "-"),
        ("error", run.error or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in run.tags.items()) or "-"),
        ("spec", json.dumps(run.spec, sort_keys=True)),
    ]
    print_table(f"run {run.id}", ("field", "value"), fields)
    if last is not None:
        steps = sorted({r.timestep for r in losses if r.epoch == last and r.timestep is not None})
        by_split = {(r.split, r.timestep): r.value for r in losses if r.epoch == last}
        print_table(
            f"epoch {last}: per-timestep loss L_t and total L",
            ("split", *[f"t={t}" for t in steps], "L"),
            (
                [
                    split,
                    *[fmt_number(by_split.get((split, t))) for t in steps],
                    fmt_number(by_split.get((split, None))),
                ]
                for split in ("train", "val")
            ),
        )
    if run.traceback:
        Console(stderr=False).print(run.traceback, markup=False, highlight=False)
