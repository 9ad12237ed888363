"""The heartbeat that keeps a run's lease alive and tells training when to stop."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from service.lifecycle import LeaseLost, is_cancelled, renew_lease

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renews the lease every `interval` seconds until stopped.

    Sets `stop` (the event training checks at each batch boundary) with `reason` when the run
    was cancelled, the lease was lost to another attempt, or the time limit passed.
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
    ) -> None:
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.engine = engine
        self.run_id = run_id
        self.attempt = attempt
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.deadline = time.monotonic() + time_limit if time_limit else None
        self.stop = threading.Event()
        self.reason: str | None = None
        self._done = threading.Event()

    def _halt(self, reason: str) -> None:
        self.reason = reason
        self.stop.set()

    def run(self) -> None:
        while not self._done.wait(self._next_wait()):
            if self.deadline is not None and time.monotonic() >= self.deadline:
                # Training stops at its next batch; the lease stays ours until it has.
                self.deadline = None
                self._halt("time limit")
            try:
                renew_lease(self.engine, self.run_id, self.attempt, self.lease_seconds)
            except LeaseLost:
                self._halt("cancelled" if self._cancelled() else "lease lost")
                return
            except Exception as exc:  # noqa: BLE001 - a database blip: the lease has slack
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
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
