"""Default hyperparameters per task and model: what a run gets when the user leaves a knob out."""

from __future__ import annotations

from typing import Any

_COMMON: dict[str, Any] = {
    "cell": "gru",
    "hidden": 64,
    "layers": 1,
    "activation": "tanh",
    "dropout": 0.0,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "epochs": 10,
    "batch_size": 32,
    "loss": "cross_entropy",
    "samples": 2000,
    "seed": 0,
    "device": "auto",
    "val_fraction": 0.2,
    "grad_clip": 1.0,
}

_SEQ_LEN = {"binary": 8, "sentiment": 12, "captioning": 8, "translation": 6}

_BY_TASK_MODEL: dict[tuple[str, str], dict[str, Any]] = {}


def task_defaults(task: str, model: str) -> dict[str, Any]:
    """The defaults for one task and model; keys are `TrainSpec` field names."""
    return {**_COMMON, "seq_len": _SEQ_LEN[task], **_BY_TASK_MODEL.get((task, model), {})}
