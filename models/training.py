"""The SGD training loop: per-epoch, per-timestep losses and metrics through a callback.

It knows nothing of queues or databases. Every number of an epoch is accumulated in device
tensors and crosses to the host in one transfer at the epoch's end.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from models.checkpoint import TrainingState, capture, restore
from models.data import Split, TaskData, build_data
from models.graphs import GraphedSteps
from models.losses import timestep_losses, timestep_mask, total_loss
from models.networks import build_model
from models.spec import TrainSpec

EVAL_BATCH = 1024  # evaluation keeps no activations for backward, so it can batch wider


@dataclass(frozen=True)
class SplitReport:
    total: float  # L: mean over sequences of the sum of their per-timestep losses
    per_timestep: list[float]  # L_t for t = 1..longest target in the split
    metric: float  # accuracy, or token accuracy for sequence targets
    metrics: dict[str, float]  # every metric by name, `metric` included
    # token_accuracy at t = 1..T (the steps of `per_timestep`) for sequence targets; empty for
    # labels, whose one step is `metrics["accuracy"]`
    per_timestep_metrics: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    train: SplitReport  # accumulated over the epoch's batches (dropout on, teacher-forced)
    val: SplitReport  # an evaluation pass: dropout off, greedy decoding for the metric
    seconds: float
    checkpoint: TrainingState | None = None  # the state after this epoch, when asked for


@dataclass(frozen=True)
class FitResult:
    status: str  # "completed" | "diverged" | "early_stopped" | "stopped"
    epochs_done: int
    device: str
    reason: str | None


class DeviceError(RuntimeError):
    """The requested device cannot be used."""


def resolve_device(name: str) -> str:
    """Map "auto" to "cuda" when available else "cpu"; a missing CUDA fails at once."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA requested but not available on this worker; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"device must be one of auto, cpu, cuda; got {name!r}")
    return name


def build_optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
    )


