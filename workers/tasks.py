"""The Celery task: thin, it takes a run id and hands it to the runner.

Its request class runs in the worker's main process and hears when a pool process died with
a run in hand (the OOM killer, a segfault, SIGKILL): it expires that claim's lease at once and
wakes the reaper, so the run is queued again in about a second instead of a lease later. At a
cold shutdown it gives the runs back instead: queued again, an attempt that does not count.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.signals import worker_process_init
from celery.worker.request import Request

from service.config import load_settings
from service.db import get_engine
from service.errors import DatabaseError
from workers import flow
from workers.app import TRAIN_TASK, app
from workers.control import leave_device_queues
from workers.group import execute_group, trains_in_group
from workers.outcomes import EXIT_HUNG, INFRASTRUCTURE_ERRORS, DeviceFault
from workers.runner import execute_run, lease_owner

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 30
# About ten minutes (1 + 2 + ... + 30 s): a database away longer than that is an outage to
# report, not to wait out in silence. The reaper publishes the run again once the database
# answers (a queued run whose message is gone, or a claimed one whose lease ran out).
MAX_RETRIES = 25
SHUT_DOWN = "its worker was shut down (cold shutdown)"


def valid_run_id(args: object) -> int | None:
    """The run id a message carries, or None for a malformed message."""
    if isinstance(args, (list, tuple)) and len(args) == 1:
        run_id = args[0]
        if isinstance(run_id, int) and not isinstance(run_id, bool) and run_id > 0:
            return run_id
    return None


def death_reason(exc: BaseException) -> str:
    """A reason for the run, from billiard's "Worker exited prematurely: signal 9 (SIGKILL)
    Job: 3." (SIGKILL is what the kernel's OOM killer sends)."""
    found = re.search(r"(signal \d+ \(\w+\)|exitcode \d+)", str(exc))
    how = found.group(1) if found else str(exc).strip() or type(exc).__name__
    if how == f"exitcode {EXIT_HUNG}":
        timeout = load_settings().progress_timeout_seconds
        return f"training made no progress for {timeout:g} s; its process was ended"
    hint = " (killed: out of memory?)" if "SIGKILL" in how else ""
    return f"the training process died: {how}{hint}"


def retry_countdown(retries: int) -> int | None:
    """Seconds before retry number `retries + 1` of a message the database could not take;
    None once MAX_RETRIES are spent."""
    return None if retries >= MAX_RETRIES else min(2**retries, RETRY_MAX_SECONDS)


def _release_claim(run_id: int, owner: str, reason: str) -> None:
    """Release every run a dead process held as `owner`: its message's run, and the other
    members of its fused group. The reaper, woken, queues them again: a lost attempt."""
    from service.lifecycle import release_owner
    from workers.reaper import wake_reaper

    try:
        released = release_owner(get_engine(load_settings().database_url), owner, reason)
        for released_id in released:
            log.warning("run %s: %s; lease released", released_id, reason)
        if released:
            wake_reaper()
        else:
            log.info("run %s: %s; it held no lease (any more) as %s", run_id, reason, owner)
    except Exception:  # noqa: BLE001 - the lease still runs out by itself
        log.warning("run %s: could not release its lease (%s)", run_id, reason, exc_info=True)


def _give_back(run_id: int, owner: str) -> None:
    """Queue again and publish, from this thread, every run a process held as `owner` when its
    worker shut down (the reaper stops with the worker): attempts given back, which
    max_attempts does not count."""
    from service.lifecycle import give_back_owner
    from workers.dispatch import publish_run

    try:
        given = give_back_owner(get_engine(load_settings().database_url), owner, SHUT_DOWN)
        for dispatch in given:
            publish_run(app, dispatch.run_id, dispatch.queue, dispatch.priority)
            log.warning("run %s: given back (%s); queued again", dispatch.run_id, SHUT_DOWN)
        if not given:
            log.info("run %s: %s; it held no lease (any more) as %s", run_id, SHUT_DOWN, owner)
    except Exception:  # noqa: BLE001 - its lease runs out, or the reaper publishes it again
        log.warning("run %s: could not give it back (%s)", run_id, SHUT_DOWN, exc_info=True)


