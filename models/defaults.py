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

# binary: input dimension; sentiment: longest sentence (the deciding word sits in its first
# half); captioning: longest caption (2 words a shape); translation: longest source sentence
_SEQ_LEN = {"binary": 8, "sentiment": 12, "captioning": 8, "translation": 13}

# Tuned so the RNN reaches its issue-3 targets within 60 s on 2 CPU cores (see
# benchmarks/results/learning_quality.md). Data knobs match across models for fair comparison.
_BY_TASK: dict[str, dict[str, Any]] = {
    # the RNN sits on a plateau for 5-8 epochs before it finds the negation rule
    "sentiment": {"epochs": 20},
    # more images than the 2000 default: with fewer, both networks memorise the training set
    "captioning": {"samples": 8000, "hidden": 128, "epochs": 15},
    # the encoder must carry up to 13 words through one state vector
    "translation": {"samples": 6000, "hidden": 128, "epochs": 20},
}

_BY_TASK_MODEL: dict[tuple[str, str], dict[str, Any]] = {
    (task, model): values for task, values in _BY_TASK.items() for model in ("mlp", "rnn")
}


def task_defaults(task: str, model: str) -> dict[str, Any]:
    """The defaults for one task and model; keys are `TrainSpec` field names."""
    return {**_COMMON, "seq_len": _SEQ_LEN[task], **_BY_TASK_MODEL.get((task, model), {})}
