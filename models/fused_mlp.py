"""A fused group of MLPs on the CPU: every member's batch through one stacked network
(models/stacked.py), each member keeping its own batch order, dropout masks, optimizer state,
clipping, epochs and fate, so that its numbers are bit-for-bit those of its solo run.

Between epochs each member's weights and momentum live in its own MLP and torch.optim.SGD,
where checkpoints, resumption and reports find them; the stack is rebuilt from them at every
epoch, which is where members leave and join.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from models.checkpoint import capture, restore
from models.data import Split, TaskData
from models.losses import timestep_losses, timestep_mask
from models.members import Member, MemberResult
from models.mlp import MLP
from models.stacked import StackedMLP, StackedSGD
from models.training import (
    EVAL_BATCH,
    EpochReport,
    FitResult,
    build_seeded,
    epoch_outcome,
    split_report,
)


@dataclass
class _Trainer:
    slot: int  # its place in the results
    member: Member
    model: MLP
    optimizer: torch.optim.SGD
    generator: torch.Generator  # its batch order and dropout masks, as the global one alone
    epoch: int  # the next epoch it trains
    best: float
    stale: int
    alive: bool = True


def _sums(losses: Tensor, mask: Tensor, predicted: Tensor, y: Tensor) -> Tensor:
    """`models.training.batch_sums` of every member at once: (K, 3 * steps + 1)."""
    correct = (predicted == y) & mask  # (K, sequences, steps)
    exact = (correct | ~mask).all(2).sum(1)
    sums = [losses.sum(1), mask.sum(1), correct.sum(1), exact[:, None]]
    return torch.cat([part.double() for part in sums], 1)


def _tally(parts: list[tuple[Tensor, ...]]) -> Tensor:
    return _sums(*(torch.cat(column, 1) for column in zip(*parts, strict=True)))


class StackedGroup:
    """MLP members on the CPU, trained an epoch at a time through one stack (see fit_group)."""

    def __init__(self, data: TaskData, device: str, checkpoints: bool) -> None:
        self.data, self.device = data, device
        self.encoding = data.encoding().to_dict() if checkpoints else None
        self.trainers: list[_Trainer] = []
        self.results: list[MemberResult | None] = []

    def join(self, member: Member) -> None:
        model, optimizer = build_seeded(member.spec, self.data, self.device)
        best, stale, first = math.inf, 0, 1
        if member.resume is not None:
            restore(member.resume, model, optimizer)
            best, stale, first = member.resume.best, member.resume.stale, member.resume.epoch + 1
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
        slot = len(self.results)
        self.results.append(None)
        trainer = _Trainer(slot, member, model, optimizer, generator, first, best, stale)
        if first > member.spec.epochs:
            self._leave(trainer, FitResult("completed", member.spec.epochs, self.device, None))
            return
        self.trainers.append(trainer)

    def _leave(
        self, trainer: _Trainer, result: FitResult | None, error: Exception | None = None
    ) -> None:
        trainer.alive = False
        ended = self.results[trainer.slot] = MemberResult(result, error)
        if trainer.member.on_end is not None:
            trainer.member.on_end(ended)

    def epoch(self) -> None:
        """One epoch of every member still training; those that finish leave."""
        started = time.perf_counter()
        active = self.trainers
        stacked = StackedMLP([t.model for t in active])
        optimizer = StackedSGD(stacked, [t.optimizer for t in active],
                               [t.member.spec.grad_clip for t in active])  # fmt: skip
        train_sums = self._train(active, stacked, optimizer)
        stacked.write_back()
        optimizer.write_back()
        if any(t.alive for t in active):
            val_sums = self._evaluate(stacked)
            # sync: the epoch's single device->host transfer, every member's numbers at once
            values = torch.cat([train_sums, val_sums], 1).tolist()
            seconds = time.perf_counter() - started
            for trainer, row in zip(active, values, strict=True):
                if trainer.alive:
                    self._report(trainer, row, train_sums.shape[1], seconds)
        self.trainers = [t for t in self.trainers if t.alive]

    def _masks(self, active: list[_Trainer], rows: int) -> list[Tensor | None]:
        """Each block's dropout scaling (K, rows, hidden), drawn from each member's generator
        in the order its solo run draws them; None where no member drops out."""
        config = active[0].model.config
        drops = [t.member.spec.dropout for t in active]
        if not any(drops):
            return [None] * config.layers
        kept = torch.tensor([1 - p for p in drops], dtype=torch.float32).view(-1, 1, 1)
        keep = []
        for _ in range(config.layers):
            scale = torch.empty(len(active), rows, config.hidden)
            for k, (trainer, p) in enumerate(zip(active, drops, strict=True)):
                if p > 0:
                    scale[k].bernoulli_(1 - p, generator=trainer.generator)
                else:
                    scale[k].fill_(1.0)  # nn.Dropout draws nothing at p = 0
            keep.append(scale.div_(kept))  # dropout's noise.div_(1 - p), each member's p
        return keep

    def _train(self, active: list[_Trainer], stacked: StackedMLP, optimizer: StackedSGD) -> Tensor:
        """One pass over each member's own shuffle of the training split; the members' sums."""
        split, spec = self.data.train, active[0].member.spec
        orders = torch.stack([torch.randperm(len(split), generator=t.generator) for t in active])
        members, parts = len(active), []
        for start in range(0, len(split), spec.batch_size):
            for trainer in active:
                stop = trainer.member.stop
                if trainer.alive and stop is not None and stop.is_set():
                    reason = f"stop requested during epoch {trainer.epoch}"
                    stopped = FitResult("stopped", trainer.epoch - 1, self.device, reason)
                    self._leave(trainer, stopped)
            if not any(t.alive for t in active):
                break
            index = orders[:, start : start + spec.batch_size].reshape(-1)  # (K * rows,)
            rows = index.shape[0] // members
            x, y, y_len = (t.index_select(0, index) for t in (split.x, split.y, split.y_len))
            mask = timestep_mask(y_len, y.shape[1])  # (K * rows, steps)
            logits = stacked(x.view(members, rows, *x.shape[1:]), self._masks(active, rows))
            losses = timestep_losses(logits.flatten(0, 1), y, mask, spec.loss)
            (losses.view(members, rows, -1).sum((1, 2)) / rows).sum().backward()
            optimizer.step()
            parts.append(tuple(t.view(members, rows, -1) for t in
                               (losses.detach(), mask, logits.detach().argmax(-1), y)))  # fmt: skip
            self._tick(active)
        if not parts:
            return torch.zeros(members, 0, dtype=torch.float64)
        return _tally(parts)

    def _tick(self, active: list[_Trainer]) -> None:
        for trainer in active:
            if trainer.alive and trainer.member.on_batch is not None:
                try:
                    trainer.member.on_batch()
                except Exception as error:
                    self._leave(trainer, None, error)

    @torch.no_grad()
    def _evaluate(self, stacked: StackedMLP) -> Tensor:
        split: Split = self.data.val
        members, loss = len(stacked.sources), self.trainers[0].member.spec.loss
        parts = []
        for start in range(0, len(split), EVAL_BATCH):
            x, y, y_len = (t[start : start + EVAL_BATCH] for t in (split.x, split.y, split.y_len))
            rows = y.shape[0]
            y, y_len = y.repeat(members, 1), y_len.repeat(members)
            mask = timestep_mask(y_len, y.shape[1])
            x = x.expand(members, *x.shape).contiguous()  # a stride-0 batch takes another gemm
            logits = stacked(x, [None] * stacked.config.layers)
            losses = timestep_losses(logits.flatten(0, 1), y, mask, loss)
            parts.append(tuple(t.view(members, rows, -1) for t in
                               (losses, mask, logits.argmax(-1), y)))  # fmt: skip
        return _tally(parts)

    def _report(self, trainer: _Trainer, values: list[float], cut: int, seconds: float) -> None:
        """Report the member's epoch, then keep it training or let it leave."""
        spec, data, epoch = trainer.member.spec, self.data, trainer.epoch
        train = split_report(values[:cut], data.train.y.shape[1], len(data.train))
        val = split_report(values[cut:], data.val.y.shape[1], len(data.val))
        if val.total < trainer.best:
            trainer.best, trainer.stale = val.total, 0
        else:
            trainer.stale += 1
        state = None
        if self.encoding is not None:
            torch.set_rng_state(trainer.generator.get_state())  # what a checkpoint keeps
            state = capture(
                epoch, trainer.model, trainer.optimizer, trainer.best, trainer.stale, self.encoding
            )
        report = EpochReport(epoch, train, val, seconds, state)
        if trainer.member.on_epoch is not None:
            try:
                trainer.member.on_epoch(report)
            except Exception as error:
                self._leave(trainer, None, error)
                return
        ended = epoch_outcome(spec, report, trainer.stale, self.device)
        if ended is not None:
            self._leave(trainer, ended)
        trainer.epoch += 1
