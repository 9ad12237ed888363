"""A training checkpoint: everything needed to resume bit-exactly after an epoch.

Serialised with torch.save and read back with `torch.load(weights_only=True)`: only tensors
and plain containers cross, never pickled code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass(frozen=True)
class TrainingState:
    epoch: int  # the last completed epoch (1-based)
    model: dict[str, Any]  # model.state_dict()
    optimizer: dict[str, Any]  # optimizer.state_dict(): SGD momentum buffers included
    rng: torch.Tensor  # torch.get_rng_state(): the next epoch's shuffle and dropout masks
    cuda_rng: torch.Tensor | None  # the same on CUDA, when training there
    best: float  # best val total loss so far, for early stopping
    stale: int  # epochs since `best` improved
    # models.data.Encoding.to_dict() of the data trained on: what reads a new input without
    # the data; None in checkpoints written before it was kept
    encoding: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> TrainingState:
        raw = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        return cls(**raw)


def finite_weights(weights: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a state dict is finite: weights a diverged run
    left behind are not."""
    return all(
        bool(torch.isfinite(value).all())  # sync: CPU tensors, checked once per export
        for value in weights.values()
        if value.is_floating_point()
    )


def capture(
    epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, best: float, stale: int,
    encoding: dict[str, Any] | None = None,
) -> TrainingState:
    """The state after `epoch`, copied to the CPU so that later steps cannot change it."""
    on_cuda = next(model.parameters()).is_cuda
    return TrainingState(
        epoch=epoch,
        model={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        optimizer=_to_cpu(optimizer.state_dict()),
        rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state() if on_cuda else None,
        best=best,
        stale=stale,
        encoding=encoding,
    )


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def restore(state: TrainingState, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load `state` into a freshly built model and optimizer, and the random generators."""
    model.load_state_dict(state.model)
    optimizer.load_state_dict(state.optimizer)
    torch.set_rng_state(state.rng)
    if state.cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state.cuda_rng)
