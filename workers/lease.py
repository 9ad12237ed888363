"""The heartbeat that keeps a run's lease alive while training makes progress, and tells
training when to stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from service.lifecycle import LeaseLost, is_cancelled, renew_lease

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renews the lease every `interval` seconds while training makes progress.

    Sets `stop` (the event training checks at each batch boundary) with `reason` when the run
    was cancelled, the lease was lost to another attempt, the time limit passed, or renewals
    have failed for longer than the lease: by then the lease has run out and another worker may
    hold the run. That last check is also made at every `tick`, from the training thread, so
    that a renewal hung on a silent network cannot keep training going.

    Training calls `tick()` after every batch and epoch. When none comes for
    `progress_timeout` seconds (a deadlock, a hung device call), the heartbeat stops renewing
    and calls `on_hung(reason)`, which ends the training process: a hung thread cannot be
    stopped from inside it.
    """

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        attempt: int,
        *,
        interval: float,
        lease_seconds: float,
        time_limit: float | None,
        progress_timeout: float = float("inf"),
        on_hung: Callable[[str], None] | None = None,
        renew: Callable[..., None] | None = None,
    ) -> None:
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.engine = engine
        self.run_id = run_id
        self.attempt = attempt
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.deadline = time.monotonic() + time_limit if time_limit else None
        self.progress_timeout = progress_timeout
        self.on_hung = on_hung
        self.renew = renew or renew_lease
        self.stop = threading.Event()
        self.reason: str | None = None
        self.renewed_at = self.progress_at = time.monotonic()  # the claim set the lease
        self._watching = True
        self._done = threading.Event()

    def _halt(self, reason: str) -> None:
        self.reason = reason
        self.stop.set()

    def tick(self) -> None:
        """Training made progress."""
        self.progress_at = time.monotonic()
        self._check_renewals(self.progress_at)

    def trained(self) -> None:
        """Training has ended: the outcome's write has a bound of its own."""
        self._watching = False

    def _check_renewals(self, now: float) -> bool:
        """False, and training told to stop, once the lease has run out unrenewed."""
        unrenewed = now - self.renewed_at
        if unrenewed <= self.lease_seconds:
            return True
        if not self.stop.is_set():
            log.error(
                "run %s attempt %s: lease renewals failed for %.1f s, longer than the lease "
                "(%g s); training stopped",
                self.run_id,
                self.attempt,
                unrenewed,
                self.lease_seconds,
            )
            self._halt("lease expired")
        return False

    def run(self) -> None:
        while not self._done.wait(self._next_wait()):
            now = time.monotonic()
            if self._watching and now - self.progress_at > self.progress_timeout:
                reason = f"training made no progress for {now - self.progress_at:.0f} s"
                log.error(
                    "run %s attempt %s: %s; lease given up", self.run_id, self.attempt, reason
                )
                if self.on_hung is not None:
                    self.on_hung(reason)
                return
            if self.deadline is not None and now >= self.deadline:
                # Training stops at its next batch; the lease stays ours until it has.
                self.deadline = None
                self._halt("time limit")
            try:
                self.renew(self.engine, self.run_id, self.attempt, self.lease_seconds)
                self.renewed_at = now
            except LeaseLost:
                self._halt("cancelled" if self._cancelled() else "lease lost")
                return
            except Exception as exc:  # noqa: BLE001 - a database blip: the lease has slack
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if not self._check_renewals(time.monotonic()):
                    return
                log.warning("run %s: lease renewal failed (%s); retrying", self.run_id, first)

    def _cancelled(self) -> bool:
        try:
            return is_cancelled(self.engine, self.run_id)
        except Exception:  # noqa: BLE001 - either way this attempt stops
            return False

    def _next_wait(self) -> float:
        if self.deadline is None:
            return self.interval
        return max(0.0, min(self.interval, self.deadline - time.monotonic()))

    def finish(self) -> None:
        self._done.set()
        self.join()