class TrainRequest(Request):
    """A train_run request, seen from the worker's main process."""

    def cancel(self, pool, signal=None, emit_retry=True):  # noqa: ANN001, ANN201
        """Celery's cold shutdown (a second Ctrl-C, SIGQUIT) ends the training processes: their
        runs are queued again at once, attempts given back that max_attempts does not count.
        Without this they stayed `running`, their leases live, until a worker's reaper found
        them expired (EXPQ_LEASE_SECONDS later, and only once a worker ran again), and each
        shutdown spent one of their attempts."""
        held = self.time_start is not None and self.worker_pid
        result = super().cancel(pool, signal, emit_retry)
        run_id = valid_run_id(self.args)
        if held and run_id is not None:
            owner = lease_owner(socket.gethostname(), self.worker_pid, self.id)
            # Not from inside Celery's signal handler, where this runs; not a daemon, so that
            # the worker's exit waits for it.
            threading.Thread(
                target=_give_back, args=(run_id, owner), name=f"give-back-{run_id}"
            ).start()
        return result

    def on_accepted(self, pid, time_accepted):  # noqa: ANN001, ANN201
        flow.before_ack()
        return super().on_accepted(pid, time_accepted)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):  # noqa: ANN001, ANN201
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        died = isinstance(exc, (WorkerLostError, SystemExit, KeyboardInterrupt))
        result = super().on_failure(exc_info, send_failed_event, return_ok)
        run_id = valid_run_id(self.args)
        if died and run_id is not None and self.worker_pid:
            owner = lease_owner(socket.gethostname(), self.worker_pid, self.id)
            # A thread: the database must not stall the consumer's event loop.
            threading.Thread(
                target=_release_claim,
                args=(run_id, owner, death_reason(exc)),
                name=f"release-{run_id}",
                daemon=True,
            ).start()
        return result


class TrainTask(Task):
    Request = TrainRequest


@app.task(name=TRAIN_TASK, base=TrainTask, bind=True)
def train_run(self: Task, run_id: int) -> str | None:
    """Train run `run_id`; a redelivered or stale message finds the claim held and does nothing."""
    if valid_run_id([run_id]) is None:
        log.error(
            "train_run: ignoring a message whose run id is not a positive integer: %r", run_id
        )
        return None
    settings = load_settings()
    owner = lease_owner(socket.gethostname(), os.getpid(), self.request.id)
    try:
        engine = get_engine(settings.database_url)
        if settings.fuse > 1 and trains_in_group(engine, run_id):
            ended = execute_group(
                engine, run_id, settings, owner, self.request.hostname, settings.fuse
            )
            return ended.get(run_id)
        return execute_run(engine, run_id, settings, owner, worker=self.request.hostname)
    except DeviceFault as fault:
        leave_device_queues(self.app, self.request.hostname, fault.device, fault.auto_device)
        return None
    except (DatabaseError, *INFRASTRUCTURE_ERRORS) as exc:
        if isinstance(exc, DatabaseError) and exc.__cause__ is None:
            raise  # the schema is not the one expq needs: no retry helps
        # The database is away, not the run: try this message again later. If the run was
        # claimed meanwhile its lease covers it, and the retried message is dropped.
        countdown = retry_countdown(self.request.retries)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if countdown is None:
            log.error(
                "run %s: database unavailable (%s) through %d retries; message dropped, the "
                "reaper publishes the run again once the database answers",
                run_id,
                first,
                MAX_RETRIES,
            )
            return None
        log.warning("run %s: database unavailable (%s); retrying in %ss", run_id, first, countdown)
        raise self.retry(countdown=countdown, max_retries=MAX_RETRIES) from None


@worker_process_init.connect
def _warm_up(**_kwargs) -> None:  # noqa: ANN003 - Celery's signal signature
    """Import torch in a fresh pool process, off its main thread: the first run starts sooner,
    and the main process, which forks, never imports it."""
    threading.Thread(target=lambda: __import__("models.training"), daemon=True).start()
