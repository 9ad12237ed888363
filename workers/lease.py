"""The heartbeats that keep leases alive while training makes progress, and tell training when
to stop: a solo run's own thread, or one thread for all the members of a fused group."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from service.lifecycle import LeaseLost, is_cancelled, renew_lease, renew_leases

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

    def halt(self, reason: str) -> None:
        """Tell training to stop at its next batch, for `reason`."""
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
            self.halt("lease expired")
        return False

    def run(self) -> None:
        while not self._done.wait(self.next_wait()):
            now = time.monotonic()
            if not self.due(now):
                return
            try:
                self.renew(self.engine, self.run_id, self.attempt, self.lease_seconds)
            except LeaseLost:
                self.lost()
                return
            except Exception as exc:  # noqa: BLE001 - a database blip: the lease has slack
                if not self.failed(exc):
                    return
            else:
                self.renewed_at = now

    def due(self, now: float) -> bool:
        """Whether the lease is to be renewed at `now`: False once training is hung (then
        `on_hung` has been called). Stops training at its time limit."""
        if self._watching and now - self.progress_at > self.progress_timeout:
            reason = f"training made no progress for {now - self.progress_at:.0f} s"
            log.error("run %s attempt %s: %s; lease given up", self.run_id, self.attempt, reason)
            if self.on_hung is not None:
                self.on_hung(reason)
            return False
        if self.deadline is not None and now >= self.deadline:
            # Training stops at its next batch; the lease stays ours until it has.
            self.deadline = None
            self.halt("time limit")
        return True

    def lost(self) -> None:
        """A renewal found the run no longer held by this attempt."""
        self.halt("cancelled" if self._cancelled() else "lease lost")

    def failed(self, exc: Exception) -> bool:
        """A renewal failed (a database blip); False once the lease has run out unrenewed."""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if not self._check_renewals(time.monotonic()):
            return False
        log.warning("run %s: lease renewal failed (%s); retrying", self.run_id, first)
        return True

    def _cancelled(self) -> bool:
        try:
            return is_cancelled(self.engine, self.run_id)
        except Exception:  # noqa: BLE001 - either way this attempt stops
            return False

    def next_wait(self) -> float:
        """Seconds until the next renewal, or until the time limit if sooner."""
        if self.deadline is None:
            return self.interval
        return max(0.0, min(self.interval, self.deadline - time.monotonic()))

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def finish(self) -> None:
        """Renew no more; returns once no renewal of this heartbeat's thread is under way."""
        self._done.set()
        if self.ident is not None:
            self.join()


class GroupHeartbeat(threading.Thread):
    """The heartbeats of a fused group's members in one thread, their renewals in one
    transaction a beat (service.lifecycle.renew_leases).

    Each member keeps its own Heartbeat, which decides as it would alone (its progress
    watchdog, its time limit, its renewals' slack, its stop event); none runs a thread of its
    own. Sixteen members renewing alone took sixteen transactions a beat, each a write lock
    that the group's epoch writes queued behind on SQLite.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float,
        lease_seconds: float,
        renew: Callable[..., set[int]] | None = None,
    ) -> None:
        super().__init__(name="heartbeat-group", daemon=True)
        self.engine, self.interval, self.lease_seconds = engine, interval, lease_seconds
        self.renew = renew or renew_leases
        self.members: list[Heartbeat] = []
        self._lock = threading.Lock()  # held through a renewal: `remove` waits for it
        self._done = threading.Event()

    def add(self, heartbeat: Heartbeat) -> None:
        with self._lock:
            self.members.append(heartbeat)

    def remove(self, heartbeat: Heartbeat) -> None:
        """Renew the member's lease no more; returns once no renewal of it is under way."""
        with self._lock:
            if heartbeat in self.members:
                self.members.remove(heartbeat)
        heartbeat.finish()

    def run(self) -> None:
        while not self._done.wait(self._next_wait()):
            with self._lock:
                self._beat([member for member in self.members if not member.done])

    def _beat(self, members: Sequence[Heartbeat]) -> None:
        """One renewal of every member's lease that is due; a member whose renewals are over
        (hung, lost, or out of slack) leaves, as a solo heartbeat's thread ends."""
        now = time.monotonic()
        beating = []
        for member in members:
            if member.due(now):
                beating.append(member)
            else:
                self.members.remove(member)
        if not beating:
            return
        leases = [(member.run_id, member.attempt) for member in beating]
        try:
            held = self.renew(self.engine, leases, self.lease_seconds)
        except Exception as exc:  # noqa: BLE001 - a database blip: each lease has its slack
            over = [member for member in beating if not member.failed(exc)]
        else:
            over = [member for member in beating if member.run_id not in held]
            for member in beating:
                if member.run_id in held:
                    member.renewed_at = now
                else:
                    member.lost()
        for member in over:
            self.members.remove(member)

    def _next_wait(self) -> float:
        with self._lock:
            return min([self.interval, *(member.next_wait() for member in self.members)])

    def finish(self) -> None:
        """Renew no lease any more; returns once no renewal is under way."""
        self._done.set()
        if self.ident is not None:
            self.join()
