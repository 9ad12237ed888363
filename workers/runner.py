"""One run from claim to terminal state: the logic behind the thin Celery task.

Failures fall in two kinds. A deterministic one (an invalid spec, bad data, a non-finite loss,
CUDA out of memory, a device-side assert, any other exception from training) ends the run at
once: another attempt would fail the same way. An infrastructure one (the database
unreachable, the process killed or hung, a device or driver fault) ends only this attempt:
the lease expires, the reaper queues the run again, and after `max_attempts` claims it fails
with the last reason. So one sick machine cannot drain a queue into `failed`, and one run that
breaks every device it touches takes at most `max_attempts` workers off their device.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, InternalError, OperationalError

from service.checkpoints import adopt_checkpoint, load_checkpoint
from service.config import Settings
from service.lifecycle import (
    LeaseLost,
    claim_for_training,
    finish_run,
    finished_as,
    is_cancelled,
    record_epoch,
    release_lease,
)
from service.pruning import prune_reason
from service.schema import RunStatus
from service.store import load_dataset
from workers.data_cache import cached_data
from workers.lease import Heartbeat

log = logging.getLogger(__name__)

# The database went away, or ended this session's transaction (InternalError: PostgreSQL's
# idle-in-transaction timeout after a freeze, a failover to a read-only standby): nothing
# about the run itself is wrong.
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, InternalError)

# A CUDA runtime, driver or library error that says the device or its driver is broken. Out of
# memory (the run's own size) and a device-side assert (an index the run's data puts out of
# range) are the run's, and fail it.
_DEVICE_FAULTS = (
    "CUDA error",
    "CUDA driver",
    "CUBLAS_STATUS_EXECUTION_FAILED",
    "CUBLAS_STATUS_INTERNAL_ERROR",
    "CUBLAS_STATUS_NOT_INITIALIZED",
    "CUDNN_STATUS_EXECUTION_FAILED",
    "CUDNN_STATUS_INTERNAL_ERROR",
    "CUDNN_STATUS_MAPPING_ERROR",
    "no CUDA-capable device",
)
_RUN_FAULTS = ("out of memory", "device-side assert")
# A training process that ends itself after its watchdog saw no progress (workers/tasks.py
# reads the code back).
EXIT_HUNG = 75
HUNG_RELEASE_SECONDS = 2.0

# fit's outcome → the run's terminal status.
_FIT_STATUS = {
    "completed": RunStatus.SUCCEEDED,
    "early_stopped": RunStatus.SUCCEEDED,
    "diverged": RunStatus.DIVERGED,
}


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


class DeviceFault(Exception):
    """Training hit a fault of the device it ran on; the attempt was ended, not the run.
    `auto_device` is where this worker trains a run that asked for auto."""

    def __init__(self, device: str, auto_device: str, reason: str) -> None:
        super().__init__(reason)
        self.device = device
        self.auto_device = auto_device


def is_device_fault(exc: BaseException) -> bool:
    """Whether an exception from training says the device or its driver is broken."""
    text = str(exc)
    if type(exc).__name__ == "OutOfMemoryError" or any(m in text for m in _RUN_FAULTS):
        return False
    return type(exc).__name__ == "AcceleratorError" or any(m in text for m in _DEVICE_FAULTS)


def _exit_hung(reason: str) -> None:
    """A hung training thread cannot be stopped from inside: end the process, so that its
    worker releases the claim and the pool starts a fresh one."""
    sys.stderr.flush()
    os._exit(EXIT_HUNG)


def _give_up(
    engine: Engine, run_id: int, owner: str, reason: str, on_hung: Callable[[str], None]
) -> None:
    """Release a hung run's lease, so that the reaper queues it again without waiting for the
    process's death to be noticed, then call `on_hung`. A release that hangs too is given
    HUNG_RELEASE_SECONDS: the lease then runs out by itself."""
    release = threading.Thread(
        target=_release,
        args=(engine, run_id, owner, f"{reason}; its process was ended"),
        name=f"release-{run_id}",
        daemon=True,
    )
    release.start()
    release.join(HUNG_RELEASE_SECONDS)
    on_hung(reason)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _load_user_rows(engine: Engine, spec) -> tuple[list[dict] | None, list[dict] | None]:  # noqa: ANN001
    from models.jsonl import parse_jsonl

    rows = []
    for sha256, source in ((spec.data, "data"), (spec.val_data, "val_data")):
        rows.append(
            None if sha256 is None else parse_jsonl(load_dataset(engine, sha256), spec.task, source)
        )
    return rows[0], rows[1]


@functools.cache
def _auto_device() -> str:
    """Where this worker trains a run that asked for auto."""
    from models.training import resolve_device

    return resolve_device("auto")


def _validate(raw: object) -> tuple[object | None, str | None]:
    """(spec, error): the worker checks the stored spec again before it trains."""
    from models.spec import spec_from_dict
    from models.training import resolve_device

    try:
        spec = spec_from_dict(raw)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any malformed row fails its run, not the worker
        return None, f"invalid spec: {exc}"
    try:
        resolve_device(spec.device)
    except Exception as exc:  # noqa: BLE001 - DeviceError, or a broken CUDA install
        return spec, str(exc)
    return spec, None


def execute_run(
    engine: Engine,
    run_id: int,
    settings: Settings,
    owner: str | None = None,
    worker: str | None = None,
    on_hung: Callable[[str], None] = _exit_hung,
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
        auto_device=_auto_device(),
        lease_seconds=settings.lease_seconds,
    )
    if claimed is None:
        log.info("run %s: not queued; message dropped", run_id)
        return None
    attempt = claimed.attempt
    spec, setup_error = _validate(claimed.spec)
    phases.mark("claimed")
    if setup_error is not None:
        return _finish(engine, run_id, attempt, RunStatus.FAILED, setup_error, None, settings)

    heartbeat = Heartbeat(
        engine,
        run_id,
        attempt,
        interval=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
        time_limit=spec.time_limit,
        progress_timeout=settings.progress_timeout_seconds,
        on_hung=lambda reason: _give_up(engine, run_id, owner, reason, on_hung),
    )
    heartbeat.start()
    try:
        try:
            status, error, trace, last = _train(engine, run_id, attempt, spec, heartbeat, phases)
            heartbeat.trained()
        except DeviceFault as fault:
            log.error("run %s attempt %s: %s; attempt ended", run_id, attempt, fault)
            _release(engine, run_id, owner, str(fault))
            raise
        if status is None:
            return _lost(engine, run_id, attempt)
        ended = _finish(engine, run_id, attempt, status, error, trace, settings, last)
    except INFRASTRUCTURE_ERRORS as exc:
        # This attempt cannot record anything; the next one will, once the database is back.
        log.warning(
            "run %s attempt %s: database error, attempt abandoned: %s",
            run_id,
            attempt,
            _one_line(exc),
        )
        _release(engine, run_id, owner, f"database error: {_one_line(exc)}")
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
        data = cached_data(spec, lambda: build_data(spec, *_load_user_rows(engine, spec)))
        resume = _resume_point(engine, run_id, attempt, spec)
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
            device = spec.device if spec.device in ("cpu", "cuda") else _auto_device()
            reason = f"device fault on {device}: {_one_line(exc)}"
            raise DeviceFault(device, _auto_device(), reason) from exc
        return RunStatus.FAILED, _one_line(exc), traceback.format_exc(), _first(last)
    if result.status == "stopped":
        if heartbeat.reason == "time limit":
            return RunStatus.FAILED, "time limit", None, None
        return None, None, None, None
    status = _FIT_STATUS[result.status]
    error = result.reason if status != RunStatus.SUCCEEDED else None
    return status, error, None, _first(last)


class Pruned(Exception):
    """The pruner (median or ASHA, among its peers) stopped the run: it ends marked pruned."""


def _resume_point(engine: Engine, run_id: int, attempt: int, spec):  # noqa: ANN001, ANN202
    """The checkpoint an earlier attempt left, adopted by this one; None to start at epoch 1."""
    from models.checkpoint import TrainingState

    stored = load_checkpoint(engine, run_id)
    if stored is None or stored.attempt >= attempt or stored.epoch >= spec.epochs:
        return None
    if not adopt_checkpoint(engine, run_id, attempt, stored):
        raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")
    log.info("run %s attempt %s: resuming after epoch %s", run_id, attempt, stored.epoch)
    return TrainingState.from_bytes(stored.state)


def _first(items: list) -> object | None:
    return items[0] if items else None


def _finish(
    engine: Engine,
    run_id: int,
    attempt: int,
    status: RunStatus,
    error: str | None,
    trace: str | None,
    settings: Settings,
    last_epoch: tuple | None = None,
) -> str | None:
    """Record the outcome, retrying through a database blip for up to one lease: a finished
    training is worth keeping. A retry after a commit whose reply was lost finds it done."""
    deadline = time.monotonic() + settings.lease_seconds
    delay, retried = 0.2, False
    while True:
        try:
            finish_run(
                engine, run_id, attempt, status, error=error, traceback=trace, last_epoch=last_epoch
            )
            return status
        except LeaseLost:
            if retried and finished_as(engine, run_id, attempt) == status:
                return status
            return _lost(engine, run_id, attempt)
        except INFRASTRUCTURE_ERRORS:
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "run %s attempt %s: database error while finishing; retrying", run_id, attempt
            )
            time.sleep(delay)
            delay, retried = min(delay * 2, 5.0), True


def _release(engine: Engine, run_id: int, owner: str, reason: str) -> None:
    try:
        release_lease(engine, run_id, owner, reason)
    except INFRASTRUCTURE_ERRORS:
        pass  # still unreachable: the lease runs out by itself


def _lost(engine: Engine, run_id: int, attempt: int) -> str | None:
    """This attempt no longer holds the run: cancelled by the user, or reclaimed after a stall."""
    if is_cancelled(engine, run_id):
        log.info("run %s attempt %s: cancelled; stopped", run_id, attempt)
        return RunStatus.CANCELLED
    log.warning("run %s attempt %s: lease lost; stopped without further writes", run_id, attempt)
    return None
