"""Faults injected into the training processes of a test's worker, which has this folder on
its PYTHONPATH and EXPQ_TEST_INJECT=KIND@EPOCH (faults.fleet.Fleet.worker):

- hang@N: the Nth epoch's training blocks forever, as a deadlock or a hung device call would;
- device@N: the Nth epoch raises the error a broken GPU raises;
- renew: every lease renewal of a first attempt fails.

A hang or a device fault strikes once per marker file (EXPQ_TEST_INJECT_MARKER), which
records when it struck.
"""

from __future__ import annotations

import os

_INJECT = os.environ.get("EXPQ_TEST_INJECT")


def _inject(**_kwargs) -> None:  # noqa: ANN003 - Celery's signal signature
    """Before a training process's first task (not at its start: importing torch there would
    outlast the pool's start-up timeout)."""
    import threading

    import models.training as training
    import workers.lease as lease

    kind, _, epoch = _INJECT.partition("@")
    marker = os.environ["EXPQ_TEST_INJECT_MARKER"]
    if getattr(training, "_injected", False):
        return
    training._injected = True
    if kind == "renew":
        from sqlalchemy.exc import OperationalError

        renew = lease.renew_lease

        def failing(engine, run_id, attempt, lease_seconds):  # noqa: ANN001, ANN202
            if attempt == 1:
                raise OperationalError("UPDATE runs", {}, Exception("injected: no route"))
            return renew(engine, run_id, attempt, lease_seconds)

        lease.renew_lease = failing
        return
    original, calls = training._train_epoch, []

    def faulty(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(None)
        if len(calls) == int(epoch) and not os.path.exists(marker):
            open(marker, "w").close()
            if kind == "hang":
                threading.Event().wait()
            import torch

            raise torch.AcceleratorError("CUDA error: unspecified launch failure")
        return original(*args, **kwargs)

    training._train_epoch = faulty


if _INJECT:
    from celery.signals import task_prerun

    task_prerun.connect(_inject, weak=False)
