"""On RabbitMQ a worker consumes only while one of its pool processes is free.

A train message is acked when its run starts (workers/app.py), and the ack frees its place in
the channel's prefetch window: RabbitMQ would at once deliver another message to a worker
whose processes are all busy, where it would wait for a run to end while other workers idle,
and go back to the queue only when the consumer timeout closed the channel. AMQP cannot shrink
the window to nothing (a prefetch count of 0 means no limit), so the worker cancels its
consumers when its last free process takes a run, before that run's ack, and consumes again
once a process is free (it looks every RESUME_SECONDS). Redis needs none of this:
`worker_disable_prefetch` does it there.
"""

from __future__ import annotations

from celery import bootsteps
from celery.worker import state as worker_state

from workers.app import is_redis

RESUME_SECONDS = 0.5


class _Flow:
    consumer = None  # Celery's worker consumer, while it runs
    paused = False


def _applies() -> bool:
    consumer = _Flow.consumer
    return consumer is not None and not is_redis(consumer.app.conf.broker_url)


def before_ack() -> None:
    """A run is starting (its request not yet active): pause when it takes the last process."""
    if not _applies() or _Flow.paused:
        return
    consumer = _Flow.consumer
    if len(worker_state.active_requests) + 1 >= consumer.pool.num_processes:
        consumer.task_consumer.cancel()
        _Flow.paused = True


def resume_if_free() -> None:
    """Consume again once a process is free."""
    if not _applies() or not _Flow.paused:
        return
    consumer = _Flow.consumer
    if len(worker_state.active_requests) < consumer.pool.num_processes:
        consumer.task_consumer.consume()
        _Flow.paused = False


class Flow(bootsteps.StartStopStep):
    """Knows the consumer, whose task consumer each (re)connection makes anew, consuming."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    timer = None

    def start(self, c) -> None:  # noqa: ANN001 - Celery's consumer
        _Flow.consumer, _Flow.paused = c, False
        if self.timer is None:
            # Not on a request's end: Celery's request class for a task replaces on_success.
            self.timer = c.timer.call_repeatedly(RESUME_SECONDS, resume_if_free)

    def stop(self, c) -> None:  # noqa: ANN001
        _Flow.consumer = None
