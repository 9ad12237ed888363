"""`expq worker`: which queues to consume, waiting for the database, and the Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from workers.app import QUEUES

_CUDA_PROBE = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
# Device nodes of a GPU driver (NVIDIA, AMD ROCm, WSL): without one, CUDA cannot be there, and
# the probe below (an import of torch, seconds of CPU) is skipped.
_GPU_DRIVER_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")
DATABASE_RETRY_MAX_SECONDS = 10.0


class WorkerConfigError(ValueError):
    """The requested queues cannot be served by this machine; one-line message."""


def cuda_available() -> bool:
    """Probe CUDA in a child process: importing torch here would be inherited by forked workers."""
    if not any(Path(path).exists() for path in _GPU_DRIVER_PATHS):
        return False
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


def wait_for_database(
    url: str, say: Callable[[str], None], sleep: Callable[[float], None] = time.sleep
) -> None:
    """Return once the database answers; until then retry with a backoff, saying why each time
    (the URL masked). The worker consumes nothing meanwhile, so no message is taken that could
    not be claimed. Only reachability is checked here: the schema is checked (and an empty
    database created) on first use, by whichever process comes first."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from service.db import make_engine

    engine = make_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    delay = 0.5
    try:
        while True:
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                return
            except OperationalError as exc:
                reason = (str(exc.orig or exc).strip().splitlines() or ["no answer"])[0]
                say(f"database unreachable at {where}: {reason}; retrying in {delay:g}s")
            sleep(delay)
            delay = min(delay * 2, DATABASE_RETRY_MAX_SECONDS)
    finally:
        engine.dispose()


def torch_threads(concurrency: int, cpus: int | None = None) -> int:
    """Threads per training process so that `concurrency` of them share the cores."""
    return max(1, (cpus or os.cpu_count() or 1) // concurrency)


def run_worker(
    queues: list[str],
    concurrency: int,
    loglevel: str = "INFO",
    has_cuda: bool | None = None,
    fuse: int | None = None,
) -> None:
    from workers.app import app
    from workers.control import set_device

    if has_cuda is not None:
        set_device(has_cuda)
    # Each pool process would otherwise start one torch thread per core: N processes on N cores
    # then fight over them, and a 0.2 s epoch was measured taking 37 s. Set before the fork, so
    # every pool process reads it when it imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", str(torch_threads(concurrency)))
    if fuse is not None:
        os.environ["EXPQ_FUSE"] = str(fuse)  # read by every pool process's settings
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
