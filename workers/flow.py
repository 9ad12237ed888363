"""On RabbitMQ a worker consumes only while one of its pool processes is free.

A train message is acked when its run starts (workers/app.py), and the ack frees its place in
the channel's prefetch window: RabbitMQ would at once deliver another message to a worker
whose processes are all busy, where it would wait for a run to end while other workers idle,
and go back to the queue only when the consumer timeout closed the channel. AMQP cannot shrink
the window to nothing (a prefetch count of 0 means no limit), so the worker cancels its
consumers when its last free process takes a run, before that run's ack, and consumes again
once a process is free (it looks every ADJUST_SECONDS, and pauses a new connection of a
busy worker there too). Redis needs none of this:
`worker_disable_prefetch` does it there.
"""

from __future__ import annotations

from celery import bootsteps
from celery.worker import state as worker_state

from workers.brokers import is_redis

ADJUST_SECONDS = 0.5


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


def adjust() -> None:
    """Consume again once a process is free; pause when busy (a new connection consumes)."""
    if not _applies():
        return
    consumer = _Flow.consumer
    free = len(worker_state.active_requests) < consumer.pool.num_processes
    if _Flow.paused and free:
        consumer.task_consumer.consume()
        _Flow.paused = False
    elif not _Flow.paused and not free and consumer.task_consumer is not None:
        consumer.task_consumer.cancel()
        _Flow.paused = True


class Flow(bootsteps.StartStopStep):
    """Knows the consumer, whose task consumer each (re)connection makes anew, consuming."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    timer = None

    def start(self, c) -> None:  # noqa: ANN001 - Celery's consumer
        _Flow.consumer, _Flow.paused = c, False
        # A timer, not a request's end: Celery's request class for a task replaces on_success.
        # Each connection's own: a reconnection cancels the timer entries of the last one.
        self.timer = c.timer.call_repeatedly(ADJUST_SECONDS, adjust)

    def stop(self, c) -> None:  # noqa: ANN001
        _Flow.consumer = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
