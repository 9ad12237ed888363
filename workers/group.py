"""A fused group from claim to every member's terminal state: what a worker run with
`--fuse K` (K > 1, the default 8) does with the train message of an MLP run on the CPU (any
other run takes the solo path, workers/runner.py: `trains_in_group`).

The run whose message arrived is claimed with up to K - 1 queued runs of its fusion key
(service/fusion_keys.py) in one transaction, the most urgent first; the worker does not wait
for more to be queued. The group then trains in this process through models.fusion.fit_group,
and at every epoch boundary admits newly queued compatible runs into the seats members left.

Each member keeps what a solo run has (workers/runner.py): its own lease, its writes fenced by
its own attempt, its own checkpoint after every epoch and its own outcome. A member that is
cancelled, pruned, diverges, stops early, hits its time limit or loses its lease leaves; the
others go on. All members share the process's lease owner, so when the process dies the
worker releases every one of them (workers/tasks.py), and each resumes from its own
checkpoint when it is claimed again. A failure of training itself (not of one member's
callback) ends every member's attempt, as it would end a solo run's.

The group's database work is batched, since a group of tiny runs is bound by it: at each epoch
boundary one transaction writes every member's epoch and the outcome of every member that
left (service.lifecycle.record_group_epoch), each member fenced by its own attempt, and one
thread renews every member's lease in one transaction a beat (workers.lease.GroupHeartbeat).
A member whose fence fails writes nothing and leaves at its next batch; the others' rows land.
Rejected: a transaction per member and epoch (and a heartbeat thread per member), as a solo
run writes: a group of 16 two-epoch binary MLPs on SQLite spent about 60% of its wall time in
those 33 transactions, which also made its writes the statements of 16 runs (measured
2026-12-02, 2-core machine: 2.1 s a group, then 0.1-0.45 s).
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from service.checkpoints import load_checkpoints
from service.config import Settings
from service.db import connection_scope
from service.epoch_writes import EpochWrite
from service.lifecycle import (
    Ending,
    LeaseLost,
    MemberClaim,
    claim_compatible,
    claim_group,
    finished_as,
    record_group_epoch,
    release_owner,
)
from service.pruning import prune_reason
from service.schema import RunStatus
from service.tables import runs
from workers.data_cache import cached_data
from workers.lease import GroupHeartbeat, Heartbeat
from workers.outcomes import (
    FIT_STATUS,
    INFRASTRUCTURE_ERRORS,
    DeviceFault,
    device_fault,
    exit_hung,
    finish_attempt,
    give_up,
    is_device_fault,
    lost,
    one_line,
    release,
)
from workers.preparation import adopt, auto_device, load_user_rows, validate
from workers.runner import Phases

log = logging.getLogger(__name__)

# (status, error, traceback); status None: the attempt no longer holds the run, or (with an
# error) could not record anything and gives its lease back
Outcome = tuple[RunStatus | None, str | None, str | None]


@dataclass
class _Seat:
    """One member of the group: its claim, spec and heartbeat, and what waits for the next
    write: its last epoch reported, and its outcome once it left the group."""

    claim: MemberClaim
    spec: Any  # models.spec.TrainSpec
    heartbeat: Heartbeat
    phases: Phases
    epoch: EpochWrite | None = None
    outcome: Outcome | None = None
    failure: str | None = None  # why it was told to stop and give its lease back
    ended: bool = False  # its outcome is recorded (or its attempt given up)

    @property
    def run_id(self) -> int:
        return self.claim.run_id

    @property
    def attempt(self) -> int:
        return self.claim.attempt


class _Group:
    """The members of one group and what they share: the engine, settings, lease owner and
    heartbeat."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        owner: str,
        worker: str,
        size: int,
        on_hung: Callable[[str], None],
    ) -> None:
        self.engine, self.settings, self.owner, self.worker = engine, settings, owner, worker
        self.size, self.on_hung = size, on_hung
        self.id = uuid.uuid4().hex[:12]
        self.seats: list[_Seat] = []
        self.ended: dict[int, str | None] = {}
        self.key: str | None = None
        self.queue = ""
        self.started = time.perf_counter()
        self.beat = GroupHeartbeat(
            engine, interval=settings.heartbeat_seconds, lease_seconds=settings.lease_seconds
        )

    def claim(self, run_id: int) -> list[_Seat]:
        claims, self.key, self.queue = claim_group(
            self.engine,
            run_id,
            size=self.size,
            group=self.id,
            owner=self.owner,
            worker=self.worker,
            auto_device=auto_device(),
            lease_seconds=self.settings.lease_seconds,
        )
        seats = self._seat(claims)
        self.beat.start()
        return seats

    def admit(self) -> list:  # list[models.fusion.Member]
        """At an epoch boundary: the epoch's writes, then newly queued compatible runs for the
        seats members left, claimed as the group's."""
        self.write()
        free = self.size - sum(seat.outcome is None and not seat.ended for seat in self.seats)
        if self.key is None or free < 1:
            return []
        try:
            claims = claim_compatible(
                self.engine,
                self.key,
                self.queue,
                free,
                group=self.id,
                owner=self.owner,
                worker=self.worker,
                auto_device=auto_device(),
                lease_seconds=self.settings.lease_seconds,
            )
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("group %s: no runs admitted: database error: %s", self.id, one_line(exc))
            return []
        for claim in claims:
            log.info("group %s: run %s admitted", self.id, claim.run_id)
        return self._members(self._seat(claims))

    def _seat(self, claims: list[MemberClaim]) -> list[_Seat]:
        """Seats for valid claims; a claim whose spec is invalid fails at once."""
        seats = []
        for claim in claims:
            phases = Phases()
            spec, error = validate(claim.spec)
            phases.mark("claimed")
            if error is not None:
                self.ended[claim.run_id] = finish_attempt(
                    self.engine, claim.run_id, claim.attempt, RunStatus.FAILED, error, None,
                    self.settings,
                )  # fmt: skip
                continue
            seat = _Seat(claim, spec, self._heartbeat(claim, spec), phases)
            self.beat.add(seat.heartbeat)
            seats.append(seat)
        self.seats += seats
        return seats

    def _heartbeat(self, claim: MemberClaim, spec: Any) -> Heartbeat:
        engine, owner, run_id = self.engine, self.owner, claim.run_id
        return Heartbeat(
            engine,
            run_id,
            claim.attempt,
            interval=self.settings.heartbeat_seconds,
            lease_seconds=self.settings.lease_seconds,
            time_limit=spec.time_limit,
            progress_timeout=self.settings.progress_timeout_seconds,
            on_hung=lambda reason: give_up(engine, run_id, owner, reason, self.on_hung),
        )

    def _members(self, seats: list[_Seat]) -> list:  # list[models.fusion.Member]
        from models.fusion import Member

        members = []
        stored = load_checkpoints(self.engine, [seat.run_id for seat in seats])
        for seat in seats:
            try:
                resume = adopt(
                    self.engine, seat.run_id, seat.attempt, seat.spec, stored.get(seat.run_id)
                )
            except LeaseLost:
                self._record(seat, lost(self.engine, seat.run_id, seat.attempt))
                continue
            seat.phases.mark("set_up")
            members.append(
                Member(
                    seat.spec,
                    on_epoch=lambda report, seat=seat: self._reported(seat, report),
                    stop=seat.heartbeat.stop,
                    resume=resume,
                    on_batch=seat.heartbeat.tick,
                    on_end=lambda result, seat=seat: self._left(seat, _outcome(seat, result)),
                )
            )
        return members

    def _reported(self, seat: _Seat, report: Any) -> None:  # models.training.EpochReport
        """The member's epoch, kept for the group's next write."""
        seat.heartbeat.tick()
        splits = {"train": report.train, "val": report.val}
        checkpoint = report.checkpoint.to_bytes()
        seat.epoch = EpochWrite(seat.run_id, seat.attempt, report.epoch, splits, checkpoint)

    def _left(self, seat: _Seat, outcome: Outcome) -> None:
        """The member left the group: its outcome waits for the group's next write."""
        if seat.ended:  # pruned: recorded when the pruner decided
            return
        seat.phases.mark("trained")
        seat.heartbeat.trained()
        seat.outcome = outcome

    def write(self) -> None:
        """Every member's epoch reported since the last write, and the outcome of every member
        that left since, in one transaction; then the pruner's word on the epochs written. A
        member whose write was fenced out leaves the group at its next batch."""
        epochs = [seat for seat in self.seats if seat.epoch is not None and not seat.ended]
        leaving = [seat for seat in self.seats if seat.outcome is not None and not seat.ended]
        # A member the pruner may stop at this epoch ends after its word, as it would alone.
        waiting = [seat for seat in leaving if seat.outcome[0] is not None and _prunable(seat)]
        ending = [seat for seat in leaving if seat.outcome[0] is not None and seat not in waiting]
        if not epochs and not ending:
            self._settle(leaving, set())
            return
        started = time.perf_counter()
        endings = [Ending(seat.run_id, seat.attempt, *seat.outcome) for seat in ending]
        try:
            held = record_group_epoch(self.engine, [seat.epoch for seat in epochs], endings)
        except INFRASTRUCTURE_ERRORS as exc:
            self._write_failed(epochs, ending, exc)
            held = set()
        prune = []
        for seat in epochs:
            seat.phases.epoch_writes += time.perf_counter() - started
            if seat.run_id not in held:
                if seat.outcome is None and seat.failure is None:
                    seat.heartbeat.halt("lease lost")  # reclaimed or cancelled: write nothing
            elif _prunable(seat) and (seat.outcome is None or seat in waiting):
                prune.append((seat, seat.epoch))
            seat.epoch = None
        self._settle([seat for seat in leaving if all(seat is not p for p, _ in prune)], held)
        for seat, epoch in prune:
            self._prune(seat, epoch)

    def _write_failed(self, epochs: list[_Seat], ending: list[_Seat], exc: Exception) -> None:
        """The database failed the group's write: members still training stop and give their
        leases back; each outcome is recorded alone, as a solo run's, through the blip."""
        failure = f"database error: {one_line(exc)}"
        log.warning("group %s: %s; members' attempts abandoned", self.id, failure)
        for seat in epochs:
            if seat.outcome is None:
                seat.failure = failure
                seat.heartbeat.halt(failure)
            elif seat not in ending:  # left at this epoch, its end waiting for the pruner's word
                seat.outcome = (None, failure, None)
        for seat in ending:
            status, error, trace = seat.outcome
            last = seat.epoch
            try:
                ended = finished_as(self.engine, seat.run_id, seat.attempt)
                if ended != status:  # not already recorded by the write whose reply was lost
                    ended = finish_attempt(
                        self.engine, seat.run_id, seat.attempt, status, error, trace,
                        self.settings, last and (last.epoch, last.splits, last.checkpoint),
                    )  # fmt: skip
            except INFRASTRUCTURE_ERRORS as again:
                seat.outcome = (None, f"database error: {one_line(again)}", None)
                continue
            self._record(seat, ended)

    def _settle(self, leaving: list[_Seat], held: set[int]) -> None:
        """Record how each member that left ended: its write landed (held), it was no longer
        ours, or it gives its lease back."""
        for seat in leaving:
            if seat.ended:
                continue
            status, error, _ = seat.outcome
            if status is not None and seat.run_id in held:
                self._record(seat, status)
            elif status is None and error is not None:  # a database error: this attempt only
                self.beat.remove(seat.heartbeat)
                release(self.engine, seat.run_id, self.owner, error)
                self._record(seat, None)
            else:
                self._record(seat, self._lost(seat))

    def _lost(self, seat: _Seat) -> str | None:
        try:
            return lost(self.engine, seat.run_id, seat.attempt)
        except INFRASTRUCTURE_ERRORS:
            return None

    def _prune(self, seat: _Seat, epoch: EpochWrite) -> None:
        """The pruner's word on a member's written epoch, as a solo run's (workers/runner.py):
        a pruned member ends now, and leaves the group at its next batch if still in it; one
        that left at this epoch for another reason ends as it left."""
        val = epoch.splits["val"].total
        reason = prune_reason(self.engine, seat.run_id, epoch.epoch, val)
        outcome = seat.outcome
        if reason is not None:
            seat.heartbeat.halt("pruned")
            if outcome is None:
                seat.phases.mark("trained")
                seat.heartbeat.trained()
            outcome = (RunStatus.PRUNED, reason, None)
        elif outcome is None:
            return
        ended = finish_attempt(
            self.engine, seat.run_id, seat.attempt, *outcome, self.settings
        )  # fmt: skip
        self._record(seat, ended)

    def _record(self, seat: _Seat, ended: str | None) -> None:
        seat.ended = True
        self.beat.remove(seat.heartbeat)
        self.ended[seat.run_id] = ended
        if ended is not None:
            log.info("%s", seat.phases.line(seat.run_id, seat.attempt, ended))

    def train(self) -> None:
        """Train the claimed seats to the end, each member's end recorded with the group's
        write after it left."""
        from models.data import build_data
        from models.fusion import fit_group
        from models.training import resolve_device

        first = self.seats[0].spec
        data = cached_data(first, lambda: build_data(first, *load_user_rows(self.engine, first)))
        members = self._members(list(self.seats))
        if not members:
            return
        setup = time.perf_counter() - self.started
        # One line a group, which benchmarks/fusion.py reads: the claim and setup it shares.
        log.info(
            "group %s: %d runs, claim and setup %.1f ms: %s",
            self.id, len(members), setup * 1000, _ids(self._training()),
        )  # fmt: skip
        try:
            fit_group(
                members, data, resolve_device(first.device), checkpoints=True, admit=self.admit
            )
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - training itself failed: every member's attempt
            if is_device_fault(exc):
                raise device_fault(first.device, auto_device(), exc) from exc
            trace = traceback.format_exc()
            for seat in self._training():
                self._left(seat, (RunStatus.FAILED, one_line(exc), trace))
        self.write()

    def _training(self) -> list[_Seat]:
        """The seats that reached fit_group and have not left it, in the order they joined."""
        return [
            seat
            for seat in self.seats
            if "set_up" in seat.phases.marks and seat.outcome is None and not seat.ended
        ]

    def release_all(self, reason: str) -> None:
        """Give back every lease the group still holds, in one transaction."""
        self.beat.finish()
        try:
            release_owner(self.engine, self.owner, reason)
        except INFRASTRUCTURE_ERRORS:
            pass  # still unreachable: the leases run out by themselves

    def stop_heartbeats(self) -> None:
        self.beat.finish()


