"""The training spec: every knob of one run, validated in plain Python (no torch).

The CLI validates a spec before it writes anything and the worker validates it again
before it trains, both through `spec_from_dict`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from models.defaults import task_defaults
from models.registry import TASKS

MODELS = ("mlp", "rnn")
CELLS = ("rnn", "lstm", "gru")
ACTIVATIONS = ("relu", "tanh", "sigmoid")
LOSSES = ("mse", "cross_entropy")
DEVICES = ("auto", "cpu", "cuda")
PRUNERS = ("median", "asha")

# The hyperparameters a run records, keyed by the submit and sweep option names; a run
# records those that apply to it (see `applied_params`).
PARAM_NAMES = (
    "task", "model", "cell", "hidden", "layers", "activation", "dropout", "lr", "momentum",
    "weight_decay", "epochs", "batch_size", "loss", "seq_len", "samples", "seed", "device",
    "data", "val_data", "val_fraction", "grad_clip", "patience", "time_limit", "prune",
    "prune_warmup", "data_seed",
)
# A param that only some runs use, and the test of the spec that says a run uses it.
_APPLIES_WHEN = {
    "cell": lambda spec: spec.get("model") == "rnn",
    "activation": lambda spec: spec.get("model") == "mlp",  # the RNN's cells fix their own
    "seq_len": lambda spec: spec.get("data") is None,  # the built-in generator's knobs
    "samples": lambda spec: spec.get("data") is None,
    "val_fraction": lambda spec: spec.get("val_data") is None,
    "prune_warmup": lambda spec: spec.get("prune") is not None,
    # the seed of the built-in data and of the validation split: none to draw, none to record
    "data_seed": lambda spec: spec.get("data") is None or spec.get("val_data") is None,
}
# A param whose default is another's value: recorded as the value the run trained with.
_DEFAULTS_TO = {"data_seed": "seed"}


def applied_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a spec (as stored) that apply to its run, by option name.

    Left out: those the run does not use (cell of an MLP, seq_len and samples of a run on
    --data, val_fraction beside --val-data, data_seed beside both) and optional knobs left
    unset (patience, data). data_seed left unset is recorded as the seed that stands for it.
    """
    values = {name: spec.get(name) for name in PARAM_NAMES}
    for name, default in _DEFAULTS_TO.items():
        if values[name] is None:
            values[name] = spec.get(default)
    return {
        name: value
        for name, value in values.items()
        if value is not None and _APPLIES_WHEN.get(name, bool)(spec)
    }


class SpecError(ValueError):
    """A spec field is missing, of the wrong type or out of range; the message is one line."""


@dataclass(frozen=True)
class TrainSpec:
    task: str
    model: str
    cell: str
    hidden: int
    layers: int
    activation: str
    dropout: float
    lr: float
    momentum: float
    weight_decay: float
    epochs: int
    batch_size: int
    loss: str
    seq_len: int  # sequence length / dependency distance; its meaning is the task's
    samples: int  # built-in dataset size (train + val); ignored with user data
    seed: int
    device: str
    val_fraction: float = 0.2  # held out when no val data is given
    grad_clip: float = 1.0  # max gradient L2 norm; 0 disables clipping
    patience: int | None = None  # early stopping on val loss, in epochs
    time_limit: float | None = None  # seconds of training before the run fails
    prune: str | None = None  # "median" or "asha": stop a run worse than its peers
    prune_warmup: int = 1  # epochs before pruning may stop a run
    data: str | None = None  # sha256 of the user's training JSONL
    val_data: str | None = None  # sha256 of the user's validation JSONL
    # draws the built-in data and the validation split; None: `seed`. Seed replicates that share
    # it share one dataset, and may train in one fused group (models/fusion.py)
    data_seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def params(self) -> dict[str, Any]:
        """Every hyperparameter as the CLI names it; None where it does not apply to this run."""
        applied = applied_params(vars(self))
        return {name: applied.get(name) for name in PARAM_NAMES}


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpecError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _number(name: str, value: Any, kind: type) -> int | float:
    if isinstance(value, bool) or value is None:
        raise SpecError(f"{name} must be a number; got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise SpecError(f"{name} must be a number; got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise SpecError(f"{name} must be a number; got {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{name} must be finite; got {value!r}")
    if kind is int:
        if value != int(value):
            raise SpecError(f"{name} must be a whole number; got {value!r}")
        return int(value)
    return float(value)


def _ranged(
    name: str, value: Any, kind: type, low: float, high: float, *, low_open: bool = False,
    high_open: bool = False,
) -> int | float:
    number = _number(name, value, kind)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise SpecError(f"{name} must be in {left}{low:g}, {high:g}{right}; got {number:g}")
    return number


def _sha256(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value)):
        raise SpecError(f"{name} must be a sha256 hex digest; got {value!r}")
    return value


