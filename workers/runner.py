"""One run from claim to terminal state: the logic behind the thin Celery task. How each
kind of failure ends the attempt or the run: workers/outcomes.py."""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from service.config import Settings
from service.lifecycle import LeaseLost, claim_for_training, record_epoch
from service.pruning import prune_reason
from service.schema import RunStatus
from workers.data_cache import cached_data
from workers.lease import Heartbeat
from workers.outcomes import (
    FIT_STATUS,
    INFRASTRUCTURE_ERRORS,
    DeviceFault,
    Pruned,
    device_fault,
    exit_hung,
    finish_attempt,
    give_up,
    is_device_fault,
    lost,
    one_line,
    release,
)
from workers.preparation import auto_device, load_user_rows, resume_point, validate

log = logging.getLogger(__name__)


def lease_owner(hostname: str, pid: int, task_id: str | None = None) -> str:
    """Who holds a claim: unique per process and message, and rebuilt by the worker's main
    process from what it knows of a pool process that died (workers/tasks.py)."""
    return f"{hostname}:{pid}:{task_id or uuid.uuid4().hex}"


@dataclass
class Phases:
    """Where one run's time went, for the log line the fleet benchmark reads."""

    started: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)
    epoch_writes: float = 0.0  # inside training: every epoch but the last

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def line(self, run_id: int, attempt: int, status: str) -> str:
        now = time.perf_counter()
        claimed = self.marks.get("claimed", self.started)
        set_up = self.marks.get("set_up", claimed)
        trained = self.marks.get("trained", set_up)
        finishing = now - trained  # the last epoch's losses and the outcome, one transaction
        ms = lambda seconds: f"{seconds * 1000:.1f} ms"  # noqa: E731
        return (
            f"run {run_id} attempt {attempt} {status} in {now - self.started:.3f} s"
            f" (claim {ms(claimed - self.started)}, setup {ms(set_up - claimed)},"
            f" train {ms(trained - set_up - self.epoch_writes)},"
            f" writes {ms(self.epoch_writes + finishing)})"
        )


def execute_run(
    engine: Engine,
    run_id: int,
    settings: Settings,
    owner: str | None = None,
    worker: str | None = None,
    on_hung: Callable[[str], None] = exit_hung,
) -> str | None:
    """Claim, train and finish one run; the status it ended in, or None when it was not ours.

    `worker` is what the run's worker column shows: the Celery node name (`expq-1a2b3c@host`,
    as `expq workers` lists it), so that two workers on one host can be told apart. Raises
    DeviceFault once the attempt is ended by a fault of the device. `on_hung` is called when
    training makes no progress for `settings.progress_timeout_seconds`; by default it ends
    the process.
    """
    phases = Phases()
    hostname = socket.gethostname()
    owner = owner or lease_owner(hostname, os.getpid())
    claimed = claim_for_training(
        engine,
        run_id,
        owner=owner,
        worker=worker or hostname,
        auto_device=auto_device(),
        lease_seconds=settings.lease_seconds,
    )
    if claimed is None:
        log.info("run %s: not queued; message dropped", run_id)
        return None
    attempt = claimed.attempt
    spec, setup_error = validate(claimed.spec)
    phases.mark("claimed")
    if setup_error is not None:
        return finish_attempt(
            engine, run_id, attempt, RunStatus.FAILED, setup_error, None, settings
        )

    heartbeat = Heartbeat(
        engine,
        run_id,
        attempt,
        interval=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
        time_limit=spec.time_limit,
        progress_timeout=settings.progress_timeout_seconds,
        on_hung=lambda reason: give_up(engine, run_id, owner, reason, on_hung),
    )
    heartbeat.start()
    try:
        try:
            status, error, trace, last = _train(engine, run_id, attempt, spec, heartbeat, phases)
            heartbeat.trained()
        except DeviceFault as fault:
            log.error("run %s attempt %s: %s; attempt ended", run_id, attempt, fault)
            heartbeat.finish()  # first: a renewal after the release would take the lease back
            release(engine, run_id, owner, str(fault))
            raise
        if status is None:
            return lost(engine, run_id, attempt)
        ended = finish_attempt(engine, run_id, attempt, status, error, trace, settings, last)
    except INFRASTRUCTURE_ERRORS as exc:
        # This attempt cannot record anything; the next one will, once the database is back.
        log.warning(
            "run %s attempt %s: database error, attempt abandoned: %s",
            run_id,
            attempt,
            one_line(exc),
        )
        heartbeat.finish()
        release(engine, run_id, owner, f"database error: {one_line(exc)}")
        return None
    finally:
        heartbeat.finish()
    if ended is not None:
        log.info("%s", phases.line(run_id, attempt, ended))
    return ended


def _train(
    engine: Engine,
    run_id: int,
    attempt: int,
    spec,
    heartbeat: Heartbeat,
    phases: Phases,  # noqa: ANN001
) -> tuple[RunStatus | None, str | None, str | None, tuple | None]:
    """Train until fit ends: (status, error, traceback, last epoch), status None when the
    lease was lost. Every epoch is written as it ends, but the spec's last one, which is
    handed back to be written with the outcome in one transaction."""
    from models.data import build_data
    from models.training import fit

    last: list[tuple] = []

    def on_epoch(report) -> None:  # noqa: ANN001 - models.training.EpochReport
        heartbeat.tick()
        splits = {"train": report.train, "val": report.val}
        started = time.perf_counter()
        # An epoch's losses and the checkpoint after it commit together; the last epoch's
        # commit with the outcome.
        epoch = (report.epoch, splits, report.checkpoint.to_bytes())
        if report.epoch == spec.epochs:
            last.append(epoch)
        else:
            record_epoch(engine, run_id, attempt, *epoch)
        phases.epoch_writes += time.perf_counter() - started
        if spec.prune and report.epoch > spec.prune_warmup and report.epoch < spec.epochs:
            reason = prune_reason(engine, run_id, report.epoch, report.val.total)
            if reason is not None:
                raise Pruned(reason)

    try:
        data = cached_data(spec, lambda: build_data(spec, *load_user_rows(engine, spec)))
        resume = resume_point(engine, run_id, attempt, spec)
        phases.mark("set_up")
        result = fit(
            spec,
            data,
            on_epoch=on_epoch,
            stop=heartbeat.stop,
            resume=resume,
            checkpoints=True,
            on_batch=heartbeat.tick,
        )
        phases.mark("trained")
    except LeaseLost:
        return None, None, None, None
    except Pruned as pruned:
        return RunStatus.PRUNED, str(pruned), None, None
    except INFRASTRUCTURE_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - any training error fails the run, not the worker
        if is_device_fault(exc):
            raise device_fault(spec.device, auto_device(), exc) from exc
        return RunStatus.FAILED, one_line(exc), traceback.format_exc(), _first(last)
    if result.status == "stopped":
        if heartbeat.reason == "time limit":
            return RunStatus.FAILED, "time limit", None, None
        return None, None, None, None
    status = FIT_STATUS[result.status]
    error = result.reason if status != RunStatus.SUCCEEDED else None
    return status, error, None, _first(last)


def _first(items: list) -> object | None:
    return items[0] if items else None
