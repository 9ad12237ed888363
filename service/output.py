"""Rendering for the CLI: rich tables for people, clean JSON and CSV on stdout for pipes."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import click

from service.records import LossRecord, MetricRecord, RunRecord

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


def print_json_stream(items: Iterable[Any]) -> None:
    """A JSON list written item by item: exports of any size in constant memory."""
    out = sys.stdout
    empty = True
    out.write("[")
    for item in items:
        out.write("\n  " if empty else ",\n  ")
        out.write(json.dumps(item, allow_nan=False))
        empty = False
    out.write("]\n" if empty else "\n]\n")


def print_table(title: str | None, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A table on stdout: as wide as the terminal allows, or 160 columns when piped (wider
    cells fold), the column names in bold on a terminal."""
    from service.text_table import table_lines

    terminal = sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if terminal else 160
    lines = table_lines(title, header, rows, width, style_header=terminal)
    sys.stdout.write("\n".join(lines) + "\n")


# Fits 120 columns: best is the primary val metric at the epoch of lowest val L (that epoch in
# brackets), final the one of the last epoch. Train loss, device and worker: `runs show`, json.
RUN_COLUMNS = (
    "id",
    "experiment",
    "task",
    "model",
    "status",
    "trial",
    "epochs",
    "val L",
    "best L",
    "best (ep)",
    "final",
)


def _run_row(run: RunRecord) -> list[Any]:
    best = fmt_number(run.best_metric)
    return [
        run.id,
        run.experiment,
        run.task,
        run.model,
        run.status,
        "-" if run.trial is None else run.trial,
        f"{run.epochs_done}/{run.params.get('epochs')}",
        fmt_number(run.final_val_loss),
        fmt_number(run.best_val_loss),
        best if run.best_epoch is None else f"{best} ({run.best_epoch})",
        fmt_number(run.final_metric),
    ]


CSV_FIELDS = (
    "id",
    "experiment",
    "trial",
    "task",
    "model",
    "status",
    "device",
    "worker",
    "attempt",
    "epochs_done",
    "final_train_loss",
    "final_val_loss",
    "best_train_loss",
    "best_val_loss",
    "final_metric",
    "best_epoch",
    "best_metric",
    "error",
    "created_at",
    "started_at",
    "finished_at",
)


def print_runs_csv(runs: Iterable[RunRecord], params: Sequence[str], tags: Sequence[str]) -> None:
    """One run a row: the summary, then param.NAME and tag.KEY columns."""

    def row(run: RunRecord) -> list[Any]:
        data = run.to_json()
        return (
            [data[f] for f in CSV_FIELDS]
            + [run.params.get(name) for name in params]
            + [run.tags.get(key) for key in tags]
        )

    header = [*CSV_FIELDS, *(f"param.{n}" for n in params), *(f"tag.{k}" for k in tags)]
    print_csv(header, (row(run) for run in runs))


def emit_runs(runs: Sequence[RunRecord], fmt: str, title: str | None = None) -> None:
    if fmt == "json":
        print_json([run.to_json() for run in runs])
    elif fmt == "csv":
        params = sorted({name for run in runs for name in run.params})
        tags = sorted({key for run in runs for key in run.tags})
        print_runs_csv(runs, params, tags)
    else:
        print_table(title, RUN_COLUMNS, (_run_row(run) for run in runs))


DIGEST_PARAMS = ("data", "val_data")  # a data file's sha256: tables show its first 12 digits


