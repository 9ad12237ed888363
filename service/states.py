"""The states a run and a study move through, as stored in their `status` and `state` columns."""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"
    PRUNED = "pruned"

    @classmethod
    def terminal(cls) -> frozenset[RunStatus]:
        return frozenset({cls.SUCCEEDED, cls.FAILED, cls.DIVERGED, cls.CANCELLED, cls.PRUNED})


class StudyState(enum.StrEnum):
    ACTIVE = "active"  # trials are added as others end, up to `parallel` in flight
    STOPPED = "stopped"  # by `expq sweep stop`: nothing more is added
    DONE = "done"  # every one of its `trials` trials ended
