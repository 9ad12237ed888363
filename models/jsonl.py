"""User data files: parse and validate JSONL rows in plain Python (no torch).

The CLI calls `parse_jsonl` at submit time, so a bad file fails with a one-line error naming
the file and line before anything is stored; the worker parses the stored bytes again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from models.registry import TASKS

MAX_DATA_BYTES = 64 * 1024 * 1024
# Vocabularies reserve these for padding, unknown tokens and sequence boundaries.
RESERVED_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
# Inputs are trained as float32: a larger number is infinite there.
FLOAT32_MAX = 3.4028234663852886e38
# The parts of a row that the task's seq_len measures in its built-in data (models/tasks.py):
# a user's rows get the same upper bound (models/registry.py), so they train as fast.
SEQ_LEN_BOUNDS: dict[str, tuple[str, ...]] = {
    "binary": ("input",),
    "sentiment": ("input",),
    "captioning": ("target",),
    "translation": ("input", "target"),
}

Label = int | str


class DataError(ValueError):
    """A data file is unusable; the message is one line with the source and line number."""


@dataclass(frozen=True)
class ParsedData:
    """A file's valid rows, and where each label first appears (label tasks only)."""

    rows: list[dict]
    labels: dict[str, tuple[Label, int]]  # the label as printed -> (the label, its first line)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:21]}..."


def number_problem(item: Any) -> str | None:
    """Why `item` cannot be an input number (float32, as the networks read it), or None."""
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return f"must be a list of numbers; found {_short(item)}"
    if isinstance(item, float) and not math.isfinite(item):
        return f"must contain finite numbers; found {item!r}"
    if abs(item) > FLOAT32_MAX:  # exact for integers of any size, which float() may not be
        return f"must contain numbers within +-{FLOAT32_MAX:.4g} (float32); found {_short(item)}"
    return None


def _numbers(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of numbers"
    for item in value:
        problem = number_problem(item)
        if problem:
            return problem
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
    return _too_long(row, task)


def _too_long(row: dict, task: str) -> str | None:
    most = TASKS[task].seq_len[1]
    for key in SEQ_LEN_BOUNDS[task]:
        if len(row[key]) > most:
            unit = "numbers" if key == "input" and TASKS[task].input_kind == "vector" else "tokens"
            return (
                f"{key} has {len(row[key])} {unit}; task {task} takes at most {most} "
                "(its seq_len limit)"
            )
    return None


def _describe(label: Label) -> str:
    return f"{label!r} (a {'string' if isinstance(label, str) else 'number'})"


def label_clash(label: Label, where: str, earlier: Label, earlier_where: str) -> str | None:
    """The problem when two labels differ but print alike (1 and "1" would be two classes
    that read the same), or None."""
    if label == earlier:
        return None
    return (
        f"{where}: label {_describe(label)} and {earlier_where}'s label {_describe(earlier)} "
        "would be two classes that print alike; write each label one way"
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in JSON")


def parse_jsonl(content: bytes, task: str, source: str = "data") -> list[dict]:
    """Validate `content` for `task` and return its rows as {"input": ..., "target": ...}."""
    return read_jsonl(content, task, source).rows


def read_jsonl(content: bytes, task: str, source: str = "data") -> ParsedData:
    """`parse_jsonl`, with the first line of every label kept to check another file against."""
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
    labels: dict[str, tuple[Label, int]] = {}
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
        if TASKS[task].target_kind == "label":
            earlier, line = labels.setdefault(str(row["target"]), (row["target"], number))
            clash = label_clash(row["target"], f"{source} line {number}", earlier, f"line {line}")
            if clash:
                raise DataError(clash)
        rows.append({"input": row["input"], "target": row["target"]})
    if not rows:
        raise DataError(f"{source}: no rows (the file is empty)")
    if TASKS[task].target_kind == "label" and len(labels) < 2:
        raise DataError(f"{source}: task {task} needs at least 2 distinct labels; found 1")
    return ParsedData(rows, labels)
