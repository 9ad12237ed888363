"""A fused group whose training process is killed: every member is queued again at once, and
each resumes from its own checkpoint to exactly the losses of the same spec trained alone."""

from __future__ import annotations

import os
import signal

import pytest
from faults.fleet import training_pid
from support import assert_settled

from service.store import get_losses

pytestmark = pytest.mark.integration

# Only MLPs on the CPU fuse; enough epochs that the group is still training when it is killed.
SPEC = {"task": "sentiment", "model": "mlp", "samples": 2000, "hidden": 64, "epochs": 30,
        "data_seed": 1}  # fmt: skip
MEMBERS = [
    {**SPEC, "lr": 0.1, "seed": 1},
    {**SPEC, "lr": 0.05, "momentum": 0.5, "dropout": 0.2, "seed": 2},
    {**SPEC, "lr": 0.2, "weight_decay": 0.01, "seed": 3},
]


def _alone(raw: dict) -> list[tuple]:
    """The spec's total losses per epoch, trained alone in this process on one thread, as
    the worker's training processes train (fleet env: OMP_NUM_THREADS=1)."""
    import torch

    from models.data import build_data
    from models.spec import spec_from_dict
    from models.training import fit

    spec = spec_from_dict({"device": "cpu", **raw})
    totals: list[tuple] = []

    def on_epoch(report) -> None:  # noqa: ANN001
        for split in ("train", "val"):
            totals.append((report.epoch, split, getattr(report, split).total))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(spec, build_data(spec), on_epoch=on_epoch)
    finally:
        torch.set_num_threads(threads)
    return sorted(totals)


def test_a_killed_group_requeues_every_member_to_resume_from_its_own_checkpoint(fleet) -> None:  # noqa: ANN001
    runs = fleet.submit(*MEMBERS)  # all queued before the worker starts: one group takes them
    fleet.worker(EXPQ_FUSE="4")
    first = fleet.wait_training(runs[0], epochs=2)
    rows = [fleet.run(run_id) for run_id in runs]
    assert {(row.group_id, row.lease_owner, row.attempt) for row in rows} == {
        (first.group_id, first.lease_owner, 1)
    }
    os.kill(training_pid(first), signal.SIGKILL)

    done = [fleet.wait_status(run_id, "succeeded") for run_id in runs]
    assert [run.attempt for run in done] == [2, 2, 2]
    assert all(1 <= run.resumed_from_epoch < SPEC["epochs"] for run in done)
    assert len({run.group_id for run in done}) == 1 and done[0].group_id != first.group_id
    assert_settled(fleet.engine, runs)
    for run_id, raw in zip(runs, MEMBERS, strict=True):
        losses = get_losses(fleet.engine, run_id)
        recorded = [(r.epoch, r.split, r.value) for r in losses if r.timestep is None]
        assert sorted(recorded) == _alone(raw)
