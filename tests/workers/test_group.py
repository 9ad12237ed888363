"""A fused group in one process on SQLite, real torch: each member's fate is its own, and a
member that trains to the end records exactly the losses of the same spec trained alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from models.spec import spec_from_dict
from service.config import Settings
from service.db import get_engine
from service.lifecycle import cancel_run
from service.store import NewRun, create_run, get_losses, get_run, group_members
from workers import group as group_module
from workers.group import execute_group, trains_in_group
from workers.runner import execute_run

BASE = {"task": "binary", "model": "mlp", "activation": "relu", "hidden": 8, "samples": 200}
BASE |= {"epochs": 3}
BASE |= {"device": "cpu", "data_seed": 1}
BLOW_UP = 99.0  # the lr that marks the member whose training is made to diverge


@pytest.fixture
def engine(sqlite_url: str):  # noqa: ANN201
    return get_engine(sqlite_url)


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(
        home=tmp_path, database_url=sqlite_url, broker_url="redis://unused",
        heartbeat_seconds=0.2, lease_seconds=5,
    )  # fmt: skip


def _queue(engine, **fields) -> int:  # noqa: ANN001
    spec = spec_from_dict({**BASE, **fields})
    return create_run(engine, spec.to_dict(), spec.params(), NewRun("fuse", "cpu")).id


def _losses(engine, run_id: int) -> list[tuple]:  # noqa: ANN001
    return [(r.epoch, r.split, r.timestep, r.value) for r in get_losses(engine, run_id)]


def _blowing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN injected into one member: its lr, past what a spec may ask, makes it diverge."""
    validate = group_module.validate

    def validated(raw):  # noqa: ANN001, ANN202
        spec, error = validate(raw)
        if spec is not None and spec.lr == BLOW_UP:
            spec = dataclasses.replace(spec, lr=1e30, momentum=0.9, grad_clip=0.0)
        return spec, error

    monkeypatch.setattr(group_module, "validate", validated)


def _after_first_epoch(monkeypatch: pytest.MonkeyPatch, run_id: int, then: Callable) -> None:
    """Call `then()` once run `run_id` has written its first epoch: at a known point of the
    group's training, without a thread racing it."""
    record = group_module.record_group_epoch

    def recorded(engine, epochs, endings):  # noqa: ANN001, ANN202
        written = record(engine, epochs, endings)
        if any(write.run_id == run_id and write.epoch == 1 for write in epochs):
            then()
        return written

    monkeypatch.setattr(group_module, "record_group_epoch", recorded)