def build_seeded(
    spec: TrainSpec, data: TaskData, device: str
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The spec's untrained model and its optimizer, after seeding the global generators with
    the spec's seed: initialisation here, and dropout masks and shuffling after, follow it."""
    torch.manual_seed(spec.seed)
    model = build_model(spec, data.dims).to(device)
    return model, build_optimizer(spec, model)


def batch_sums(losses: Tensor, mask: Tensor, predicted: Tensor, y: Tensor) -> Tensor:
    """Per-timestep loss sums, counts and correct counts, then exact matches, as one vector."""
    correct = (predicted == y) & mask  # (sequences, steps)
    exact = (correct | ~mask).all(1).sum()
    sums = [losses.sum(0), mask.sum(0), correct.sum(0), exact[None]]
    return torch.cat([part.double() for part in sums])


class _Tally:
    """One split's per-batch losses and predictions, kept on the device and reduced once an
    epoch: a few large reductions cost less than many small ones after every batch. Batches
    run by a CUDA graph arrive already reduced (`add_graphed`)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps  # the split's target width: token targets span >= 2 (token, <eos>)
        self.sequences = 0
        self.parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # losses, mask, guess, y
        self.sums: list[Tensor] = []

    def add(self, losses: Tensor, mask: Tensor, predicted: Tensor, y: Tensor) -> None:
        self.parts.append((losses.detach(), mask, predicted, y))
        self.sequences += y.shape[0]

    def add_graphed(self, graphed: GraphedSteps | None) -> None:
        """The sums of the batches `graphed` ran since it was last asked."""
        if graphed is not None and graphed.sequences:
            sums, sequences = graphed.take_sums()
            self.sums.append(sums)
            self.sequences += sequences

    def flat(self) -> Tensor:
        """`batch_sums` over every batch of the split."""
        sums = list(self.sums)
        if self.parts:
            sums.append(batch_sums(*(torch.cat(c) for c in zip(*self.parts, strict=True))))
        return torch.stack(sums).sum(0)

    def report(self, values: list[float]) -> SplitReport:
        """Turn the host copy of `flat()` into a report."""
        return split_report(values, self.steps, self.sequences)


def split_report(values: list[float], steps: int, sequences: int) -> SplitReport:
    """The report of a split from the host copy of its `batch_sums` over `sequences` rows."""
    loss, count, correct = (values[i * steps : (i + 1) * steps] for i in range(3))
    seen = max(t + 1 for t in range(steps) if count[t] > 0)  # longest target tallied
    metric = sum(correct) / sum(count)
    per_timestep = [loss[t] / count[t] for t in range(seen)]
    if steps == 1:
        return SplitReport(sum(loss) / sequences, per_timestep, metric, {"accuracy": metric})
    return SplitReport(
        total=sum(loss) / sequences,
        per_timestep=per_timestep,
        metric=metric,
        metrics={"token_accuracy": metric, "exact_match": values[3 * steps] / sequences},
        per_timestep_metrics={"token_accuracy": [correct[t] / count[t] for t in range(seen)]},
    )


def _on(split: Split, device: str) -> Split:
    # lengths stay on the CPU: packing reads them there, and no batch needs a sync for them
    return replace(split, x=split.x.to(device), y=split.y.to(device), y_len=split.y_len.to(device))


def _predict(model: nn.Module, x: Tensor, lengths: Tensor, logits: Tensor) -> Tensor:
    if model.autoregressive:
        return model.decode(x, lengths)  # greedy: each step reads its own previous guess
    return logits.argmax(-1)  # (batch, steps)


def _step(
    model: nn.Module, optimizer: torch.optim.Optimizer, spec: TrainSpec, split: Split,
    on_device: Tensor, index: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward, backward, clipping and SGD on the batch `on_device` (its CPU copy: `index`), on
    gradients the caller has cleared; the batch's losses, mask, predictions and targets."""
    # index_select, not x[index]: the same gather with less dispatch on the CPU
    x, y, y_len = (t.index_select(0, on_device) for t in (split.x, split.y, split.y_len))
    mask = timestep_mask(y_len, y.shape[1])  # (batch, steps)
    logits = model(x, split.lengths.index_select(0, index), y)  # (batch, steps, classes)
    losses = timestep_losses(logits, y, mask, spec.loss)  # (batch, steps)
    total_loss(losses).backward()
    if spec.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
    optimizer.step()
    return losses.detach(), mask, logits.detach().argmax(-1), y


def _graphed(
    model: nn.Module, split: Split, batch_size: int, step: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer | None = None,
) -> GraphedSteps | None:
    """`step` as a CUDA graph, where the model runs the same kernels for every batch of one
    size and the split has a full batch."""
    if split.y.device.type != "cuda" or not model.graphable or len(split) < batch_size:
        return None
    return GraphedSteps(step, optimizer, batch_size, 3 * split.y.shape[1] + 1)


def _train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, spec: TrainSpec, split: Split,
    stop: threading.Event | None, steps_left: int | None, graphed: GraphedSteps | None,
    on_batch: Callable[[], None] | None = None,
) -> tuple[_Tally, int, bool]:
    """One pass over shuffled batches, calling `on_batch` after each; returns the tally,
    optimizer steps taken, and whether `stop` cut it short."""
    model.train()
    tally = _Tally(split.y.shape[1])
    order = torch.randperm(len(split))  # CPU: it also indexes the CPU-side lengths
    # One copy an epoch, queued from pinned memory: a copy from pageable memory waits for the
    # GPU's queue to drain, and one per batch kept the CPU from running ahead of the GPU.
    on_device = order
    if split.y.is_cuda:
        on_device = order.pin_memory().to(split.y.device, non_blocking=True)
    taken = 0
    for start in range(0, len(split), spec.batch_size):
        if stop is not None and stop.is_set():
            return tally, taken, True
        if steps_left is not None and taken >= steps_left:
            break
        index = order[start : start + spec.batch_size]
        batch = on_device[start : start + spec.batch_size]
        if graphed is not None and graphed.fits(index):
            graphed(batch, index)
        else:
            optimizer.zero_grad(set_to_none=True)
            tally.add(*_step(model, optimizer, spec, split, batch, index))
        taken += 1
        if on_batch is not None:
            on_batch()
    tally.add_graphed(graphed)
    return tally, taken, False


