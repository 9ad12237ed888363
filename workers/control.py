"""What `expq workers` asks each live worker over Celery's remote control (`expq_info`), and
what a worker tells itself when a device breaks (stop consuming its queues).

The answer comes from the worker's main process, which never imports torch: the device is
probed once in a child process when the worker is ready.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery.signals import worker_ready
from celery.worker import state as worker_state
from celery.worker.control import inspect_command

from workers.app import QUEUES, TRAIN_TASK

INFO_COMMAND = "expq_info"
log = logging.getLogger(__name__)

_device: dict[str, str] = {}  # "device": "cuda" | "cpu", once probed
_started = time.time()


def set_device(has_cuda: bool) -> None:
    _device["device"] = "cuda" if has_cuda else "cpu"


def _probe_device() -> None:
    from workers.command import cuda_available

    set_device(cuda_available())


@worker_ready.connect
def _on_ready(**_kwargs) -> None:  # noqa: ANN003 - Celery's signal signature
    global _started
    _started = time.time()
    if "device" not in _device:
        threading.Thread(target=_probe_device, name="expq-device-probe", daemon=True).start()


def active_runs() -> list[dict]:
    """The runs this worker's pool is training: id, pool pid, seconds since it started."""
    runs = []
    for request in list(worker_state.active_requests):
        if request.name != TRAIN_TASK or not request.args:
            continue
        started = request.time_start
        runs.append(
            {
                "run_id": request.args[0],
                "pid": request.worker_pid,
                "seconds": round(time.time() - started, 1) if started else None,
            }
        )
    return sorted(runs, key=lambda run: str(run["run_id"]))


@inspect_command(name=INFO_COMMAND)
def expq_info(state) -> dict:  # noqa: ANN001 - Celery's control state
    """expq's view of this worker: queues, concurrency, device and the runs it trains."""
    consumer = state.consumer
    queues = (
        [queue.name for queue in consumer.task_consumer.queues] if consumer.task_consumer else []
    )
    return {
        "hostname": consumer.hostname,
        "pid": os.getpid(),
        "queues": sorted(queues),
        "concurrency": consumer.pool.num_processes if consumer.pool else None,
        "device": _device.get("device", "unknown"),
        "active_runs": active_runs(),
        "uptime_seconds": round(time.time() - _started, 1),
    }


def device_queues(device: str, auto_device: str) -> list[str]:
    """The queues whose runs train on `device` in a worker that trains auto on `auto_device`."""
    own = {"cuda": "gpu", "cpu": "cpu"}[device]
    return [name for name in QUEUES if name == own or (name == "auto" and device == auto_device)]


def leave_device_queues(app, hostname: str, device: str, auto_device: str) -> list[str]:  # noqa: ANN001
    """Tell worker `hostname` (from any of its processes) to stop consuming the queues of a
    broken `device`, until it is restarted; the queues it left."""
    queues = device_queues(device, auto_device)
    for queue in queues:
        try:
            app.control.cancel_consumer(queue, destination=[hostname], reply=True, timeout=5)
        except Exception:  # noqa: BLE001 - the broker is away: the next fault tries again
            log.exception("worker %s: could not stop consuming %s", hostname, queue)
            continue
        log.error("worker %s: device %s is broken; no longer consuming %s", hostname, device, queue)
    return queues
