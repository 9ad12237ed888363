"""`expq runs plot`: loss and metric curves of several runs overlaid, drawn with matplotlib's
Agg backend.

Imported only by that command: matplotlib costs the other commands nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from service.errors import InputError
from service.records import LossRecord, MetricRecord, RunRecord

MAX_LABEL_PARAMS = 4
_METRIC_MARKERS = {"accuracy": ".", "token_accuracy": ".", "exact_match": "x"}


def run_labels(runs: Sequence[RunRecord]) -> list[str]:
    """`run 3: lr=0.1, hidden=32`, naming only the hyperparameters that differ between runs."""
    names = [
        name
        for name in dict.fromkeys(n for run in runs for n in run.params)
        if len({json.dumps(run.params.get(name)) for run in runs}) > 1
    ]
    labels = []
    for run in runs:
        shown = ", ".join(f"{n}={run.params.get(n)}" for n in names[:MAX_LABEL_PARAMS])
        if len(names) > MAX_LABEL_PARAMS:
            shown += ", ..."
        labels.append(f"run {run.id}: {shown}" if shown else f"run {run.id}")
    return labels


def _finite(points: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    kept = [(x, y) for x, y in points if math.isfinite(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def _plot_metrics(axes, color: str, label: str, run: RunRecord, metrics) -> None:  # noqa: ANN001
    """Every whole-split metric per epoch (train dashed, val solid); a star on the best epoch."""
    for name in dict.fromkeys(m.name for m in metrics if m.timestep is None):
        for split, style in (("train", "--"), ("val", "-")):
            points = [
                (m.epoch, m.value)
                for m in metrics
                if (m.split, m.name, m.timestep) == (split, name, None)
            ]
            xs, ys = _finite(sorted(points))
            if xs:
                axes.plot(
                    xs,
                    ys,
                    style,
                    color=color,
                    marker=_METRIC_MARKERS.get(name, "."),
                    label=f"{label} ({split} {name})",
                )
    if run.best_epoch is not None and run.best_metric is not None:
        axes.plot(
            [run.best_epoch],
            [run.best_metric],
            "*",
            color=color,
            markersize=14,
            markeredgecolor="black",
            label=f"{label}: best epoch {run.best_epoch}",
        )


Curves = Sequence[tuple[RunRecord, Sequence[LossRecord], Sequence[MetricRecord]]]


def draw_runs(runs: Curves):  # noqa: ANN201 - a matplotlib Figure, imported lazily
    """Left: total loss L per epoch (train dashed, val solid), the best epoch starred. Middle:
    the metrics per epoch, the best epoch's primary val metric starred. Right: the last
    epoch's L_t."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (by_epoch, by_metric, by_step) = plt.subplots(1, 3, figsize=(18, 4.5))
    labels = run_labels([run for run, _, _ in runs])
    for index, ((run, losses, metrics), label) in enumerate(zip(runs, labels, strict=True)):
        color = f"C{index % 10}"
        last = max((r.epoch for r in losses), default=None)
        for split, style in (("train", "--"), ("val", "-")):
            totals = [(r.epoch, r.value) for r in losses if r.split == split and r.timestep is None]
            xs, ys = _finite(sorted(totals))
            if xs:
                by_epoch.plot(xs, ys, style, color=color, marker=".", label=f"{label} ({split})")
            if split == "val" and run.best_epoch in xs:
                best = ys[xs.index(run.best_epoch)]
                by_epoch.plot([run.best_epoch], [best], "*", color=color, markersize=14)
            steps = [
                (r.timestep, r.value)
                for r in losses
                if r.split == split and r.epoch == last and r.timestep is not None
            ]
            xs, ys = _finite(sorted(steps))
            if xs:
                by_step.plot(xs, ys, style, color=color, marker="o", label=f"{label} ({split})")
        _plot_metrics(by_metric, color, label, run, metrics)
    by_epoch.set(title="total loss L per epoch", xlabel="epoch", ylabel="L")
    by_metric.set(title="metrics per epoch (★ best epoch)", xlabel="epoch", ylabel="metric")
    by_step.set(title="last epoch: per-timestep loss L_t", xlabel="timestep t", ylabel="L_t")
    for axes, empty in ((by_epoch, "losses"), (by_metric, "metrics"), (by_step, "losses")):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.lines:
            axes.legend(fontsize="small")
        else:
            axes.text(
                0.5, 0.5, f"no {empty} yet", ha="center", va="center", transform=axes.transAxes
            )
    figure.tight_layout()
    return figure


def plot_runs(runs: Curves, output: Path) -> None:
    """The curves of `draw_runs` written to `output` (PNG, SVG, PDF: by its suffix)."""
    from matplotlib import pyplot as plt

    figure = draw_runs(runs)
    try:
        figure.savefig(output, dpi=100)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot write {output}: {exc}") from None
    finally:
        plt.close(figure)