def _outcome(seat: _Seat, member: Any) -> Outcome:  # member: models.fusion.MemberResult
    """A member's MemberResult as the status its run ends in, as workers/runner.py's _train."""
    error = member.error
    if error is not None:
        trace = "".join(traceback.format_exception(error))
        return RunStatus.FAILED, one_line(error), trace
    result = member.result
    if result.status == "stopped":
        if seat.failure is not None:
            return None, seat.failure, None
        if seat.heartbeat.reason == "time limit":
            return RunStatus.FAILED, "time limit", None
        return None, None, None
    status = FIT_STATUS[result.status]
    return status, result.reason if status != RunStatus.SUCCEEDED else None, None


def _prunable(seat: _Seat) -> bool:
    """Whether the pruner may stop the member at the epoch it reported last, as it would alone:
    past its warm-up, before its last epoch."""
    spec, epoch = seat.spec, seat.epoch
    return bool(spec.prune) and epoch is not None and spec.prune_warmup < epoch.epoch < spec.epochs


def _ids(seats: list[_Seat]) -> str:
    return ", ".join(str(seat.run_id) for seat in seats)


def trains_in_group(engine: Engine, run_id: int) -> bool:
    """Whether queued run `run_id` would train stacked here (an MLP on the CPU), the only kind
    a fused group speeds up; any other run takes the solo path (workers/runner.py), as it
    does under --fuse 1. False too when it is not queued or its spec is malformed: the solo
    path drops or fails it."""
    from models.spec import trains_stacked

    with connection_scope(engine, read_only=True) as connection:
        spec = connection.scalar(
            select(runs.c.spec).where(runs.c.run_id == run_id, runs.c.status == RunStatus.QUEUED)
        )
    if not isinstance(spec, dict) or spec.get("model") != "mlp":
        return False
    device = spec.get("device")
    return trains_stacked("mlp", auto_device() if device == "auto" else str(device))


