"""Checkpoints: a run resumed after epoch k ends exactly like one that never stopped."""

from __future__ import annotations

import pytest

from models.checkpoint import TrainingState
from models.spec import spec_from_dict
from models.training import fit


@pytest.mark.parametrize(("task", "model"), [("sentiment", "rnn"), ("translation", "mlp")])
def test_resuming_from_a_checkpoint_is_bit_identical(task: str, model: str) -> None:
    spec = spec_from_dict(
        {
            "task": task,
            "model": model,
            "epochs": 4,
            "samples": 200,
            "device": "cpu",
            "dropout": 0.2,
            "hidden": 16,
        }
    )
    straight: list = []
    fit(spec, on_epoch=straight.append, checkpoints=True)
    saved = TrainingState.from_bytes(straight[1].checkpoint.to_bytes())  # after epoch 2
    resumed: list = []
    result = fit(spec, on_epoch=resumed.append, resume=saved)
    assert result.status == "completed" and result.epochs_done == 4
    assert [r.epoch for r in resumed] == [3, 4]
    for again, first in zip(resumed, straight[2:], strict=True):
        assert again.train == first.train and again.val == first.val


def test_reports_carry_no_checkpoint_unless_asked() -> None:
    spec = spec_from_dict(
        {"task": "binary", "model": "mlp", "epochs": 1, "samples": 50, "device": "cpu"}
    )
    reports: list = []
    fit(spec, on_epoch=reports.append)
    assert reports[0].checkpoint is None
