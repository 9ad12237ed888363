"""Learning quality with default hyperparameters: every task x model, plus a dropout study.

Run from the repository root: python -m benchmarks.learning_quality
Writes benchmarks/results/learning_quality.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from models.data import TaskData, build_data
from models.networks import build_model
from models.registry import TASKS
from models.spec import MODELS, TrainSpec, spec_from_dict
from models.training import EpochReport, build_optimizer, evaluate, fit, fit_model

RESULT = Path(__file__).parent / "results" / "learning_quality.md"
# The targets issue 3 sets for the RNN with defaults, within 60 s on 2 CPU cores.
TARGETS = {"binary": 0.95, "sentiment": 0.95, "captioning": 0.95, "translation": 0.90}
# Small training sets where the network memorises: (task, model, overrides, dropout).
DROPOUT_CASES = [
    ("binary", "mlp", {"samples": 150, "epochs": 300, "hidden": 256}, 0.5),
    ("translation", "rnn", {"samples": 1000, "epochs": 30}, 0.3),
]


def machine(command: str) -> list[str]:
    """Markdown lines naming the date, machine and software behind the numbers."""
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: `{uname}`, nproc {nproc}, load average at start "
        + " ".join(f"{load:.2f}" for load in os.getloadavg())
        + " (the machine is shared: other jobs inflate wall times)",
        f"- python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        f"- command: `{command}`",
    ]


def defaults_row(task: str, model: str) -> tuple[str, bool]:
    spec = spec_from_dict({"task": task, "model": model, "device": "cpu"})
    reports: list[EpochReport] = []
    started = time.perf_counter()
    result = fit(spec, on_epoch=reports.append)
    seconds = time.perf_counter() - started
    last = reports[-1]
    met = model != "rnn" or last.val.metric >= TARGETS[task] and seconds <= 60
    extra = ", ".join(f"{k} {v:.3f}" for k, v in last.val.metrics.items())
    row = (
        f"| {task} | {model} | {result.status} | {result.epochs_done} | {last.train.total:.4f} | "
        f"{last.val.total:.4f} | {last.val.metric:.4f} | {extra} | {seconds:.1f} |"
        + (f" {'yes' if met else 'NO'} (>= {TARGETS[task]}) |" if model == "rnn" else " |")
    )
    return row, met


def trained(spec: TrainSpec, data: TaskData) -> tuple[float, float, float]:
    """Train; return train loss (evaluated with dropout off), val loss and val metric."""
    torch.manual_seed(spec.seed)
    model = build_model(spec, data.dims)
    fit_model(spec, data, model, build_optimizer(spec, model), "cpu")
    train, val = evaluate(model, data.train, spec.loss), evaluate(model, data.val, spec.loss)
    return train.total, val.total, val.metric


def dropout_rows() -> list[str]:
    rows = []
    for task, model, overrides, rate in DROPOUT_CASES:
        base = {"task": task, "model": model, "device": "cpu", **overrides}
        data = build_data(spec_from_dict(base))
        for dropout in (0.0, rate):
            train, val, metric = trained(spec_from_dict({**base, "dropout": dropout}), data)
            rows.append(
                f"| {task} | {model} | {len(data.train)} | {dropout} | {train:.4f} | {val:.4f} | "
                f"{val - train:.4f} | {metric:.4f} |"
            )
    return rows


def main() -> None:
    command = "python -m benchmarks.learning_quality"
    lines = ["# Learning quality with default hyperparameters", "", *machine(command), ""]
    lines += [
        "Each row trains one run with `spec_from_dict({task, model, device: cpu})`, i.e. the "
        "defaults of `models/defaults.py`, on the built-in data; numbers are the last epoch's.",
        "",
        "| task | model | status | epochs | train loss | val loss | val metric | val metrics "
        "| wall s | RNN target met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        for model in MODELS:
            row, _ = defaults_row(task, model)
            lines.append(row)
            print(row, flush=True)
    lines += [
        "",
        "## Dropout on a small training set",
        "",
        "Same data and seed, with and without dropout. Train loss is measured after training "
        "in an evaluation pass (dropout off), so the gap compares like with like. Other knobs "
        "are the task defaults except: "
        + "; ".join(f"{t}/{m}: {o}" for t, m, o, _ in DROPOUT_CASES)
        + ".",
        "",
        "| task | model | train rows | dropout | train loss | val loss | gap (val - train) "
        "| val metric |",
        "|---|---|---|---|---|---|---|---|",
        *dropout_rows(),
    ]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-6:]))


if __name__ == "__main__":
    main()