@torch.no_grad()
def _eval_step(
    model: nn.Module, split: Split, loss: str, on_device: Tensor, index: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The batch's losses (teacher-forced: the loss the notes define), mask, predictions (greedy
    for sequence outputs) and targets."""
    x, y, y_len = (t.index_select(0, on_device) for t in (split.x, split.y, split.y_len))
    lengths = split.lengths.index_select(0, index)
    mask = timestep_mask(y_len, y.shape[1])
    logits = model(x, lengths, y)
    losses = timestep_losses(logits, y, mask, loss)  # (batch, steps)
    return losses, mask, _predict(model, x, lengths, logits), y


def _evaluate_tally(
    model: nn.Module, split: Split, loss: str, graphed: GraphedSteps | None = None
) -> _Tally:
    model.eval()
    tally = _Tally(split.y.shape[1])
    order = torch.arange(len(split))
    on_device = torch.arange(len(split), device=split.y.device)
    for start in range(0, len(split), EVAL_BATCH):
        index, batch = order[start : start + EVAL_BATCH], on_device[start : start + EVAL_BATCH]
        if graphed is not None and graphed.fits(index):
            graphed(batch, index)
        else:
            tally.add(*_eval_step(model, split, loss, batch, index))
    tally.add_graphed(graphed)
    return tally


def evaluate(model: nn.Module, split: Split, loss: str) -> SplitReport:
    """Losses and metrics of `model` on a split already on the model's device."""
    tally = _evaluate_tally(model, split, loss)
    values = tally.flat().tolist()  # sync: the one read-back of this evaluation
    return tally.report(values)


def _finite(report: SplitReport) -> bool:
    return math.isfinite(report.total) and all(math.isfinite(v) for v in report.per_timestep)


def fit_model(
    spec: TrainSpec, data: TaskData, model: nn.Module, optimizer: torch.optim.Optimizer,
    device: str, on_epoch: Callable[[EpochReport], None] | None = None,
    stop: threading.Event | None = None, max_steps: int | None = None,
    resume: TrainingState | None = None, checkpoints: bool = False,
    on_batch: Callable[[], None] | None = None,
) -> FitResult:
    """Train an already built model (on `device`) for the spec's epochs.

    With `resume`, training goes on after the checkpoint's epoch exactly as if it had never
    stopped; with `checkpoints`, every EpochReport carries the state after its epoch, and the
    data's encoding with it, so that the state alone can serve predictions. `on_batch` is
    called after every training batch: a sign of progress, for a watchdog.
    """
    epochs = train_epochs(
        spec, data, model, optimizer, device, on_epoch, stop, max_steps, resume, checkpoints,
        on_batch,
    )
    while True:
        try:
            next(epochs)
        except StopIteration as done:
            return done.value


