"""Fused training: the runs of one shape on one dataset trained side by side in one process,
each member exactly as `models.training.fit` trains it alone.

Exactness comes from each member keeping its own model, optimizer and random state. The
global generators (CPU, and CUDA when training there) are swapped to the member's saved state
around each of its epochs, rather than handing every op a `torch.Generator`: nn.RNN, nn.GRU and
nn.LSTM draw their between-layer dropout from the global generator and take no other, and the
solo path then stays exactly what it was, with no per-op plumbing. Not thread-safe: one group a
process, and nothing else training in it meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models.checkpoint import TrainingState
from models.data import TaskData, data_seed
from models.spec import TrainSpec
from models.training import EpochReport, FitResult, build_seeded, train_epochs


@dataclass
class Member:
    spec: TrainSpec
    on_epoch: Callable[[EpochReport], None] | None = None  # as models.training.fit's on_epoch
    stop: threading.Event | None = None  # set: this member stops at its next batch ("stopped")
    resume: TrainingState | None = None  # continue after the checkpoint's epoch, exactly
    on_batch: Callable[[], None] | None = None  # progress tick after each of its batches


@dataclass(frozen=True)
class MemberResult:
    result: FitResult | None  # how its training ended; None when its callback raised
    error: BaseException | None  # what its own callback (on_epoch, on_batch) raised, if it did


def fusion_key(spec: TrainSpec) -> tuple[Any, ...]:
    """Runs whose specs have equal keys may train in one group: the same data and split, and
    the same shapes. Left out, because each member keeps its own: lr, momentum, weight decay,
    dropout, grad clip, seed, epochs, patience, time limit and pruning."""
    split = None if spec.val_data is not None else (spec.val_fraction, data_seed(spec))
    source = (spec.data, spec.val_data) if spec.data is not None else (spec.seq_len, spec.samples)
    return (
        spec.task, source, split, spec.model, spec.cell if spec.model == "rnn" else None,
        spec.hidden, spec.layers, spec.activation if spec.model == "mlp" else None, spec.loss,
        spec.batch_size, spec.device,
    )


class _CallbackError(Exception):
    """Carries what a member's own callback raised out of its training, to tell it apart from
    a failure of training itself."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _guarded(callback: Callable[..., None] | None) -> Callable[..., None] | None:
    if callback is None:
        return None

    def call(*args: Any) -> None:
        try:
            callback(*args)
        except Exception as error:
            raise _CallbackError(error) from error

    return call


@dataclass
class _Trainer:
    """One member's training in progress: its epochs and its random state between them."""

    slot: int  # its place in the results
    epochs: Generator[int, None, FitResult]
    rng: torch.Tensor
    cuda_rng: torch.Tensor | None
    done: bool = False


def _random_state(device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state() if device == "cuda" else None


def _set_random_state(rng: torch.Tensor, cuda_rng: torch.Tensor | None) -> None:
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng)


class _Group:
    def __init__(self, data: TaskData, device: str, checkpoints: bool) -> None:
        self.data, self.device, self.checkpoints = data, device, checkpoints
        self.trainers: list[_Trainer] = []
        self.results: list[MemberResult | None] = []

    def join(self, member: Member) -> None:
        model, optimizer = build_seeded(member.spec, self.data, self.device)
        epochs = train_epochs(
            member.spec, self.data, model, optimizer, self.device, _guarded(member.on_epoch),
            member.stop, None, member.resume, self.checkpoints, _guarded(member.on_batch),
        )
        rng, cuda_rng = _random_state(self.device)
        self.trainers.append(_Trainer(len(self.results), epochs, rng, cuda_rng))
        self.results.append(None)

    def epoch(self) -> None:
        """One epoch of every member still training; those that finish leave."""
        for trainer in self.trainers:
            _set_random_state(trainer.rng, trainer.cuda_rng)
            try:
                next(trainer.epochs)
            except StopIteration as done:
                self._leave(trainer, MemberResult(done.value, None))
            except _CallbackError as raised:
                self._leave(trainer, MemberResult(None, raised.error))
            else:
                trainer.rng, trainer.cuda_rng = _random_state(self.device)
        self.trainers = [trainer for trainer in self.trainers if not trainer.done]

    def _leave(self, trainer: _Trainer, result: MemberResult) -> None:
        trainer.done = True
        trainer.epochs.close()
        self.results[trainer.slot] = result


def fit_group(
    members: Sequence[Member], data: TaskData, device: str, checkpoints: bool = False,
    admit: Callable[[], Sequence[Member]] | None = None,
) -> list[MemberResult]:
    """Train every member on the shared `data` (built once for their common `fusion_key`) on
    `device`, each exactly as `fit` would train it alone.

    Results come in the order members joined; `admit` is asked for more at every epoch
    boundary while the group trains, and those it returns are appended. A member leaves when
    its training ends or its own callback raises (its result then carries the error); the
    others go on untouched. An exception from training itself (a device fault) propagates and
    ends every member's attempt.
    """
    group = _Group(data, device, checkpoints)
    for member in members:
        group.join(member)
    while group.trainers:
        group.epoch()
        if admit is not None and group.trainers:
            for member in admit():
                group.join(member)
    return [result for result in group.results if result is not None]
