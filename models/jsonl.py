"""User data files: parse and validate JSONL rows in plain Python (no torch).

The CLI calls `parse_jsonl` at submit time, so a bad file fails with a one-line error naming
the file and line before anything is stored; the worker parses the stored bytes again.
"""

from __future__ import annotations

import json
import math
from typing import Any

from models.registry import TASKS

MAX_DATA_BYTES = 64 * 1024 * 1024
# Vocabularies reserve these for padding, unknown tokens and sequence boundaries.
RESERVED_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")


class DataError(ValueError):
    """A data file is unusable; the message is one line with the source and line number."""


def _numbers(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of numbers"
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            return f"must be a list of numbers; found {item!r}"
        if not math.isfinite(item):
            return f"must contain finite numbers; found {item!r}"
    return None


def _tokens(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of strings"
    for item in value:
        if not isinstance(item, str) or not item:
            return f"must be a list of non-empty strings; found {item!r}"
        if item in RESERVED_TOKENS:
            return f"uses the reserved token {item!r}"
    return None


def _label(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"must be a label (an integer or a string); found {value!r}"
    return None


def _check_row(row: Any, task: str) -> str | None:
    """The problem with one decoded row, or None when it fits the task."""
    if not isinstance(row, dict):
        return 'must be an object {"input": ..., "target": ...}'
    for key in ("input", "target"):
        if key not in row:
            return f"missing key {key!r}"
    info = TASKS[task]
    problem = (_numbers if info.input_kind == "vector" else _tokens)(row["input"])
    if problem:
        kind = "numbers" if info.input_kind == "vector" else "strings"
        return f"input {problem} (task {task} takes a list of {kind})"
    problem = (_label if info.target_kind == "label" else _tokens)(row["target"])
    if problem:
        return f"target {problem} for task {task}"
    return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in JSON")


def parse_jsonl(content: bytes, task: str, source: str = "data") -> list[dict]:
    """Validate `content` for `task` and return its rows as {"input": ..., "target": ...}."""
    if task not in TASKS:
        raise DataError(f"{source}: unknown task {task!r}")
    if len(content) > MAX_DATA_BYTES:
        raise DataError(
            f"{source}: {len(content):,} bytes is over the {MAX_DATA_BYTES // 2**20} MiB limit"
        )
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise DataError(f"{source} line {line}: not valid UTF-8") from None
    rows: list[dict] = []
    width: tuple[int, int] | None = None  # (numbers per input, line that set it)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_reject_constant)
        except ValueError as error:
            raise DataError(f"{source} line {number}: invalid JSON ({error})") from None
        problem = _check_row(row, task)
        if problem:
            raise DataError(f"{source} line {number}: {problem}")
        if TASKS[task].input_kind == "vector":
            if width is None:
                width = (len(row["input"]), number)
            elif len(row["input"]) != width[0]:
                raise DataError(
                    f"{source} line {number}: input has {len(row['input'])} numbers but line "
                    f"{width[1]} has {width[0]}; every input must have the same length"
                )
        rows.append({"input": row["input"], "target": row["target"]})
    if not rows:
        raise DataError(f"{source}: no rows (the file is empty)")
    if TASKS[task].target_kind == "label":
        labels = {(type(row["target"]).__name__, row["target"]) for row in rows}
        if len(labels) < 2:
            raise DataError(f"{source}: task {task} needs at least 2 distinct labels; found 1")
    return rows
