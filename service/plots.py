"""`expq runs plot`: loss curves of several runs overlaid, drawn with matplotlib's Agg backend.

Imported only by that command: matplotlib costs the other commands nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from service.errors import InputError
from service.records import LossRecord, RunRecord

MAX_LABEL_PARAMS = 4


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


def plot_runs(runs: Sequence[tuple[RunRecord, Sequence[LossRecord]]], output: Path) -> None:
    """Left: total loss L per epoch (train dashed, val solid). Right: the last epoch's L_t."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (by_epoch, by_step) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = run_labels([run for run, _ in runs])
    for index, ((_run, losses), label) in enumerate(zip(runs, labels, strict=True)):
        color = f"C{index % 10}"
        last = max((r.epoch for r in losses), default=None)
        for split, style in (("train", "--"), ("val", "-")):
            totals = [(r.epoch, r.value) for r in losses if r.split == split and r.timestep is None]
            xs, ys = _finite(sorted(totals))
            if xs:
                by_epoch.plot(xs, ys, style, color=color, marker=".", label=f"{label} ({split})")
            steps = [
                (r.timestep, r.value)
                for r in losses
                if r.split == split and r.epoch == last and r.timestep is not None
            ]
            xs, ys = _finite(sorted(steps))
            if xs:
                by_step.plot(xs, ys, style, color=color, marker="o", label=f"{label} ({split})")
    by_epoch.set(title="total loss L per epoch", xlabel="epoch", ylabel="L")
    by_step.set(title="last epoch: per-timestep loss L_t", xlabel="timestep t", ylabel="L_t")
    for axes in (by_epoch, by_step):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.lines:
            axes.legend(fontsize="small")
        else:
            axes.text(0.5, 0.5, "no losses yet", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    try:
        figure.savefig(output, dpi=100)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot write {output}: {exc}") from None
    finally:
        plt.close(figure)
