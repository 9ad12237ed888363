"""Submitting a run: validate everything, store it as queued, then publish its id."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from service.errors import BrokerUnavailable, InputError
from service.records import RunRecord
from service.store import NewRun, create_run, delete_queued_run, find_idempotent_run, save_dataset


def read_data_file(path: Path, task: str, source: str) -> tuple[str, bytes]:
    """Validate a user's JSONL file for `task`; its sha256 and bytes."""
    from models.jsonl import MAX_DATA_BYTES, DataError, parse_jsonl

    if not path.is_file():
        raise InputError(f"{source} file not found: {path}")
    if path.stat().st_size > MAX_DATA_BYTES:
        raise InputError(
            f"{path.name} is {path.stat().st_size} bytes; the limit is {MAX_DATA_BYTES} bytes"
        )
    content = path.read_bytes()
    try:
        parse_jsonl(content, task, path.name)
    except DataError as exc:
        raise InputError(str(exc)) from None
    return hashlib.sha256(content).hexdigest(), content


def validate_spec(raw: Mapping[str, Any]):  # noqa: ANN201 - models.spec.TrainSpec, imported lazily
    from models.spec import SpecError, spec_from_dict

    try:
        return spec_from_dict(dict(raw))
    except SpecError as exc:
        raise InputError(str(exc)) from None


def prepare_spec(
    raw: Mapping[str, Any], data: Path | None, val_data: Path | None
) -> tuple[Any, dict[str, bytes]]:
    """The validated spec with its data files' digests, and the files' bytes by digest."""
    spec = validate_spec(raw)
    files: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    for field, path in (("data", data), ("val_data", val_data)):
        if path is not None:
            digest, content = read_data_file(path, spec.task, field.replace("_", "-"))
            files[digest] = content
            digests[field] = digest
    if digests:
        spec = validate_spec({**spec.to_dict(), **digests})
    return spec, files


def submit_spec(engine: Engine, app, spec, files: Mapping[str, bytes], new: NewRun) -> RunRecord:  # noqa: ANN001
    """Store the run as queued and publish it; a broker failure removes the run again."""
    from workers.dispatch import publish_run

    spec_dict = spec.to_dict()
    if new.idempotency_key is not None:
        existing = find_idempotent_run(engine, new.idempotency_key, spec_dict)
        if existing is not None:
            return existing
    for digest, content in files.items():
        save_dataset(engine, digest, content)
    try:
        run = create_run(engine, spec_dict, spec.params(), new)
    except IntegrityError:
        # A concurrent submitter with the same key won the insert: one run, one message.
        existing = find_idempotent_run(engine, new.idempotency_key or "", spec_dict)
        if existing is None:
            raise
        return existing
    try:
        publish_run(app, run.id, new.queue, new.priority)
    except BrokerUnavailable:
        delete_queued_run(engine, run.id)
        raise
    return run