def _shown(value: Any, name: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return fmt_number(value, 6)
    return _short(name, value)


def _short(name: str, value: Any) -> str:
    return f"{value[:12]}…" if name in DIGEST_PARAMS and isinstance(value, str) else str(value)


def compare_rows(runs: Sequence[RunRecord]) -> list[tuple[str, str, bool, list[Any]]]:
    """(field, kind, differs, values): the summary, every hyperparameter, every tag."""
    rows: list[tuple[str, str, bool, list[Any]]] = []
    for name in ("status", "experiment", "epochs_done", "final_train_loss", "final_val_loss"):
        rows.append((name, "summary", False, [getattr(run, name) for run in runs]))
    for name in ("best_val_loss", "final_metric", "best_epoch", "best_metric", "worker"):
        rows.append((name, "summary", False, [getattr(run, name) for run in runs]))
    # params have `device` too: the one asked for; this is the one the run got.
    rows.append(("device_used", "summary", False, [run.device for run in runs]))
    for name in dict.fromkeys(name for run in runs for name in run.params):
        values = [run.params.get(name) for run in runs]
        rows.append((name, "param", len({json.dumps(v) for v in values}) > 1, values))
    for key in sorted({key for run in runs for key in run.tags}):
        values = [run.tags.get(key) for run in runs]
        rows.append((f"tag.{key}", "tag", len(set(values)) > 1, values))
    return rows


def emit_compare(runs: Sequence[RunRecord], fmt: str) -> None:
    """`runs compare`: one column a run; differing hyperparameters and tags marked ≠."""
    rows = compare_rows(runs)
    if fmt == "json":
        print_json(
            {
                "runs": [run.id for run in runs],
                "rows": [{"field": f, "kind": k, "differs": d, "values": v} for f, k, d, v in rows],
            }
        )
    elif fmt == "csv":
        print_csv(
            ["field", "kind", "differs", *(f"run_{run.id}" for run in runs)],
            ([f, k, d, *v] for f, k, d, v in rows),
        )
    else:
        print_table(
            f"{len(runs)} runs; ≠ marks differing hyperparameters and tags",
            ("", "field", *(f"run {run.id}" for run in runs)),
            (["≠" if d else "", f, *(_shown(v, f) for v in values)] for f, _, d, values in rows),
        )


def emit_summary(
    groups: Sequence[dict[str, Any]], names: Sequence[str], metric: str, fmt: str
) -> None:
    """`runs summary`: a row per group: its fields, then runs, count, mean, std, min, max."""
    stats = ("runs", "count", "mean", "std", "min", "max")
    if fmt == "json":
        print_json(list(groups))
    elif fmt == "csv":
        print_csv([*names, *stats], ([g[k] for k in (*names, *stats)] for g in groups))
    else:
        print_table(
            f"{metric} by {', '.join(names)} (std: sample, n - 1)",
            (*names, *stats),
            ([*(_shown(g[n]) for n in names), *(_shown(g[s]) for s in stats)] for g in groups),
        )


def export_runs(runs: Iterator[RunRecord], fmt: str, tags: Sequence[str]) -> None:
    from models.spec import PARAM_NAMES

    if fmt == "json":
        print_json_stream(run.to_json() for run in runs)
    else:
        print_runs_csv(runs, PARAM_NAMES, tags)


def export_losses(rows: Iterator[tuple[int, LossRecord]], fmt: str) -> None:
    """The long table: one row per (run, epoch, split, timestep); timestep empty for L."""
    if fmt == "json":
        print_json_stream({"run_id": run_id, **loss.to_json()} for run_id, loss in rows)
    else:
        print_csv(
            ["run_id", "epoch", "split", "timestep", "value"],
            ([run_id, r.epoch, r.split, r.timestep, r.value] for run_id, r in rows),
        )


def export_metrics(rows: Iterator[tuple[int, MetricRecord]], fmt: str) -> None:
    """The long table of metrics: one row per (run, epoch, split, name, timestep)."""
    if fmt == "json":
        print_json_stream({"run_id": run_id, **metric.to_json()} for run_id, metric in rows)
    else:
        print_csv(
            ["run_id", "epoch", "split", "name", "timestep", "value"],
            ([run_id, r.epoch, r.split, r.name, r.timestep, r.value] for run_id, r in rows),
        )


def emit_metrics(metrics: Sequence[MetricRecord], fmt: str) -> None:
    """`runs metrics`: timestep empty (in a table: "whole") for a whole-split metric."""
    if fmt == "json":
        print_json([metric.to_json() for metric in metrics])
    elif fmt == "csv":
        print_csv(
            ["epoch", "split", "name", "timestep", "value"],
            ([r.epoch, r.split, r.name, r.timestep, r.value] for r in metrics),
        )
    else:
        print_table(
            None,
            ("epoch", "split", "name", "timestep", "value"),
            (
                [
                    r.epoch,
                    r.split,
                    r.name,
                    "whole" if r.timestep is None else r.timestep,
                    fmt_number(r.value, 6),
                ]
                for r in metrics
            ),
        )


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


def _metrics_shown(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name}={fmt_number(value)}" for name, value in metrics.items()) or "-"


def _attempts_shown(run: RunRecord) -> str:
    """The attempt out of those the run may take: max_attempts plus the ones given back."""
    if not run.given_back:
        return f"{run.attempt}/{run.max_attempts}"
    return f"{run.attempt}/{run.max_attempts + run.given_back} ({run.given_back} given back)"


def emit_run_detail(
    run: RunRecord, losses: Sequence[LossRecord], fmt: str, beside: Sequence[int] = ()
) -> None:
    """`runs show`: the record, its spec, the total loss per epoch, the last epoch's L_t, and
    `beside`: the runs that trained in its fused group."""
    if fmt == "json":
        detail = {**run.to_json(), "trained_beside": list(beside)}
        print_json({**detail, "losses": [loss.to_json() for loss in losses]})
        return
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
        ("attempt", _attempts_shown(run)),
        ("epochs", f"{run.epochs_done}/{run.params.get('epochs')}"),
        ("final train loss", fmt_number(run.final_train_loss)),
        ("final val loss", fmt_number(run.final_val_loss)),
        ("best val loss", fmt_number(run.best_val_loss)),
        ("final metric", fmt_number(run.final_metric)),
        ("final val metrics", _metrics_shown(run.final_metrics)),
        ("best epoch", "-" if run.best_epoch is None else run.best_epoch),
        ("best metric", fmt_number(run.best_metric)),
        ("best val metrics", _metrics_shown(run.best_metrics)),
        ("train L by epoch", sparkline(totals["train"])),
        ("val L by epoch", sparkline(totals["val"])),
        ("created", run.created_at.isoformat()),
        ("started", run.started_at.isoformat() if run.started_at else "-"),
        ("finished", run.finished_at.isoformat() if run.finished_at else "-"),
        ("resumed after epoch", run.resumed_from_epoch or "-"),
        ("fused group", run.group or "-"),
        ("trained beside", ", ".join(str(other) for other in beside) or "-"),
        ("error", run.error or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in run.tags.items()) or "-"),
        ("hyperparameters", ", ".join(f"{k}={_short(k, v)}" for k, v in run.params.items())),
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
        sys.stdout.write(run.traceback.rstrip("\n") + "\n")