def train_epochs(
    spec: TrainSpec, data: TaskData, model: nn.Module, optimizer: torch.optim.Optimizer,
    device: str, on_epoch: Callable[[EpochReport], None] | None = None,
    stop: threading.Event | None = None, max_steps: int | None = None,
    resume: TrainingState | None = None, checkpoints: bool = False,
    on_batch: Callable[[], None] | None = None,
) -> Generator[int, None, FitResult]:
    """`fit_model` one epoch at a time: yields each finished epoch's number after its
    `on_epoch`, and returns the FitResult. A fused group (models/fusion.py) steps several."""
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1; got {max_steps}")
    train, val = _on(data.train, device), _on(data.val, device)
    encoding = data.encoding().to_dict() if checkpoints else None  # every checkpoint carries it
    best, stale, steps, first = math.inf, 0, 0, 1
    if resume is not None:
        restore(resume, model, optimizer)
        best, stale, first = resume.best, resume.stale, resume.epoch + 1

    def train_step(on_device: Tensor, index: Tensor) -> Tensor:
        return batch_sums(*_step(model, optimizer, spec, train, on_device, index))

    def val_step(on_device: Tensor, index: Tensor) -> Tensor:
        return batch_sums(*_eval_step(model, val, spec.loss, on_device, index))

    # Each split's step as a CUDA graph, captured once for the whole fit.
    train_graph = _graphed(model, train, spec.batch_size, train_step, optimizer)
    val_graph = _graphed(model, val, EVAL_BATCH, val_step)
    for epoch in range(first, spec.epochs + 1):
        started = time.perf_counter()
        left = None if max_steps is None else max_steps - steps
        train_tally, taken, stopped = _train_epoch(
            model, optimizer, spec, train, stop, left, train_graph, on_batch
        )
        steps += taken
        if stopped:
            return FitResult("stopped", epoch - 1, device, f"stop requested during epoch {epoch}")
        val_tally = _evaluate_tally(model, val, spec.loss, val_graph)
        # sync: the epoch's single device->host transfer, every loss and metric at once
        train_values = train_tally.flat()
        values = torch.cat([train_values, val_tally.flat()]).tolist()
        cut = train_values.shape[0]
        train_report, val_report = train_tally.report(values[:cut]), val_tally.report(values[cut:])
        if val_report.total < best:
            best, stale = val_report.total, 0
        else:
            stale += 1
        # sync: a checkpoint copies the weights to the host, once an epoch and only when asked
        state = capture(epoch, model, optimizer, best, stale, encoding) if checkpoints else None
        report = EpochReport(
            epoch, train_report, val_report, time.perf_counter() - started, state
        )
        if on_epoch is not None:
            on_epoch(report)
        if max_steps is not None and steps >= max_steps and _finite_report(report):
            return FitResult("completed", epoch, device, f"max_steps={max_steps} reached")
        ended = epoch_outcome(spec, report, stale, device)
        if ended is not None:
            return ended
        yield epoch
    return FitResult("completed", spec.epochs, device, None)


def _finite_report(report: EpochReport) -> bool:
    return _finite(report.train) and _finite(report.val)


def epoch_outcome(
    spec: TrainSpec, report: EpochReport, stale: int, device: str
) -> FitResult | None:
    """How training ends after `report`'s epoch (diverged, early stopped, or its epochs done),
    or None when it goes on; `stale` counts the epochs since the best val loss."""
    epoch = report.epoch
    for name, split_report in (("train", report.train), ("val", report.val)):
        if not _finite(split_report):
            return FitResult("diverged", epoch, device, f"non-finite {name} loss at epoch {epoch}")
    if spec.patience is not None and stale >= spec.patience:
        reason = f"val loss did not improve for {spec.patience} epochs"
        return FitResult("early_stopped", epoch, device, reason)
    if epoch >= spec.epochs:
        return FitResult("completed", spec.epochs, device, None)
    return None


def fit(
    spec: TrainSpec, data: TaskData | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None, stop: threading.Event | None = None,
    max_steps: int | None = None, resume: TrainingState | None = None, checkpoints: bool = False,
    on_batch: Callable[[], None] | None = None,
) -> FitResult:
    """Train the spec's network on its data (built from the spec when not given); see fit_model
    for `resume` and `checkpoints`."""
    device = resolve_device(spec.device)
    if data is None:
        data = build_data(spec)
    model, optimizer = build_seeded(spec, data, device)
    return fit_model(
        spec, data, model, optimizer, device, on_epoch, stop, max_steps, resume, checkpoints,
        on_batch,
    )
