"""Every task with the RNN on CUDA through a real `expq worker`, against CPU and a plain loop.

Run from the repository root on a machine with CUDA (about 2 minutes on one H100):

    python -m benchmarks.gpu_rnn

It starts the embedded broker (fakeredis) and a SQLite database in a temporary folder, one
`expq worker --queues gpu` and one `expq worker --queues cpu`, submits each of the four tasks
with `--model rnn --cell rnn --hidden 64 --seq-len 20 --batch-size 1024` to each, and reads
back the device every run recorded and its training samples/s (training samples x epochs over
the time fit took, less its database writes; the per-epoch validation pass counts against
expq). In the same run it times a plain fused PyTorch loop of the same size (Embedding,
nn.RNN h64 over T=20, Linear; batch 1024; SGD; no validation), the reference the target is
set against: expq's sentiment run (N->1, like the plain loop) at >= 0.8x its samples/s.
Writes benchmarks/results/fleet_gpu_rnn.md. `--smoke` runs the same plumbing on the CPU with
tiny sizes, to check the script without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = Path(__file__).parent / "results" / "fleet_gpu_rnn.md"
TASKS = ("binary", "sentiment", "captioning", "translation")
SIZE = {"model": "rnn", "cell": "rnn", "hidden": 64, "seq_len": 20, "batch_size": 1024}
TARGET = 0.8
PHASES = re.compile(
    r"run (\d+) attempt \d+ (\w+) in [\d.]+ s \(claim [\d.]+ ms, setup ([\d.]+) ms, "
    r"train ([\d.]+) ms, writes ([\d.]+) ms\)"
)


def plain_loop(device: str, steps: int, batch: int = 1024, steps_warm: int = 20) -> float:
    """Samples/s of the loop one writes by hand: no packing, no metrics, no validation."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    vocab, hidden, length = 32, 64, 20
    embed = nn.Embedding(vocab, hidden).to(device)
    rnn = nn.RNN(hidden, hidden, batch_first=True).to(device)  # fused (cuDNN on CUDA)
    head = nn.Linear(hidden, 2).to(device)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    x = torch.randint(vocab, (batch * 8, length), device=device)
    y = torch.randint(2, (batch * 8,), device=device)

    def step(i: int) -> None:
        rows = slice((i % 8) * batch, (i % 8 + 1) * batch)
        _, last = rnn(embed(x[rows]))  # (1, batch, hidden)
        loss = nn.functional.cross_entropy(head(last[-1]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(steps_warm):
        step(i)
    if device == "cuda":
        torch.cuda.synchronize()  # sync: start the clock on an idle device
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    if device == "cuda":
        torch.cuda.synchronize()  # sync: every step has run
    return steps * batch / (time.perf_counter() - started)


def sized(task: str, device: str, samples: int, epochs: int) -> dict:
    """The benchmark's spec for `task`; captions are at most 18 words long, so seq_len 18."""
    from models.registry import TASKS

    seq_len = min(SIZE["seq_len"], TASKS[task].seq_len[1])
    return {**SIZE, "seq_len": seq_len, "task": task, "device": device, "samples": samples,
            "epochs": epochs}  # fmt: skip


def start_worker(env: dict[str, str], queues: str, log: Path) -> subprocess.Popen:
    from service.demo import start_worker as start

    return start(env, log, 1, queues=queues, loglevel="INFO")


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def wait_for(engine, run_ids: list[int], workers: list[subprocess.Popen], timeout: float) -> None:  # noqa: ANN001
    from service.store import run_statuses

    deadline = time.monotonic() + timeout
    while True:
        statuses = run_statuses(engine, run_ids)
        if all(s in ("succeeded", "failed", "diverged", "cancelled") for s in statuses.values()):
            return
        if any(worker.poll() is not None for worker in workers):
            raise SystemExit("a worker exited; see its log")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; statuses: {statuses}")
        time.sleep(0.2)


def machine() -> list[str]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.node()}, {os.cpu_count()} CPUs, GPU: {gpu}",
        f"- python {platform.python_version()}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}",
        f"- command: `python -m benchmarks.gpu_rnn {' '.join(sys.argv[1:])}`".rstrip(),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU only, tiny sizes.")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()

    import torch

    from service.db import get_engine
    from service.demo import embedded_broker
    from service.store import NewRun, get_run
    from service.submit import prepare_spec, submit_spec
    from workers.app import make_app

    has_cuda = torch.cuda.is_available()
    if not has_cuda and not args.smoke:
        raise SystemExit("no CUDA on this machine; run with --smoke to check the plumbing")
    devices = ["cpu"] if args.smoke else ["cuda", "cpu"]
    # samples (train + val, 80/20) and epochs per device: enough steps to time, under 4 min
    budget = {"cuda": (50_000, 20), "cpu": (10_000, 2)}
    if args.smoke:
        budget = {"cpu": (2_000, 1)}
    folder = Path(tempfile.mkdtemp(prefix="expq-gpu-"))
    database = f"sqlite:///{folder / 'expq.db'}"
    env = {**os.environ, "EXPQ_HOME": str(folder), "EXPQ_DATABASE_URL": database}
    env.pop("OMP_NUM_THREADS", None)  # the CPU worker uses every core, as a user's would
    rows: list[tuple] = []
    workers: list[subprocess.Popen] = []
    with embedded_broker() as broker:
        env["EXPQ_BROKER_URL"] = broker
        os.environ.update({k: env[k] for k in ("EXPQ_HOME", "EXPQ_BROKER_URL")})
        engine, app = get_engine(database), make_app(broker)
        try:
            submitted, phases = [], {}
            for device in devices:  # one device at a time: the CPU run would slow the GPU's host
                queue = "gpu" if device == "cuda" else "cpu"
                log = folder / f"worker-{queue}.log"
                workers = [start_worker(env, queue, log)]
                samples, epochs = budget[device]
                # Unmeasured: the pool process's CUDA context, cuDNN plans, allocator pools.
                warm = []
                for task in TASKS:
                    spec, files = prepare_spec(sized(task, device, 2048, 1), None, None)
                    warm.append(submit_spec(engine, app, spec, files, NewRun("warm-up", queue)).id)
                wait_for(engine, warm, workers, 300)
                ids = []
                for task in TASKS:
                    spec, files = prepare_spec(sized(task, device, samples, epochs), None, None)
                    run = submit_spec(engine, app, spec, files, NewRun("gpu-rnn", queue))
                    ids.append(run.id)
                    submitted.append((device, task, run.id, int(samples * 0.8) * epochs))
                wait_for(engine, ids, workers, 600)
                for match in PHASES.finditer(log.read_text(errors="replace")):
                    phases[int(match.group(1))] = match.groups()[1:]
                stop(workers.pop())
            for device, task, run_id, trained in submitted:
                run = get_run(engine, run_id)
                status, setup_ms, train_ms, writes_ms = phases.get(run_id, (run.status, 0, 0, 0))
                rate = trained / (float(train_ms) / 1000) if float(train_ms) else 0.0
                rows.append((task, device, run.device, run.status, rate, float(setup_ms),
                             float(writes_ms), run.error))  # fmt: skip
        finally:
            for worker in workers:
                stop(worker)
    plain_device = "cpu" if args.smoke else "cuda"
    plain = plain_loop(plain_device, steps=20 if args.smoke else 400)
    sentiment = next(r[4] for r in rows if r[0] == "sentiment" and r[1] == plain_device)
    ratio = sentiment / plain
    lines = [
        "# The RNN on CUDA through a real expq worker",
        "",
        *machine(),
        f"- sizes: {', '.join(f'{k}={v}' for k, v in SIZE.items())} (captioning: seq_len=18, "
        f"its longest caption); samples and epochs per device: {budget}",
        "",
        "| task | device asked | device recorded | status | train samples/s | setup ms | "
        "writes ms |",
        "|---|---|---|---|---:|---:|---:|",
        *(
            f"| {task} | {asked} | {recorded} | {status} | {rate:,.0f} | {setup:.0f} | "
            f"{writes:.0f} |" + (f" {error}" if error else "")
            for task, asked, recorded, status, rate, setup, writes, error in rows
        ),
        "",
        f"Plain fused loop on {plain_device} (Embedding + nn.RNN h64, T=20, batch 1024): "
        f"{plain:,.0f} samples/s.",
        "",
        f"expq sentiment on {plain_device} / plain loop: **{ratio:.2f}x** "
        f"(target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'}).",
        "",
    ]
    text = "\n".join(lines)
    if not args.smoke:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
