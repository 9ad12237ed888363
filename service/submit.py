"""Submitting a run: validate everything, store it as queued, then publish its id."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from service.config import load_settings
from service.errors import BrokerUnavailable, InputError
from service.records import RunRecord
from service.store import (
    NewRun,
    create_run,
    delete_queued_run,
    find_idempotent_run,
    get_runs,
    load_dataset,
    save_dataset,
)


@dataclass(frozen=True)
class DataFile:
    """A user's JSONL data, validated for a task."""

    sha256: str
    content: bytes
    width: int | None  # numbers per input of a vector task; None for token inputs
    labels: Mapping[str, tuple[int | str, str]]  # label as printed -> (label, where first seen)


# (sha256, task, spec field) -> the stored data a spec names, validated for `task`
StoredReader = Callable[[str, str, str], DataFile]


def check_data(content: bytes, task: str, source: str) -> DataFile:
    """Validate JSONL bytes for `task`; errors name `source` and the line."""
    from models.jsonl import DataError, read_jsonl
    from models.registry import TASKS

    try:
        parsed = read_jsonl(content, task, source)
    except DataError as exc:
        raise InputError(str(exc)) from None
    width = len(parsed.rows[0]["input"]) if TASKS[task].input_kind == "vector" else None
    labels = {
        text: (label, f"{source} line {line}") for text, (label, line) in parsed.labels.items()
    }
    return DataFile(hashlib.sha256(content).hexdigest(), content, width, labels)


def read_data_file(path: Path, task: str, source: str) -> DataFile:
    """Read and validate a user's JSONL file for `task`."""
    from models.jsonl import MAX_DATA_BYTES

    if not path.is_file():
        raise InputError(f"{source} file not found: {path}")
    if path.stat().st_size > MAX_DATA_BYTES:
        raise InputError(
            f"{path.name} is {path.stat().st_size} bytes; the limit is {MAX_DATA_BYTES} bytes"
        )
    return check_data(path.read_bytes(), task, path.name)


def stored_data_reader(engine: Engine, run_id: int) -> StoredReader:
    """Reads the data files run `run_id` trained on, for a spec that starts from it."""

    def read(sha256: str, task: str, field: str) -> DataFile:
        return check_data(load_dataset(engine, sha256), task, f"run {run_id}'s {field}")

    return read


def validate_spec(raw: Mapping[str, Any]):  # noqa: ANN201 - models.spec.TrainSpec, imported lazily
    from models.spec import SpecError, spec_from_dict

    try:
        return spec_from_dict(dict(raw))
    except SpecError as exc:
        raise InputError(str(exc)) from None


def _check_together(train: DataFile, val: DataFile) -> None:
    """What only both files together can get wrong: input widths, labels that print alike."""
    from models.jsonl import label_clash

    if train.width != val.width:
        raise InputError(
            f"--val-data inputs have {val.width} numbers but --data inputs "
            f"have {train.width}; both files must have the same input length"
        )
    for text, (label, where) in val.labels.items():
        if text in train.labels:
            clash = label_clash(label, where, *train.labels[text])
            if clash:
                raise InputError(clash)


def prepare_spec(
    raw: Mapping[str, Any],
    data: Path | None,
    val_data: Path | None,
    read: Callable[[Path, str, str], DataFile] = read_data_file,
    stored: StoredReader | None = None,
) -> tuple[Any, dict[str, bytes]]:
    """The validated spec with its data files' digests, and the new files' bytes by digest.

    Every file the run will train on is checked against the spec's task: a file given by
    path, else the stored data the raw spec already names (a --from-run), read by `stored`.
    A sweep passes a cached `read`, so that each file is read and checked once per task."""
    spec = validate_spec(raw)
    given = {
        field: read(path, spec.task, field.replace("_", "-"))
        for field, path in (("data", data), ("val_data", val_data))
        if path is not None
    }
    kept = {}
    for field in ("data", "val_data"):
        sha256 = getattr(spec, field)
        if field not in given and sha256 is not None:
            if stored is None:
                raise ValueError(f"the spec names stored {field} but no reader was given")
            kept[field] = stored(sha256, spec.task, field.replace("_", "-"))
    files = {**kept, **given}
    if len(files) == 2:
        _check_together(files["data"], files["val_data"])
    if given:
        spec = validate_spec({**spec.to_dict(), **{f: d.sha256 for f, d in given.items()}})
    return spec, {d.sha256: d.content for d in given.values()}


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


def submit_batch(
    engine: Engine,
    app,  # noqa: ANN001 - a Celery app, imported lazily
    experiment: str,
    batch: Sequence[tuple[Any, NewRun]],
) -> list[RunRecord]:
    """Store runs of one experiment as queued in one transaction, then publish them over one
    producer: a sweep's batch. Their data must be saved already and they carry no idempotency
    key. A broker failure removes the runs of the batch whose message was not sent."""
    from service.run_insert import insert_runs, new_run_values
    from workers.dispatch import broker_error, publish_run

    max_attempts = load_settings().max_attempts
    rows = [
        (
            new_run_values(
                spec.to_dict(), queue=new.queue, priority=new.priority, max_attempts=max_attempts
            ),
            spec.params(),
            dict(new.tags or {}),
        )
        for spec, new in batch
    ]
    run_ids = insert_runs(engine, experiment, rows)
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for run_id, (_, new) in zip(run_ids, batch, strict=True):
                publish_run(app, run_id, new.queue, new.priority, producer)
                sent += 1
    except BaseException as exc:
        for run_id in run_ids[sent:]:
            delete_queued_run(engine, run_id)
        if isinstance(exc, Exception) and not isinstance(exc, BrokerUnavailable):
            raise broker_error(app, exc) from exc
        raise
    return get_runs(engine, run_ids)
