"""expq's fit loop against a plain hand-written PyTorch loop: same model, data and batches.

Run from the repository root: python -m benchmarks.training_speed
Writes benchmarks/results/training_speed.md. Both loops train on the CPU with the task
defaults; expq records per-timestep losses and metrics (greedy decoding on val) every epoch,
the plain loop computes the same masked loss, steps, and evaluates the val loss once an epoch.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.learning_quality import machine
from models.data import TaskData, build_data
from models.networks import build_model
from models.registry import TASKS
from models.spec import MODELS, TrainSpec, spec_from_dict
from models.training import EpochReport, build_optimizer, fit_model

RESULT = Path(__file__).parent / "results" / "training_speed.md"
EPOCHS = 2  # per timing round
ROUNDS = 4  # rounds alternate the two loops so drift in machine load hits both alike
THREADS = 1  # one intra-op thread: on a shared 2-core machine, spinning OpenMP threads of
# competing processes distort timings far more than the second thread speeds these small nets
TARGET = 1.10


def expq_epochs(spec: TrainSpec, data: TaskData) -> list[float]:
    torch.manual_seed(spec.seed)
    model = build_model(spec, data.dims)
    reports: list[EpochReport] = []
    fit_model(spec, data, model, build_optimizer(spec, model), "cpu", reports.append)
    return [report.seconds for report in reports]


def plain_epochs(spec: TrainSpec, data: TaskData) -> list[float]:
    """The loop one would write by hand, drawing the same shuffles as fit does."""
    torch.manual_seed(spec.seed)
    model = build_model(spec, data.dims)
    optimizer = build_optimizer(spec, model)
    train, val = data.train, data.val
    seconds = []
    for _ in range(spec.epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train))
        for start in range(0, len(train), spec.batch_size):
            index = order[start : start + spec.batch_size]
            y = train.y[index]
            logits = model(train.x[index], train.lengths[index], y)
            mask = torch.arange(y.shape[1]) < train.y_len[index][:, None]
            losses = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
            loss = (losses * mask).sum() / y.shape[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(val.x, val.lengths, val.y)
            mask = torch.arange(val.y.shape[1]) < val.y_len[:, None]
            losses = F.cross_entropy(logits.transpose(1, 2), val.y, reduction="none")
            (losses * mask).sum().item() / len(val)  # sync: the val loss a plain loop prints
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    torch.set_num_threads(THREADS)
    command = "python -m benchmarks.training_speed"
    lines = ["# Training speed: expq fit vs a plain PyTorch loop", "", *machine(command), ""]
    lines += [
        f"Defaults of each task x model, CPU, {THREADS} torch thread, {EPOCHS} epochs per round, "
        f"{ROUNDS} rounds alternating the loops; fastest and median seconds per epoch (train "
        "pass + val pass); the ratio compares the fastest epochs, the least disturbed by other "
        "load on the machine. expq records "
        "per-timestep train and val losses and metrics, with greedy decoding for the RNN's "
        "val metric, and reads them back once an epoch.",
        "",
        "| task | model | train rows | batches | expq s/epoch min (median) "
        f"| plain s/epoch min (median) | ratio | <= {TARGET} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        for model in MODELS:
            spec = spec_from_dict({"task": task, "model": model, "device": "cpu", "epochs": EPOCHS})
            data = build_data(spec)
            ours, plain = [], []
            for _ in range(ROUNDS):
                ours += expq_epochs(spec, data)
                plain += plain_epochs(spec, data)
            a, b = min(ours), min(plain)
            batches = -(-len(data.train) // spec.batch_size)
            row = (
                f"| {task} | {model} | {len(data.train)} | {batches} | "
                f"{a:.4f} ({statistics.median(ours):.4f}) | "
                f"{b:.4f} ({statistics.median(plain):.4f}) | "
                f"{a / b:.3f} | {'yes' if a / b <= TARGET else 'NO'} |"
            )
            lines.append(row)
            print(row, flush=True)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
