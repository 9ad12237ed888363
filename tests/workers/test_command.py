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


def test_a_worker_waits_for_its_database_and_says_why(tmp_path) -> None:  # noqa: ANN001
    from service.demo import free_port
    from workers.command import wait_for_database

    said: list[str] = []

    class Enough(Exception):
        pass

    def sleep(seconds: float) -> None:
        if len(said) == 3:
            raise Enough

    url = f"postgresql+psycopg://expq:hunter2@127.0.0.1:{free_port()}/expq"
    with pytest.raises(Enough):
        wait_for_database(url, said.append, sleep)
    assert len(said) == 3 and all("hunter2" not in line for line in said)
    assert said[0].startswith("database unreachable at postgresql+psycopg://expq:***@127.0.0.1:")
    assert said[0].endswith("retrying in 0.5s") and said[2].endswith("retrying in 2s")

    wait_for_database(f"sqlite:///{tmp_path / 'ok.db'}", said.append)  # returns at once


def test_the_worker_command_refuses_gpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import workers.command
    from service.cli import cli

    monkeypatch.setattr(workers.command, "cuda_available", lambda: False)
    result = CliRunner().invoke(cli, ["worker", "--queues", "gpu"])
    assert result.exit_code == 2
    assert "queue gpu needs CUDA, and this machine has none" in result.output


def test_training_processes_share_the_cores() -> None:
    from workers.command import torch_threads

    assert torch_threads(1, cpus=8) == 8
    assert torch_threads(4, cpus=8) == 2
    assert torch_threads(16, cpus=8) == 1
