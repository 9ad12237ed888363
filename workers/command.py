"""`expq worker`: which queues to consume, and the Celery worker itself."""

from __future__ import annotations

import subprocess
import sys
import uuid

from workers.app import QUEUES

_CUDA_PROBE = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"


class WorkerConfigError(ValueError):
    """The requested queues cannot be served by this machine; one-line message."""


def cuda_available() -> bool:
    """Probe CUDA in a child process: importing torch here would be inherited by forked workers."""
    return subprocess.run([sys.executable, "-c", _CUDA_PROBE], capture_output=True).returncode == 0


def resolve_queues(requested: str | None, has_cuda: bool) -> list[str]:
    """`--queues` checked against the hardware; default gpu,auto with CUDA, else cpu,auto."""
    if not requested:
        return ["gpu", "auto"] if has_cuda else ["cpu", "auto"]
    queues = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in queues if name not in QUEUES]
    if unknown or not queues:
        raise WorkerConfigError(
            f"unknown queue {(unknown or [requested])[0]!r}; choose from {', '.join(QUEUES)}"
        )
    if "gpu" in queues and not has_cuda:
        raise WorkerConfigError("queue gpu needs CUDA, and this machine has none")
    return queues


def run_worker(queues: list[str], concurrency: int, loglevel: str = "INFO") -> None:
    from workers.app import app

    app.worker_main(
        [
            "worker",
            f"--queues={','.join(queues)}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--hostname=expq-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
