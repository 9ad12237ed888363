"""Fused groups in the store: revision 0010's fusion key, the group claim (most urgent first,
compatible runs only, never a run twice under concurrency) and the release of a whole group."""

from __future__ import annotations

import threading

from sqlalchemy import insert, select
from support import run_columns

from service.db import downgrade, make_engine, session_scope, upgrade
from service.fusion_keys import fusion_key
from service.lifecycle import claim_compatible, claim_group, give_back_owner, release_owner
from service.records import utcnow
from service.schema import Experiment, Run

BASE = {"task": "binary", "model": "mlp", "hidden": 8, "epochs": 2, "samples": 64}


def _queued(engine, priority: int = 0, **fields) -> int:  # noqa: ANN001
    from models.spec import spec_from_dict
    from service.store import NewRun, create_run

    spec = spec_from_dict({**BASE, **fields})
    new = NewRun(experiment="fuse", queue="cpu", priority=priority)
    return create_run(engine, spec.to_dict(), spec.params(), new).id


def _claim(engine, run_id: int, size: int, owner: str = "host:1:t"):  # noqa: ANN001, ANN202
    return claim_group(
        engine, run_id, size=size, group=f"g{run_id}", owner=owner, worker="w",
        auto_device="cpu", lease_seconds=30,
    )  # fmt: skip


def test_a_group_takes_its_run_and_the_most_urgent_compatible_ones(engine) -> None:  # noqa: ANN001
    leader = _queued(engine, lr=0.1)
    low = _queued(engine, priority=1, lr=0.2, seed=5, data_seed=0)
    high = _queued(engine, priority=7, momentum=0.5, dropout=0.3)
    other_shape = _queued(engine, priority=9, hidden=16)
    other_data = _queued(engine, priority=9, seed=3)  # its data seed is its seed: other data
    also = _queued(engine, priority=5, weight_decay=0.01, epochs=4)

    claims, key, queue = _claim(engine, leader, size=3)

    assert [c.run_id for c in claims] == [leader, high, also]
    assert (key, queue) == (fusion_key({**BASE, "lr": 0.1, **_defaults()}), "cpu")
    for run_id in (leader, high, also):
        assert run_columns(engine, run_id, "status", "group_id", "attempt", "lease_owner") == (
            "running", f"g{leader}", 1, "host:1:t",
        )  # fmt: skip
    for run_id in (low, other_shape, other_data):
        assert run_columns(engine, run_id, "status", "group_id") == ("queued", None)
    # an epoch boundary admits what is left of the key, and nothing of another
    admitted = claim_compatible(
        engine, key, queue, 5, group=f"g{leader}", owner="host:1:t", worker="w",
        auto_device="cpu", lease_seconds=30,
    )  # fmt: skip
    assert [c.run_id for c in admitted] == [low]
    assert _claim(engine, leader, size=3)[0] == []  # no longer queued: the message is dropped
    # the process died: every member is released, and nothing else
    assert sorted(release_owner(engine, "host:1:t", "died")) == sorted([leader, high, also, low])
    assert run_columns(engine, other_shape, "status") == ("queued",)


def test_a_group_given_back_queues_every_member_again_at_no_cost(engine) -> None:  # noqa: ANN001
    runs = [_queued(engine, lr=0.1), _queued(engine, lr=0.2), _queued(engine, lr=0.3)]
    claims, _, _ = _claim(engine, runs[0], size=3)
    assert sorted(c.run_id for c in claims) == runs
    other = _queued(engine, hidden=16)
    _claim(engine, other, size=1, owner="host:2:t")

    given = give_back_owner(engine, "host:1:t", "its worker was shut down (cold shutdown)")

    assert sorted(d.run_id for d in given) == runs
    for run_id in runs:
        assert run_columns(engine, run_id, "status", "attempt", "given_back", "lease_owner") == (
            "queued", 1, 1, None,
        )  # fmt: skip
    assert run_columns(engine, other, "status", "given_back") == ("running", 0)


def test_runs_that_fusion_does_not_speed_up_are_claimed_alone(engine) -> None:  # noqa: ANN001
    """RNN groups train member after member, as fast as one at a time: an RNN run is claimed
    alone however many of its kind wait, and so is an MLP that asked for CUDA."""
    rnn = [_queued(engine, model="rnn", cell="gru", lr=lr) for lr in (0.1, 0.2, 0.3)]
    cuda = [_queued(engine, device="cuda", lr=lr) for lr in (0.1, 0.2)]
    for runs in (rnn, cuda):
        claims, key, _queue = _claim(engine, runs[0], size=8)
        assert key is None and [c.run_id for c in claims] == [runs[0]]  # None: admits no one
        assert run_columns(engine, runs[1], "status") == ("queued",)
    mlp = [_queued(engine, lr=lr) for lr in (0.1, 0.2)]
    assert [c.run_id for c in _claim(engine, mlp[0], size=8)[0]] == mlp


def _defaults() -> dict:
    from models.spec import spec_from_dict

    return spec_from_dict(BASE).to_dict()


def test_workers_racing_for_one_key_never_claim_a_run_twice(engine) -> None:  # noqa: ANN001
    runs = [_queued(engine, lr=0.01 * (i + 1)) for i in range(24)]
    claimed: list[list[int]] = []
    start = threading.Barrier(4)

    def worker(index: int) -> None:
        start.wait()
        for run_id in runs[index::4]:
            claims, _, _ = _claim(engine, run_id, size=5, owner=f"host:{index}:t{run_id}")
            claimed.append([c.run_id for c in claims])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [run_id for group in claimed for run_id in group]
    assert sorted(every) == runs, "each run claimed exactly once"
    assert all(len(group) <= 5 for group in claimed)
    assert {run_columns(engine, run_id, "attempt")[0] for run_id in runs} == {1}


def test_revision_0010_keys_the_runs_still_to_train(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0009")
    spec = {**_defaults(), "lr": 0.3}
    with session_scope(engine) as session:
        session.execute(insert(Experiment).values(name="old", created_at=utcnow()))
        experiment = session.scalar(select(Experiment.experiment_id))
        common = {
            "experiment_id": experiment, "task": "binary", "model": "mlp", "spec": spec,
            "queue": "cpu", "priority": 0, "attempt": 0, "max_attempts": 3, "epochs_done": 0,
            "created_at": utcnow(), "queued_at": utcnow(),
        }  # fmt: skip
        for status in ("queued", "succeeded"):
            session.execute(insert(Run.__table__).values({**common, "status": status}))
        session.execute(
            insert(Run.__table__).values({**common, "status": "queued", "spec": {"task": "x"}})
        )

    upgrade(engine)
    keys = [run_columns(engine, run_id, "fusion_key", "group_id") for run_id in (1, 2, 3)]
    assert keys == [(fusion_key(spec), None), (None, None), (None, None)]
    downgrade(engine, "0009")
