"""Live progress of runs: a bar per run (epoch / epochs), current losses and metric, the best
epoch so far, status and ETA."""

from __future__ import annotations

from datetime import datetime

from service.output import fmt_number
from service.records import RunRecord, utcnow
from service.states import RunStatus

TERMINAL = tuple(sorted(status.value for status in RunStatus.terminal()))
BAR_WIDTH = 20


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return "█" * filled + "░" * (width - filled)


def eta_seconds(run: RunRecord, now: datetime | None = None) -> float | None:
    """Seconds left at the pace of the epochs done so far; None when there is no pace yet."""
    total = run.params.get("epochs") or 0
    if run.status != "running" or not run.started_at or run.epochs_done <= 0:
        return None
    elapsed = ((now or utcnow()) - run.started_at).total_seconds()
    return max(0.0, elapsed / run.epochs_done * (total - run.epochs_done))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_row(run: RunRecord, now: datetime | None = None) -> list[str]:
    total = run.params.get("epochs") or 0
    return [
        str(run.id),
        run.task,
        run.model,
        run.status,
        f"{progress_bar(run.epochs_done, total)} {run.epochs_done}/{total}",
        fmt_number(run.final_train_loss),
        fmt_number(run.final_val_loss),
        fmt_number(run.final_metric),
        best_so_far(run),
        fmt_duration(eta_seconds(run, now)),
    ]


PROGRESS_COLUMNS = (
    "id",
    "task",
    "model",
    "status",
    "progress",
    "train",
    "val",
    "metric",
    "best (ep)",
    "eta",
)


def best_so_far(run: RunRecord) -> str:
    """The primary val metric at the best epoch so far, with that epoch: `0.93 (7)`."""
    if run.best_epoch is None:
        return "-"
    return f"{fmt_number(run.best_metric)} ({run.best_epoch})"


def progress_line(run: RunRecord) -> str:
    """The plain-text form, one line per change, for output that is not a terminal."""
    total = run.params.get("epochs") or 0
    return (
        f"run {run.id} {run.status} epoch {run.epochs_done}/{total} "
        f"train {fmt_number(run.final_train_loss)} val {fmt_number(run.final_val_loss)} "
        f"metric {fmt_number(run.final_metric)} best {best_so_far(run)}"
        + (f" error: {run.error}" if run.error and run.status in TERMINAL else "")
    )
