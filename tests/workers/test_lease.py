"""The heartbeat's decisions, with a renewal that the test controls: when it gives a run up."""

from __future__ import annotations

import threading
import time

from sqlalchemy.exc import OperationalError
from support import poll

from workers.lease import GroupHeartbeat, Heartbeat


def _heartbeat(renew, **options) -> Heartbeat:  # noqa: ANN001, ANN003
    fields = {"interval": 0.05, "lease_seconds": 0.5, "time_limit": None, **options}
    return Heartbeat(None, 7, 1, renew=renew, **fields)  # type: ignore[arg-type]


def test_a_run_that_makes_progress_keeps_its_lease() -> None:
    renewals, hung = [], []
    heartbeat = _heartbeat(lambda *a: renewals.append(a), progress_timeout=0.3, on_hung=hung.append)
    heartbeat.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            heartbeat.tick()
            time.sleep(0.02)  # a batch
        assert not hung and not heartbeat.stop.is_set()
        assert len(renewals) > 10 and renewals[0] == (None, 7, 1, 0.5)
    finally:
        heartbeat.finish()


def test_a_run_without_progress_is_given_up_within_the_timeout() -> None:
    renewals, hung = [], []
    heartbeat = _heartbeat(lambda *a: renewals.append(a), progress_timeout=0.3, on_hung=hung.append)
    started = time.monotonic()
    heartbeat.start()
    poll(lambda: hung, 5, "the watchdog")
    waited = time.monotonic() - started
    assert 0.3 <= waited < 0.3 + 0.05 + 0.5, waited
    assert hung[0].startswith("training made no progress for")
    heartbeat.join(5)
    assert not heartbeat.is_alive()  # and renews no more
    count = len(renewals)
    heartbeat.finish()
    assert len(renewals) == count


def test_a_finished_training_is_not_watched() -> None:
    hung = []
    heartbeat = _heartbeat(lambda *a: None, progress_timeout=0.1, on_hung=hung.append)
    heartbeat.trained()
    heartbeat.start()
    try:
        poll(lambda: time.monotonic() - heartbeat.progress_at > 0.5, 5, "half a second")
        assert not hung
    finally:
        heartbeat.finish()


def test_renewals_failing_longer_than_the_lease_stop_training() -> None:
    def down(*_args) -> None:
        raise OperationalError("UPDATE runs", {}, Exception("no route to host"))

    heartbeat = _heartbeat(down)
    started = time.monotonic()
    heartbeat.start()
    try:
        assert heartbeat.stop.wait(5)
        assert 0.5 <= time.monotonic() - started < 0.5 + 0.05 + 0.5
        assert heartbeat.reason == "lease expired"
    finally:
        heartbeat.finish()


def test_a_renewal_that_hangs_cannot_keep_training_going() -> None:
    """A renewal blocked on a silent network never returns to check: training's next batch
    after the lease ran out sees it and stops."""
    release = threading.Event()
    heartbeat = _heartbeat(lambda *_args: release.wait())
    heartbeat.start()
    try:
        heartbeat.tick()
        assert not heartbeat.stop.is_set()
        poll(lambda: time.monotonic() - heartbeat.renewed_at > 0.5, 5, "the lease to run out")
        heartbeat.tick()
        assert heartbeat.stop.is_set() and heartbeat.reason == "lease expired"
    finally:
        release.set()
        heartbeat.finish()


def _member(run_id: int, **options) -> Heartbeat:  # noqa: ANN003
    fields = {"interval": 0.05, "lease_seconds": 0.5, "time_limit": None, **options}
    return Heartbeat(None, run_id, 1, **fields)  # type: ignore[arg-type]


def test_a_group_renews_its_members_leases_in_one_call_and_a_lost_one_stops() -> None:
    calls: list[list[tuple[int, int]]] = []

    def renew(_engine, leases, lease_seconds: float) -> set[int]:  # noqa: ANN001
        calls.append(sorted(leases))
        return {7, 9}  # run 8's attempt no longer holds it

    group = GroupHeartbeat(None, interval=0.05, lease_seconds=0.5, renew=renew)  # type: ignore[arg-type]
    kept, lost, limited = _member(7), _member(8), _member(9, time_limit=0.2)
    for member in (kept, lost, limited):
        group.add(member)
    group.start()
    try:
        poll(lambda: lost.stop.is_set() and limited.stop.is_set(), 5, "both to stop")
        assert calls[0] == [(7, 1), (8, 1), (9, 1)]
        assert (lost.reason, limited.reason) == ("lease lost", "time limit")
        count = len(calls)
        poll(lambda: len(calls) > count + 2, 5, "more beats")
        # the lost member no more; the one past its time limit until its training has stopped
        assert all(call == [(7, 1), (9, 1)] for call in calls[count + 1 :])
        assert not kept.stop.is_set() and time.monotonic() - kept.renewed_at < 0.5
    finally:
        group.finish()
