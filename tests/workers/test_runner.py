"""The run lifecycle in one process on SQLite: claim, train, record, finish, cancel, fail."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from support import poll, run_row

from models.spec import spec_from_dict
from service.config import Settings
from service.db import get_engine, session_scope
from service.lifecycle import cancel_run
from service.schema import Loss, Run
from service.store import NewRun, create_run, get_losses, get_run
from workers.runner import execute_run


@pytest.fixture
def sqlite_engine(sqlite_url: str):  # noqa: ANN201
    return get_engine(sqlite_url)


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(
        home=tmp_path,
        database_url=sqlite_url,
        broker_url="redis://unused",
        heartbeat_seconds=0.2,
        lease_seconds=5,
    )


def _queue(engine, **fields) -> int:  # noqa: ANN001
    spec = spec_from_dict({"samples": 200, "epochs": 2, "device": "cpu", **fields})
    return create_run(engine, spec.to_dict(), spec.params(), NewRun("test", "cpu")).id


@pytest.mark.parametrize("task", ["binary", "translation"])
def test_a_run_trains_and_records_every_epoch(sqlite_engine, settings: Settings, task: str) -> None:  # noqa: ANN001
    run_id = _queue(sqlite_engine, task=task, model="rnn")
    assert execute_run(sqlite_engine, run_id, settings) == "succeeded"
    run = get_run(sqlite_engine, run_id)
    assert (run.status, run.epochs_done, run.device, run.attempt) == ("succeeded", 2, "cpu", 1)
    assert run.worker and run.started_at and run.finished_at >= run.started_at
    losses = get_losses(sqlite_engine, run_id)
    for epoch in (1, 2):
        for split in ("train", "val"):
            rows = [r for r in losses if r.epoch == epoch and r.split == split]
            totals = [r for r in rows if r.timestep is None]
            steps = [r.timestep for r in rows if r.timestep is not None]
            assert len(totals) == 1 and steps == list(range(1, len(steps) + 1))
            if task == "binary":
                assert steps == [1]
    assert (
        run.final_val_loss
        == [r.value for r in losses if r.epoch == 2 and r.split == "val" and r.timestep is None][0]
    )


def test_a_second_delivery_does_nothing(sqlite_engine, settings: Settings) -> None:  # noqa: ANN001
    run_id = _queue(sqlite_engine, task="binary", model="mlp", epochs=1)
    execute_run(sqlite_engine, run_id, settings)
    assert execute_run(sqlite_engine, run_id, settings) is None
    assert get_run(sqlite_engine, run_id).attempt == 1


def test_an_invalid_stored_spec_fails_the_run_with_its_reason(
    sqlite_engine, settings: Settings
) -> None:  # noqa: ANN001
    run_id = _queue(sqlite_engine, task="binary", model="mlp")
    with session_scope(sqlite_engine) as session:
        session.execute(
            update(Run)
            .where(Run.run_id == run_id)
            .values(spec={"task": "binary", "model": "mlp", "lr": -1})
        )
    assert execute_run(sqlite_engine, run_id, settings) == "failed"
    run = get_run(sqlite_engine, run_id)
    assert run.status == "failed" and run.error.startswith("invalid spec: lr must be")


def test_cuda_without_cuda_fails_clearly(sqlite_engine, settings: Settings) -> None:  # noqa: ANN001
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run_id = _queue(sqlite_engine, task="binary", model="mlp", device="cuda")
    assert execute_run(sqlite_engine, run_id, settings) == "failed"
    assert "CUDA" in get_run(sqlite_engine, run_id).error


def test_a_training_error_keeps_its_traceback(sqlite_engine, settings: Settings) -> None:  # noqa: ANN001
    run_id = _queue(sqlite_engine, task="binary", model="mlp", data="0" * 64)
    assert execute_run(sqlite_engine, run_id, settings) == "failed"
    run = get_run(sqlite_engine, run_id)
    assert "is not in the database" in run.error
    assert "Traceback" in run.traceback and run.finished_at is not None


def _run_in_thread(engine, run_id: int, settings: Settings) -> tuple[threading.Thread, list]:  # noqa: ANN001
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(execute_run(engine, run_id, settings)))
    thread.start()
    return thread, outcome


def test_cancel_stops_a_running_run_and_keeps_its_losses(sqlite_engine, settings: Settings) -> None:  # noqa: ANN001
    run_id = _queue(sqlite_engine, task="sentiment", model="rnn", epochs=10_000, samples=200)
    thread, outcome = _run_in_thread(sqlite_engine, run_id, settings)
    poll(lambda: get_run(sqlite_engine, run_id).epochs_done >= 1, 60, "a first epoch")
    assert cancel_run(sqlite_engine, run_id) == "running"
    thread.join(30)
    assert not thread.is_alive() and outcome == ["cancelled"]
    run = get_run(sqlite_engine, run_id)
    assert run.status == "cancelled" and run.epochs_done < 10_000
    with session_scope(sqlite_engine) as session:
        stored = session.scalar(select(func.count()).select_from(Loss).where(Loss.run_id == run_id))
    assert stored >= 4


def test_a_run_past_its_time_limit_fails(sqlite_engine, settings: Settings) -> None:  # noqa: ANN001
    run_id = _queue(sqlite_engine, task="sentiment", model="rnn", epochs=10_000, time_limit=1)
    assert execute_run(sqlite_engine, run_id, settings) == "failed"
    run = get_run(sqlite_engine, run_id)
    assert run.error == "time limit" and run.epochs_done < 10_000


def test_a_spec_that_is_not_an_object_fails_the_run(sqlite_engine, settings: Settings) -> None:  # noqa: ANN001
    run_id = _queue(sqlite_engine, task="binary", model="mlp")
    with session_scope(sqlite_engine) as session:
        session.execute(update(Run).where(Run.run_id == run_id).values(spec=[1, 2]))
    assert execute_run(sqlite_engine, run_id, settings) == "failed"
    assert run_row(sqlite_engine, run_id).error == "invalid spec: spec must be an object"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("OperationalError", "server closed the connection"),
        # PostgreSQL ended a transaction the worker left idle (frozen, paused) too long.
        ("InternalError", "terminating connection due to idle-in-transaction timeout"),
    ],
)
def test_a_database_error_abandons_the_attempt_without_failing_the_run(
    sqlite_engine, settings: Settings, monkeypatch: pytest.MonkeyPatch, error: str, message: str
) -> None:  # noqa: ANN001
    """The database, not the run, is at fault: the lease is given back for another attempt."""
    import sqlalchemy.exc

    import workers.runner as runner
    from service.lifecycle import reap_expired_leases

    def unreachable(*_args, **_kwargs) -> None:
        raise getattr(sqlalchemy.exc, error)("INSERT ...", {}, Exception(message))

    monkeypatch.setattr(runner, "record_epoch", unreachable)
    run_id = _queue(sqlite_engine, task="binary", model="mlp")
    assert execute_run(sqlite_engine, run_id, settings, owner="me") is None
    run = get_run(sqlite_engine, run_id)
    assert run.status == "running" and run.error.startswith(f"database error: {error}")
    assert [d.run_id for d in reap_expired_leases(sqlite_engine)] == [run_id]
    assert get_run(sqlite_engine, run_id).status == "queued"


def test_finishing_rides_out_a_database_blip(
    sqlite_engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    from sqlalchemy.exc import OperationalError

    import workers.outcomes as outcomes

    real, calls = outcomes.finish_run, []

    def flaky(*args, **kwargs) -> None:
        calls.append(args)
        real(*args, **kwargs)  # the commit lands, but its reply is lost the first time
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, Exception("connection reset"))

    monkeypatch.setattr(outcomes, "finish_run", flaky)
    run_id = _queue(sqlite_engine, task="binary", model="mlp", epochs=1)
    assert execute_run(sqlite_engine, run_id, settings) == "succeeded"
    assert len(calls) == 2 and get_run(sqlite_engine, run_id).status == "succeeded"


def test_each_run_logs_where_its_time_went(
    sqlite_engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:  # noqa: ANN001
    import re

    run_id = _queue(sqlite_engine, task="binary", model="mlp", epochs=1)
    with caplog.at_level("INFO", logger="workers.runner"):
        execute_run(sqlite_engine, run_id, settings)
    pattern = (
        rf"run {run_id} attempt 1 succeeded in [\d.]+ s \(claim [\d.]+ ms, setup [\d.]+ ms, "
        r"train [\d.]+ ms, writes [\d.]+ ms\)"
    )
    assert any(re.fullmatch(pattern, record.getMessage()) for record in caplog.records)


def test_a_run_records_the_node_name_of_its_worker(sqlite_engine, settings: Settings) -> None:  # noqa: ANN001
    run_id = _queue(sqlite_engine, task="binary", model="mlp", epochs=1)
    assert execute_run(sqlite_engine, run_id, settings, worker="expq-1a2b3c@host") == "succeeded"
    assert get_run(sqlite_engine, run_id).worker == "expq-1a2b3c@host"


def _failing(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    import models.training as training

    def broken(*_args, **_kwargs):  # noqa: ANN202
        raise exc

    monkeypatch.setattr(training, "_train_epoch", broken)


def test_a_device_fault_ends_the_attempt_not_the_run(
    sqlite_engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    import torch

    from service.lifecycle import reap_expired_leases
    from workers.outcomes import DeviceFault

    _failing(monkeypatch, torch.AcceleratorError("CUDA error: an illegal memory access"))
    run_id = _queue(sqlite_engine, task="binary", model="mlp")
    with pytest.raises(DeviceFault) as caught:
        execute_run(sqlite_engine, run_id, settings)
    assert caught.value.device == "cpu"
    reason = "device fault on cpu: AcceleratorError: CUDA error: an illegal memory access"
    run = run_row(sqlite_engine, run_id)
    assert (run.status, run.error) == ("running", reason)  # its lease given back at once
    assert [d.run_id for d in reap_expired_leases(sqlite_engine)] == [run_id]
    assert get_run(sqlite_engine, run_id).status == "queued"


@pytest.mark.parametrize(
    ("error", "device"),
    [
        ("AcceleratorError:CUDA error: unspecified launch failure", True),
        ("RuntimeError:CUDA error: uncorrectable ECC error encountered", True),
        (
            "RuntimeError:CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, ...)`",
            True,
        ),
        ("RuntimeError:cuDNN error: CUDNN_STATUS_INTERNAL_ERROR", True),
        ("AcceleratorError:CUDA error: device-side assert triggered", False),
        ("OutOfMemoryError:CUDA out of memory. Tried to allocate 2.00 GiB", False),
        ("RuntimeError:CUDA error: out of memory", False),
        ("RuntimeError:mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)", False),
        ("ValueError:Expected input batch_size (4) to match target batch_size (3)", False),
    ],
)
def test_which_errors_are_the_devices(error: str, device: bool) -> None:
    from workers.outcomes import is_device_fault

    name, _, message = error.partition(":")
    exc = type(name, (RuntimeError,), {})(message)
    assert is_device_fault(exc) is device


def test_a_deterministic_error_on_the_device_still_fails_the_run(
    sqlite_engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    import torch

    _failing(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"))
    run_id = _queue(sqlite_engine, task="binary", model="mlp")
    assert execute_run(sqlite_engine, run_id, settings) == "failed"
    assert get_run(sqlite_engine, run_id).error.startswith("OutOfMemoryError: CUDA out of memory")


def test_the_queues_a_broken_device_leaves() -> None:
    from workers.control import device_queues

    assert device_queues("cuda", auto_device="cuda") == ["gpu", "auto"]
    assert device_queues("cpu", auto_device="cuda") == ["cpu"]
    assert device_queues("cpu", auto_device="cpu") == ["cpu", "auto"]


def test_a_hung_training_gives_its_lease_back_before_its_process_ends(
    sqlite_engine,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """`on_hung` stands for the end of the process (os._exit in a worker): by then the run's
    lease has been released with the reason, so the reaper need not wait for the death."""
    import models.training as training

    unblock, seen = threading.Event(), []

    def hangs(*_args, **_kwargs):  # noqa: ANN202
        unblock.wait(30)
        raise RuntimeError("the process would be gone by now")

    def ended(reason: str) -> None:
        seen.append((reason, run_row(sqlite_engine, run_id)))
        unblock.set()

    monkeypatch.setattr(training, "_train_epoch", hangs)
    settings = Settings(
        home=tmp_path,
        database_url=sqlite_url,
        broker_url="redis://unused",
        heartbeat_seconds=0.1,
        lease_seconds=30,
        progress_timeout_seconds=1,
    )
    run_id = _queue(sqlite_engine, task="binary", model="mlp")
    execute_run(sqlite_engine, run_id, settings, on_hung=ended)
    [(reason, run)] = seen
    assert reason.startswith("training made no progress for")
    assert run.error == f"{reason}; its process was ended"
    assert run.lease_expires_at.timestamp() < run.started_at.timestamp() + 30  # released
