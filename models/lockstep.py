"""A fused group trained member after member, an epoch at a time, each member on its own
model, optimizer and random state: exact for every network and device (models/fusion.py).

The global generators (CPU, and CUDA when training there) are swapped to the member's saved
state around each of its epochs, rather than handing every op a `torch.Generator`: nn.RNN,
nn.GRU and nn.LSTM draw their between-layer dropout from the global generator and take no
other, and the solo path stays exactly what it was, with no per-op plumbing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import torch

from models.data import TaskData
from models.members import Member, MemberResult
from models.training import FitResult, build_seeded, train_epochs


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


def _random_state(device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state() if device == "cuda" else None


def _set_random_state(rng: torch.Tensor, cuda_rng: torch.Tensor | None) -> None:
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng)


@dataclass
class _Trainer:
    """One member's training in progress: its epochs and its random state between them."""

    slot: int  # its place in the results
    epochs: Generator[int, None, FitResult]
    rng: torch.Tensor
    cuda_rng: torch.Tensor | None
    on_end: Callable[[MemberResult], None] | None
    done: bool = False


class LockstepGroup:
    """Any members on any device, each trained an epoch in turn (see fit_group)."""

    def __init__(self, data: TaskData, device: str, checkpoints: bool) -> None:
        self.data, self.device, self.checkpoints = data, device, checkpoints
        self.trainers: list[_Trainer] = []
        self.results: list[MemberResult | None] = []

    def join(self, member: Member) -> None:
        model, optimizer = build_seeded(member.spec, self.data, self.device)
        epochs = train_epochs(
            member.spec, self.data, model, optimizer, self.device, _guarded(member.on_epoch),
            member.stop, None, member.resume, self.checkpoints, _guarded(member.on_batch),
        )  # fmt: skip
        rng, cuda_rng = _random_state(self.device)
        self.trainers.append(_Trainer(len(self.results), epochs, rng, cuda_rng, member.on_end))
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
        if trainer.on_end is not None:
            trainer.on_end(result)
