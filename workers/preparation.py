"""What a claimed run needs before it trains, solo or in a fused group: its spec checked again,
the device an auto run trains on, the user's rows, and the checkpoint it resumes from."""

from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy import Engine

from service.checkpoints import StoredCheckpoint, adopt_checkpoint, load_checkpoint
from service.lifecycle import LeaseLost
from service.store import load_dataset

log = logging.getLogger(__name__)


@functools.cache
def auto_device() -> str:
    """Where this worker trains a run that asked for auto."""
    from models.training import resolve_device

    return resolve_device("auto")


def validate(raw: object) -> tuple[Any | None, str | None]:
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


def load_user_rows(engine: Engine, spec: Any) -> tuple[list[dict] | None, list[dict] | None]:
    """The parsed rows of the spec's --data and --val-data; None for each it does not name."""
    from models.jsonl import parse_jsonl

    rows = []
    for sha256, source in ((spec.data, "data"), (spec.val_data, "val_data")):
        rows.append(
            None if sha256 is None else parse_jsonl(load_dataset(engine, sha256), spec.task, source)
        )
    return rows[0], rows[1]


def resume_point(engine: Engine, run_id: int, attempt: int, spec: Any) -> Any:
    """The checkpoint an earlier attempt left (a models.checkpoint.TrainingState), adopted by
    this one; None to start at epoch 1. LeaseLost when the attempt no longer holds the run."""
    return adopt(engine, run_id, attempt, spec, load_checkpoint(engine, run_id))


def adopt(
    engine: Engine, run_id: int, attempt: int, spec: Any, stored: StoredCheckpoint | None
) -> Any:
    """resume_point from the run's latest checkpoint as read (`stored`, None: it has none):
    a fused group reads its members' in one query (load_checkpoints)."""
    from models.checkpoint import TrainingState

    if stored is None or stored.attempt >= attempt or stored.epoch >= spec.epochs:
        return None
    if not adopt_checkpoint(engine, run_id, attempt, stored):
        raise LeaseLost(f"run {run_id} attempt {attempt} lost its lease")
    log.info("run %s attempt %s: resuming after epoch %s", run_id, attempt, stored.epoch)
    return TrainingState.from_bytes(stored.state)
