"""How a training attempt ends: which failures are the run's and which only the attempt's, and
the recording of each end, shared by a solo run (workers/runner.py) and a fused group's members
(workers/group.py).

Failures fall in two kinds. A deterministic one (an invalid spec, bad data, a non-finite loss,
CUDA out of memory, a device-side assert, any other exception from training) ends the run at
once: another attempt would fail the same way. An infrastructure one (the database
unreachable, the process killed or hung, a device or driver fault) ends only this attempt:
the lease expires, the reaper queues the run again, and after `max_attempts` lost attempts it fails
with the last reason. So one sick machine cannot drain a queue into `failed`, and one run that
breaks every device it touches takes at most `max_attempts` workers off their device.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, InternalError, OperationalError

from service.config import Settings
from service.lifecycle import LeaseLost, finish_run, finished_as, is_cancelled, release_lease
from service.schema import RunStatus

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
FIT_STATUS = {
    "completed": RunStatus.SUCCEEDED,
    "early_stopped": RunStatus.SUCCEEDED,
    "diverged": RunStatus.DIVERGED,
}


class Pruned(Exception):
    """The pruner (median or ASHA, among its peers) stopped the run: it ends marked pruned."""


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


def device_fault(requested: str, auto_device: str, exc: BaseException) -> DeviceFault:
    """The DeviceFault for `exc`, raised by training on the device a spec `requested`."""
    device = requested if requested in ("cpu", "cuda") else auto_device
    return DeviceFault(device, auto_device, f"device fault on {device}: {one_line(exc)}")


def one_line(exc: BaseException) -> str:
    """An exception as the one line a run's error keeps."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def exit_hung(reason: str) -> None:
    """A hung training thread cannot be stopped from inside: end the process, so that its
    worker releases the claim and the pool starts a fresh one."""
    sys.stderr.flush()
    os._exit(EXIT_HUNG)


def give_up(
    engine: Engine, run_id: int, owner: str, reason: str, on_hung: Callable[[str], None]
) -> None:
    """Release a hung run's lease, so that the reaper queues it again without waiting for the
    process's death to be noticed, then call `on_hung`. A release that hangs too is given
    HUNG_RELEASE_SECONDS: the lease then runs out by itself."""
    releasing = threading.Thread(
        target=release,
        args=(engine, run_id, owner, f"{reason}; its process was ended"),
        name=f"release-{run_id}",
        daemon=True,
    )
    releasing.start()
    releasing.join(HUNG_RELEASE_SECONDS)
    on_hung(reason)


def finish_attempt(
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
    training is worth keeping. A retry after a commit whose reply was lost finds it done.
    The status the run ended in, or None when this attempt no longer held it."""
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
            return lost(engine, run_id, attempt)
        except INFRASTRUCTURE_ERRORS:
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "run %s attempt %s: database error while finishing; retrying", run_id, attempt
            )
            time.sleep(delay)
            delay, retried = min(delay * 2, 5.0), True


def release(engine: Engine, run_id: int, owner: str, reason: str) -> None:
    """Give the attempt's lease back at once, noting why; an unreachable database lets the
    lease run out by itself."""
    try:
        release_lease(engine, run_id, owner, reason)
    except INFRASTRUCTURE_ERRORS:
        pass


def lost(engine: Engine, run_id: int, attempt: int) -> str | None:
    """This attempt no longer holds the run: cancelled by the user, or reclaimed after a stall.
    "cancelled" for the first, None for the second."""
    if is_cancelled(engine, run_id):
        log.info("run %s attempt %s: cancelled; stopped", run_id, attempt)
        return RunStatus.CANCELLED
    log.warning("run %s attempt %s: lease lost; stopped without further writes", run_id, attempt)
    return None
