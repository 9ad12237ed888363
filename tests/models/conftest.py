"""Shared tiny fixtures for the models tests: small specs that train in well under a second."""

from __future__ import annotations

from typing import Any

import pytest

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
