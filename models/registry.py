"""The four task types by name, as plain data (no torch), for validation and the CLI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    name: str
    shape: str  # "1->1", "N->1", "1->N" or "N->M"
    input_kind: str  # "vector" (numbers) or "tokens" (strings)
    target_kind: str  # "label" or "tokens"
    description: str


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo("binary", "1->1", "vector", "label", "a vector -> 0/1, non-linear boundary"),
        TaskInfo("sentiment", "N->1", "tokens", "label", "a sentence -> pos/neg, order matters"),
        TaskInfo("captioning", "1->N", "vector", "tokens", "a small image -> a caption"),
        TaskInfo("translation", "N->M", "tokens", "tokens", "a sentence -> its translation"),
    )
}
