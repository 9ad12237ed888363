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
    seq_len: tuple[int, int]  # the seq_len values the generator honours (models/tasks.py)


TASKS: dict[str, TaskInfo] = {  # fmt: skip
    info.name: info
    for info in (
        # seq_len: the input dimension
        TaskInfo("binary", "1->1", "vector", "label", "a vector -> 0/1, non-linear boundary",
                 (1, 512)),
        # the longest sentence; every sentence has at least 3 words
        TaskInfo("sentiment", "N->1", "tokens", "label", "a sentence -> pos/neg, order matters",
                 (3, 512)),
        # the longest caption: two words for each of at most 9 shapes
        TaskInfo("captioning", "1->N", "vector", "tokens", "a small image -> a caption",
                 (2, 18)),
        # the longest source sentence; the shortest has 5 words
        TaskInfo("translation", "N->M", "tokens", "tokens", "a sentence -> its translation",
                 (5, 512)),
    )
}