def spec_from_dict(raw: dict[str, Any]) -> TrainSpec:
    """Validate `raw` (task defaults fill what it leaves out) and return the frozen spec."""
    if not isinstance(raw, dict):
        raise SpecError("spec must be an object")
    known = {f.name for f in fields(TrainSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(f"unknown spec field {unknown[0]!r}")
    task = _choice("task", raw.get("task"), tuple(TASKS))
    model = _choice("model", raw.get("model"), MODELS)
    merged = {**task_defaults(task, model), **{k: v for k, v in raw.items() if v is not None}}
    optional = lambda key, check: None if merged.get(key) is None else check(merged[key])  # noqa: E731
    return TrainSpec(
        task=task,
        model=model,
        cell=_choice("cell", merged["cell"], CELLS),
        hidden=_ranged("hidden", merged["hidden"], int, 1, 4096),
        layers=_ranged("layers", merged["layers"], int, 1, 16),
        activation=_choice("activation", merged["activation"], ACTIVATIONS),
        dropout=_ranged("dropout", merged["dropout"], float, 0, 1, high_open=True),
        lr=_ranged("lr", merged["lr"], float, 0, 100, low_open=True),
        momentum=_ranged("momentum", merged["momentum"], float, 0, 1, high_open=True),
        weight_decay=_ranged("weight_decay", merged["weight_decay"], float, 0, 1),
        epochs=_ranged("epochs", merged["epochs"], int, 1, 100_000),
        batch_size=_ranged("batch_size", merged["batch_size"], int, 1, 65_536),
        loss=_choice("loss", merged["loss"], LOSSES),
        seq_len=_ranged(f"seq_len ({task})", merged["seq_len"], int, *TASKS[task].seq_len),
        samples=_ranged("samples", merged["samples"], int, 10, 1_000_000),
        seed=_ranged("seed", merged["seed"], int, 0, 2**31 - 1),
        device=_choice("device", merged["device"], DEVICES),
        val_fraction=_ranged("val_fraction", merged["val_fraction"], float, 0, 0.9, low_open=True),
        grad_clip=_ranged("grad_clip", merged["grad_clip"], float, 0, 1e6),
        patience=optional("patience", lambda v: _ranged("patience", v, int, 1, 100_000)),
        time_limit=optional(
            "time_limit", lambda v: _ranged("time_limit", v, float, 0, 30 * 86_400, low_open=True)
        ),
        prune=optional("prune", lambda v: _choice("prune", v, PRUNERS)),
        prune_warmup=_ranged("prune_warmup", merged.get("prune_warmup", 1), int, 0, 100_000),
        data=_sha256("data", merged.get("data")),
        val_data=_sha256("val_data", merged.get("val_data")),
        data_seed=optional("data_seed", lambda v: _ranged("data_seed", v, int, 0, 2**31 - 1)),
    )


def data_seed(spec: TrainSpec) -> int:
    """The seed of the spec's built-in data and validation split."""
    return spec.seed if spec.data_seed is None else spec.data_seed


def trains_stacked(model: str, device: str) -> bool:
    """Whether a fused group of this model on this device trains stacked (one batched matmul
    for every member), the only kind of group that trains faster than its members alone: RNNs
    and CUDA groups train member after member (benchmarks/results/fusion.md)."""
    return model == "mlp" and device == "cpu"


def fusion_key(spec: TrainSpec) -> tuple[Any, ...]:
    """Runs whose specs have equal keys may train in one group: the same data and split, and
    the same shapes. Left out, because each member keeps its own: lr, momentum, weight decay,
    dropout, grad clip, seed, epochs, patience, time limit and pruning. Plain Python, like the
    rest of this module, so that submitting can key a run without importing torch."""
    split = None if spec.val_data is not None else (spec.val_fraction, data_seed(spec))
    source = (spec.data, spec.val_data) if spec.data is not None else (spec.seq_len, spec.samples)
    return (
        spec.task,
        source,
        split,
        spec.model,
        spec.cell if spec.model == "rnn" else None,
        spec.hidden,
        spec.layers,
        spec.activation if spec.model == "mlp" else None,
        spec.loss,
        spec.batch_size,
        spec.device,
    )
