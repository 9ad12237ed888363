"""Fused against one-at-a-time training in one process, no worker: samples a second summed over
a sweep's members, fused by models.fusion.fit_group and solo by models.training.fit.

Run from the repository root: python -m benchmarks.fusion_probe [--members 16] [--samples 1000]
[--epochs 2] [--tasks binary,...] [--models mlp,rnn]. Prints a Markdown table; the worker
benchmark (benchmarks/fusion.py) can call `probe` for the same figures.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import torch

from models.data import build_data
from models.fusion import Member, fit_group, fusion_key
from models.registry import TASKS
from models.spec import MODELS, TrainSpec, spec_from_dict
from models.training import EpochReport, fit

THREADS = 1  # as benchmarks/training_speed.py: one intra-op thread on a shared 2-core machine


@dataclass(frozen=True)
class Probe:
    task: str
    model: str
    members: int
    solo_seconds: float  # process CPU time: on a shared machine, wall time is mostly others'
    fused_seconds: float
    solo_wall: float
    fused_wall: float
    samples: int  # training samples seen, summed over members and epochs
    equal: bool  # every member's per-epoch numbers equal its solo run's

    @property
    def speedup(self) -> float:
        return self.solo_seconds / self.fused_seconds


def sweep(task: str, model: str, members: int, samples: int, epochs: int) -> list[TrainSpec]:
    """A sweep of one shape: lr, momentum, dropout and seed vary; one shared dataset."""
    base = spec_from_dict(
        {"task": task, "model": model, "device": "cpu", "samples": samples, "epochs": epochs,
         "data_seed": 0}
    )  # fmt: skip
    specs = [
        replace(
            base,
            lr=0.02 * (1 + i % 4),
            momentum=(0.0, 0.5, 0.9)[i % 3],
            dropout=(0.0, 0.1, 0.2, 0.3)[i // 4 % 4],
            seed=i,
        )  # fmt: skip
        for i in range(members)
    ]
    assert len({fusion_key(spec) for spec in specs}) == 1
    return specs


def probe(task: str, model: str, members: int = 16, samples: int = 1000, epochs: int = 2) -> Probe:
    specs = sweep(task, model, members, samples, epochs)
    data = build_data(specs[0])
    warm = [replace(spec, epochs=1) for spec in specs[:2]]  # first calls pay lazy set-up
    fit(warm[0], data)
    fit_group([Member(spec) for spec in warm], data, "cpu")
    solo: list[list[EpochReport]] = []
    started, wall = time.process_time(), time.perf_counter()
    for spec in specs:
        reports: list[EpochReport] = []
        fit(spec, data, on_epoch=reports.append)
        solo.append(reports)
    solo_seconds, solo_wall = time.process_time() - started, time.perf_counter() - wall
    fused: list[list[EpochReport]] = [[] for _ in specs]
    group = [Member(spec, on_epoch=fused[i].append) for i, spec in enumerate(specs)]
    started, wall = time.process_time(), time.perf_counter()
    fit_group(group, data, "cpu")
    fused_seconds, fused_wall = time.process_time() - started, time.perf_counter() - wall
    equal = all(
        [(r.train, r.val) for r in a] == [(r.train, r.val) for r in b]
        for a, b in zip(solo, fused, strict=True)
    )
    seen = members * epochs * len(data.train)
    return Probe(
        task, model, members, solo_seconds, fused_seconds, solo_wall, fused_wall, seen, equal
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    print(
        "| task | model | members | solo CPU s | fused CPU s | solo samples/CPU s "
        "| fused samples/CPU s | speedup | wall s solo / fused | equal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        for model in args.models.split(","):
            p = probe(task, model, args.members, args.samples, args.epochs)
            print(
                f"| {task} | {model} | {p.members} | {p.solo_seconds:.2f} | "
                f"{p.fused_seconds:.2f} | {p.samples / p.solo_seconds:,.0f} | "
                f"{p.samples / p.fused_seconds:,.0f} | {p.speedup:.2f}x | "
                f"{p.solo_wall:.2f} / {p.fused_wall:.2f} | {p.equal} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
