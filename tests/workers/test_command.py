from __future__ import annotations

import pytest

from workers.command import WorkerConfigError, resolve_queues


def test_default_queues_follow_the_hardware() -> None:
    assert resolve_queues(None, has_cuda=True) == ["gpu", "auto"]
    assert resolve_queues(None, has_cuda=False) == ["cpu", "auto"]


def test_explicit_queues_are_checked() -> None:
    assert resolve_queues("cpu, auto", has_cuda=False) == ["cpu", "auto"]
    with pytest.raises(WorkerConfigError, match="unknown queue 'tpu'"):
        resolve_queues("cpu,tpu", has_cuda=False)
    with pytest.raises(WorkerConfigError, match="needs CUDA"):
        resolve_queues("gpu", has_cuda=False)
