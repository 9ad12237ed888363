"""One run from claim to terminal state: the logic behind the thin Celery task."""

from __future__ import annotations

import logging
import os
import socket
import traceback
import uuid

from sqlalchemy import Engine

from service.config import Settings
from service.lifecycle import LeaseLost, claim_run, finish_run, is_cancelled, record_epoch
from service.schema import RunStatus
from service.store import get_run, load_dataset
from workers.lease import Heartbeat

log = logging.getLogger(__name__)

# fit's outcome → the run's terminal status.
_FIT_STATUS = {
    "completed": RunStatus.SUCCEEDED,
    "early_stopped": RunStatus.SUCCEEDED,
    "diverged": RunStatus.DIVERGED,
}


def worker_identity() -> tuple[str, str]:
    """(hostname, lease owner): the owner is unique per process and claim."""
    hostname = socket.gethostname()
    return hostname, f"{hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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


def execute_run(engine: Engine, run_id: int, settings: Settings) -> str | None:
    """Claim, train and finish one run; the status it ended in, or None when it was not ours."""
    from models.spec import SpecError, spec_from_dict
    from models.training import DeviceError, fit, resolve_device

    run = get_run(engine, run_id)
    if run is None or run.status != RunStatus.QUEUED:
        log.info("run %s: not queued (%s); message dropped", run_id, run and run.status)
        return None
    setup_error: str | None = None
    device = run.spec.get("device", "auto")
    try:
        spec = spec_from_dict(run.spec)
        device = resolve_device(spec.device)
    except (SpecError, DeviceError) as exc:
        setup_error = f"invalid spec: {exc}" if isinstance(exc, SpecError) else str(exc)
    hostname, owner = worker_identity()
    attempt = claim_run(
        engine,
        run_id,
        owner=owner,
        worker=hostname,
        device=str(device),
        lease_seconds=settings.lease_seconds,
    )
    if attempt is None:
        log.info("run %s: claimed by another worker; message dropped", run_id)
        return None
    if setup_error is not None:
        finish_run(engine, run_id, attempt, RunStatus.FAILED, error=setup_error)
        return RunStatus.FAILED

    heartbeat = Heartbeat(
        engine,
        run_id,
        attempt,
        interval=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
        time_limit=spec.time_limit,
    )
    heartbeat.start()
    try:
        train_rows, val_rows = _load_user_rows(engine, spec)
        from models.data import build_data

        data = build_data(spec, train_rows, val_rows)
        result = fit(
            spec,
            data,
            on_epoch=lambda report: record_epoch(
                engine, run_id, attempt, report.epoch, {"train": report.train, "val": report.val}
            ),
            stop=heartbeat.stop,
        )
    except LeaseLost:
        return _lost(engine, run_id, attempt)
    except Exception as exc:  # noqa: BLE001 - any training error fails the run, not the worker
        return _finish(
            engine, run_id, attempt, RunStatus.FAILED, _one_line(exc), traceback.format_exc()
        )
    finally:
        heartbeat.finish()

    if result.status == "stopped":
        if heartbeat.reason == "time limit":
            return _finish(engine, run_id, attempt, RunStatus.FAILED, "time limit", None)
        return _lost(engine, run_id, attempt)
    status = _FIT_STATUS[result.status]
    error = result.reason if status != RunStatus.SUCCEEDED else None
    return _finish(engine, run_id, attempt, status, error, None)


def _finish(
    engine: Engine,
    run_id: int,
    attempt: int,
    status: RunStatus,
    error: str | None,
    trace: str | None,
) -> str | None:
    try:
        finish_run(engine, run_id, attempt, status, error=error, traceback=trace)
    except LeaseLost:
        return _lost(engine, run_id, attempt)
    return status


def _lost(engine: Engine, run_id: int, attempt: int) -> str | None:
    """This attempt no longer holds the run: cancelled by the user, or reclaimed after a stall."""
    if is_cancelled(engine, run_id):
        log.info("run %s attempt %s: cancelled", run_id, attempt)
        return RunStatus.CANCELLED
    log.warning("run %s attempt %s: lease lost; stopped without further writes", run_id, attempt)
    return None
