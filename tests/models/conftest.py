"""Shared tiny fixtures for the models tests: small specs that train in well under a second."""

from __future__ import annotations

from typing import Any

import pytest
from torch import Tensor

from models.data import build_data
from models.networks import build_model
from models.rnn import RNN
from models.spec import TrainSpec, spec_from_dict


@pytest.fixture
def tiny_spec():
    """A factory: a CPU spec for `task` and `model` with a small dataset; keywords override."""

    def make(task: str, model: str, **overrides: Any) -> TrainSpec:
        raw = {
            "task": task,
            "model": model,
            "device": "cpu",
            "samples": 60,
            "epochs": 2,
            "hidden": 16,
            "batch_size": 16,
            **overrides,
        }
        return spec_from_dict(raw)

    return make


@pytest.fixture
def mixed_batch(tiny_spec):  # noqa: ANN001, ANN201
    """A factory: an untrained RNN for `task` with `cell`, in eval mode, and 32 training inputs
    of mixed lengths with their lengths."""

    def make(task: str, cell: str) -> tuple[RNN, Tensor, Tensor]:
        spec = tiny_spec(task, "rnn", cell=cell)
        data = build_data(spec)
        net = build_model(spec, data.dims).eval()
        x, lengths = data.train.x[:32], data.train.lengths[:32]
        assert lengths.unique().numel() > 1
        return net, x, lengths

    return make