def test_each_member_meets_its_own_fate_and_the_others_train_as_alone(
    engine, settings: Settings, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    steady = {"lr": 0.05, "momentum": 0.5, "dropout": 0.2, "seed": 7}
    solo = [_queue(engine, **steady), _queue(engine, lr=0.2, seed=3)]  # also pruning's peers
    for run_id in solo:
        assert execute_run(engine, run_id, settings) == "succeeded"
    _blowing_up(monkeypatch)

    same = _queue(engine, **steady)
    same_too = _queue(engine, lr=0.2, seed=3, epochs=4)
    nan = _queue(engine, lr=BLOW_UP, seed=4)
    slow = _queue(engine, lr=0.1, seed=5, epochs=100_000, time_limit=0.5)
    pruned = _queue(engine, lr=1e-6, seed=6, prune="median", prune_warmup=0)
    cancelled = _queue(engine, lr=0.1, seed=8, epochs=5)
    other_shape = _queue(engine, hidden=9)
    _after_first_epoch(monkeypatch, cancelled, lambda: cancel_run(engine, cancelled))

    ended = execute_group(engine, same, settings, "host:1:t", "w", size=8)

    assert ended == {
        same: "succeeded", same_too: "succeeded", nan: "diverged", slow: "failed",
        pruned: "pruned", cancelled: "cancelled",
    }  # fmt: skip
    assert get_run(engine, slow).error == "time limit"
    assert get_run(engine, other_shape).status == "queued"
    group = get_run(engine, same).group
    assert group is not None and get_run(engine, solo[0]).group is None
    assert group_members(engine, group) == sorted(ended)
    assert _losses(engine, same) == _losses(engine, solo[0])
    epochs_3 = [row for row in _losses(engine, same_too) if row[0] <= 3]
    assert epochs_3 == _losses(engine, solo[1])


def test_a_group_admits_a_compatible_run_queued_while_it_trains(
    engine, settings: Settings, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    reference = _queue(engine, lr=0.3, seed=2)
    assert execute_run(engine, reference, settings) == "succeeded"
    first = _queue(engine, lr=0.1, seed=1, epochs=4)
    late: list[int] = []
    _after_first_epoch(monkeypatch, first, lambda: late.append(_queue(engine, lr=0.3, seed=2)))

    ended = execute_group(engine, first, settings, "host:1:t", "w", size=2)

    assert ended == {first: "succeeded", late[0]: "succeeded"}
    group = get_run(engine, first).group  # named when the second run joined
    assert group is not None and get_run(engine, late[0]).group == group
    assert _losses(engine, late[0]) == _losses(engine, reference)


def test_a_member_fenced_out_of_the_groups_write_writes_nothing_and_leaves(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The member's run is cancelled just before the group's write of its second epoch, with
    no heartbeat due to notice: the fence inside the batched write stops it. It writes nothing
    more and leaves; the other member's rows land as the same spec's alone."""
    engine = get_engine(database_url)
    settings = Settings(
        home=tmp_path, database_url=database_url, broker_url="redis://unused",
        heartbeat_seconds=60, lease_seconds=120,
    )  # fmt: skip
    reference = _queue(engine, lr=0.2, seed=3)
    assert execute_run(engine, reference, settings) == "succeeded"
    survivor, victim = _queue(engine, lr=0.2, seed=3), _queue(engine, lr=0.1, seed=4)
    record, attempted = group_module.record_group_epoch, []

    def recorded(engine, epochs, endings):  # noqa: ANN001, ANN202
        attempted.extend((write.run_id, write.epoch) for write in epochs)
        if (victim, 2) in attempted and get_run(engine, victim).status == "running":
            cancel_run(engine, victim)
        return record(engine, epochs, endings)

    monkeypatch.setattr(group_module, "record_group_epoch", recorded)

    ended = execute_group(engine, survivor, settings, "host:1:t", "w", size=2)

    assert ended == {survivor: "succeeded", victim: "cancelled"}
    assert [epoch for run_id, epoch in attempted if run_id == victim] == [1, 2]  # then it left
    assert {row[0] for row in _losses(engine, victim)} == {1}
    assert get_run(engine, victim).epochs_done == 1
    assert _losses(engine, survivor) == _losses(engine, reference)


def test_a_database_error_in_the_groups_write_gives_every_lease_back(
    engine, settings: Settings, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """The database, not the runs, is at fault: every member stops, writes nothing more and
    gives its lease back, for another attempt to resume from its checkpoint."""
    from sqlalchemy.exc import OperationalError

    from service.lifecycle import reap_expired_leases

    record, calls = group_module.record_group_epoch, []

    def blip(engine, epochs, endings):  # noqa: ANN001, ANN202
        calls.append(sorted((write.run_id, write.epoch) for write in epochs))
        if len(calls) == 2:
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return record(engine, epochs, endings)

    monkeypatch.setattr(group_module, "record_group_epoch", blip)
    runs = [_queue(engine, lr=0.1, seed=1), _queue(engine, lr=0.2, seed=2)]

    ended = execute_group(engine, runs[0], settings, "host:1:t", "w", size=2)

    assert ended == dict.fromkeys(runs)
    assert calls[:2] == [[(runs[0], 1), (runs[1], 1)], [(runs[0], 2), (runs[1], 2)]]
    for run_id in runs:
        run = get_run(engine, run_id)
        assert (run.status, run.epochs_done) == ("running", 1)
        assert run.error.startswith("database error: OperationalError")
    assert sorted(d.run_id for d in reap_expired_leases(engine)) == runs


def test_only_queued_mlp_runs_on_the_cpu_go_to_a_group(engine) -> None:  # noqa: ANN001
    """The others take the solo path under --fuse K as under --fuse 1: RNNs, CUDA runs, and a
    message whose run is not queued (the solo path drops it)."""
    mlp, auto = _queue(engine), _queue(engine, device="auto")
    rnn, cuda = _queue(engine, model="rnn"), _queue(engine, device="cuda")
    cancelled = _queue(engine)
    cancel_run(engine, cancelled)
    routes = {run_id: trains_in_group(engine, run_id) for run_id in (mlp, auto, rnn, cuda)}
    on_cpu = not torch.cuda.is_available()  # where auto trains
    assert routes == {mlp: True, auto: on_cpu, rnn: False, cuda: False}
    assert not trains_in_group(engine, cancelled) and not trains_in_group(engine, 10**6)


def test_a_run_that_trained_alone_in_a_group_shows_no_group(
    engine, settings: Settings  # noqa: ANN001
) -> None:
    alone = _queue(engine)
    assert execute_group(engine, alone, settings, "host:1:t", "w", size=8) == {alone: "succeeded"}
    assert get_run(engine, alone).group is None
