"""Progress bars, ETAs and the plain-text lines of `expq watch`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from service.progress import (
    eta_seconds,
    fmt_duration,
    progress_bar,
    progress_line,
    progress_row,
)
from service.records import RunRecord, utcnow


def _run(**fields) -> RunRecord:  # noqa: ANN003
    now = utcnow()
    base = RunRecord(
        id=1,
        experiment="e",
        task="binary",
        model="mlp",
        status="running",
        params={"epochs": 10},
        spec={},
        tags={},
        queue="cpu",
        priority=0,
        device="cpu",
        worker="w",
        attempt=1,
        max_attempts=3,
        epochs_done=0,
        final_train_loss=None,
        final_val_loss=None,
        best_train_loss=None,
        best_val_loss=None,
        final_metric=None,
        error=None,
        traceback=None,
        created_at=now,
        started_at=now,
        finished_at=None,
    )
    return replace(base, **fields)


def test_progress_bar_fills_with_the_epochs() -> None:
    assert progress_bar(0, 10, width=10) == "░" * 10
    assert progress_bar(5, 10, width=10) == "█" * 5 + "░" * 5
    assert progress_bar(12, 10, width=10) == "█" * 10


def test_eta_follows_the_pace_so_far() -> None:
    started = utcnow()
    run = _run(epochs_done=4, started_at=started)
    assert eta_seconds(run, now=started + timedelta(seconds=8)) == 12.0
    assert eta_seconds(_run(epochs_done=0)) is None
    assert eta_seconds(_run(status="succeeded", epochs_done=10)) is None
    assert [fmt_duration(s) for s in (None, 5, 75, 3700)] == ["-", "5s", "1m15s", "1h01m"]


def test_plain_lines_carry_the_status_and_the_error() -> None:
    assert progress_line(_run(epochs_done=3, final_train_loss=0.5)).startswith(
        "run 1 running epoch 3/10 train 0.5 val -"
    )
    assert progress_line(_run(status="failed", error="time limit")).endswith("error: time limit")


def test_watch_shows_the_metric_and_the_best_epoch_so_far() -> None:
    run = _run(epochs_done=5, final_val_loss=0.4, final_metric=0.8, best_epoch=3, best_metric=0.9)
    assert progress_line(run).startswith(
        "run 1 running epoch 5/10 train - val 0.4 metric 0.8 best 0.9 (3)"
    )
    assert progress_row(run)[7:9] == ["0.8", "0.9 (3)"]
    assert progress_row(_run())[7:9] == ["-", "-"]
