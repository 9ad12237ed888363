"""Checkpoints: a run resumed after epoch k ends exactly like one that never stopped."""

from __future__ import annotations

import pytest
import torch

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


def test_a_checkpoint_carries_the_encoding_of_its_data(tiny_spec) -> None:  # noqa: ANN001
    from models.data import Encoding, build_data

    spec = tiny_spec("captioning", "mlp", epochs=1)
    data = build_data(spec)
    reports: list = []
    fit(spec, data, on_epoch=reports.append, checkpoints=True)
    saved = TrainingState.from_bytes(reports[0].checkpoint.to_bytes())  # weights_only
    encoding = Encoding.from_dict(saved.encoding)
    assert encoding.dims == data.dims and encoding.output_vocab == data.output_vocab
    mean, std = encoding.scaling()
    assert torch.equal(mean, data.mean) and torch.equal(std, data.std)  # exactly, as float32


def test_a_checkpoint_from_before_the_encoding_was_kept_still_loads(tiny_spec) -> None:  # noqa: ANN001
    import io
    from dataclasses import fields

    spec = tiny_spec("binary", "mlp", epochs=1)
    reports: list = []
    fit(spec, on_epoch=reports.append, checkpoints=True)
    state = reports[0].checkpoint
    old = {f.name: getattr(state, f.name) for f in fields(state) if f.name != "encoding"}
    buffer = io.BytesIO()
    torch.save(old, buffer)
    assert TrainingState.from_bytes(buffer.getvalue()).encoding is None