def execute_group(
    engine: Engine,
    run_id: int,
    settings: Settings,
    owner: str,
    worker: str,
    size: int,
    on_hung: Callable[[str], None] = exit_hung,
) -> dict[int, str | None]:
    """Claim run `run_id` with up to `size` - 1 compatible queued runs, train them as one
    fused group, and finish each: {run id: the status it ended in, or None when this attempt
    no longer held it}; {} when run_id was not queued. Raises DeviceFault, every member's
    attempt ended, on a fault of the device; a database error ends every member's attempt."""
    group = _Group(engine, settings, owner, worker, size, on_hung)
    try:
        group.claim(run_id)
        if not group.ended and not group.seats:
            log.info("run %s: not queued; message dropped", run_id)
            return {}
        if group.seats:
            group.train()
    except DeviceFault as fault:
        log.error("group %s: %s; every member's attempt ended", group.id, fault)
        try:
            group.write()  # the outcomes of members that left before the fault
        except INFRASTRUCTURE_ERRORS:
            pass  # their leases are given back below
        group.release_all(str(fault))
        raise
    except INFRASTRUCTURE_ERRORS as exc:
        log.warning("group %s: database error, attempts abandoned: %s", group.id, one_line(exc))
        group.release_all(f"database error: {one_line(exc)}")
    finally:
        group.stop_heartbeats()
    return group.ended
