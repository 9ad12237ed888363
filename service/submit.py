"""Submitting a run: validate everything, store it as queued, then publish its id."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from service.config import load_settings
from service.errors import BrokerUnavailable, InputError
from service.records import RunRecord
from service.store import NewRun, create_run, delete_queued_run, find_idempotent_run, save_dataset


@dataclass(frozen=True)
class DataFile:
    """A user's JSONL file, validated for its task."""

    sha256: str
    content: bytes
    width: int | None  # numbers per input of a vector task; None for token inputs


def read_data_file(path: Path, task: str, source: str) -> DataFile:
    """Read and validate a user's JSONL file for `task`."""
    from models.jsonl import MAX_DATA_BYTES, DataError, parse_jsonl
    from models.registry import TASKS

    if not path.is_file():
        raise InputError(f"{source} file not found: {path}")
    if path.stat().st_size > MAX_DATA_BYTES:
        raise InputError(
            f"{path.name} is {path.stat().st_size} bytes; the limit is {MAX_DATA_BYTES} bytes"
        )
    content = path.read_bytes()
    try:
        rows = parse_jsonl(content, task, path.name)
    except DataError as exc:
        raise InputError(str(exc)) from None
    width = len(rows[0]["input"]) if TASKS[task].input_kind == "vector" else None
    return DataFile(hashlib.sha256(content).hexdigest(), content, width)


def validate_spec(raw: Mapping[str, Any]):  # noqa: ANN201 - models.spec.TrainSpec, imported lazily
    from models.spec import SpecError, spec_from_dict

    try:
        return spec_from_dict(dict(raw))
    except SpecError as exc:
        raise InputError(str(exc)) from None


def prepare_spec(
    raw: Mapping[str, Any],
    data: Path | None,
    val_data: Path | None,
    read: Callable[[Path, str, str], DataFile] = read_data_file,
) -> tuple[Any, dict[str, bytes]]:
    """The validated spec with its data files' digests, and the files' bytes by digest.

    A sweep passes a cached `read`, so that each file is read and checked once per task."""
    spec = validate_spec(raw)
    read_files = {
        field: read(path, spec.task, field.replace("_", "-"))
        for field, path in (("data", data), ("val_data", val_data))
        if path is not None
    }
    if len(read_files) == 2 and read_files["data"].width != read_files["val_data"].width:
        raise InputError(
            f"--val-data inputs have {read_files['val_data'].width} numbers but --data inputs "
            f"have {read_files['data'].width}; both files must have the same input length"
        )
    if read_files:
        spec = validate_spec({**spec.to_dict(), **{f: d.sha256 for f, d in read_files.items()}})
    return spec, {d.sha256: d.content for d in read_files.values()}


def _same_submission(existing: RunRecord, new: NewRun) -> None:
    """An idempotency key names one submission: the same spec (checked by the store), and the
    same experiment, priority and tags."""
    theirs = (existing.experiment, existing.priority, dict(existing.tags))
    ours = (new.experiment, new.priority, dict(new.tags or {}))
    if theirs != ours:
        raise InputError(
            f"idempotency key {new.idempotency_key!r} already names run {existing.id} "
            "with other parameters"
        )


def submit_spec(
    engine: Engine,
    app,  # noqa: ANN001 - a Celery app, imported lazily
    spec,  # noqa: ANN001 - models.spec.TrainSpec
    files: Mapping[str, bytes],
    new: NewRun,
    max_attempts: int | None = None,
) -> RunRecord:
    """Store the run as queued and publish it: one run and one message per idempotency key.

    A broker failure removes the run again, so that no run waits for a message that was never
    sent; should a worker have claimed it meanwhile (the message did go out), it stays.
    `max_attempts` defaults to EXPQ_MAX_ATTEMPTS.
    """
    from workers.dispatch import publish_run

    new = replace(new, max_attempts=max_attempts or load_settings().max_attempts)
    spec_dict = spec.to_dict()
    if new.idempotency_key is not None:
        existing = find_idempotent_run(engine, new.idempotency_key, spec_dict)
        if existing is not None:
            _same_submission(existing, new)
            return existing
    for digest, content in files.items():
        save_dataset(engine, digest, content)
    try:
        run = create_run(engine, spec_dict, spec.params(), new)
    except IntegrityError:
        # A concurrent submitter with the same key won the insert: it alone publishes.
        existing = find_idempotent_run(engine, new.idempotency_key or "", spec_dict)
        if existing is None:
            raise
        _same_submission(existing, new)
        return existing
    try:
        publish_run(app, run.id, new.queue, new.priority)
    except BrokerUnavailable:
        if delete_queued_run(engine, run.id):
            raise
        return run
    return run
