"""A fused group from claim to every member's terminal state: what a worker run with
`--fuse K` (K > 1) does with a train message.

The run whose message arrived is claimed with up to K - 1 queued runs of its fusion key
(service/fusion_keys.py) in one transaction, the most urgent first; the worker does not wait
for more to be queued. The group then trains in this process through models.fusion.fit_group,
and at every epoch boundary admits newly queued compatible runs into the seats members left.

Each member keeps what a solo run has (workers/runner.py): its own heartbeat and lease, its
writes fenced by its own attempt, its own checkpoint after every epoch and its own outcome. A
member that is cancelled, pruned, diverges, stops early, hits its time limit or loses its
lease leaves; the others go on. All members share the process's lease owner, so when the
process dies the worker releases every one of them (workers/tasks.py), and each resumes from
its own checkpoint when it is claimed again. A failure of training itself (not of one
member's callback) ends every member's attempt, as it would end a solo run's.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from service.config import Settings
from service.lifecycle import (
    LeaseLost,
    MemberClaim,
    claim_compatible,
    claim_group,
    record_epoch,
)
from service.pruning import prune_reason
from service.schema import RunStatus
from workers.data_cache import cached_data
from workers.lease import Heartbeat
from workers.runner import (
    _FIT_STATUS,
    INFRASTRUCTURE_ERRORS,
    DeviceFault,
    Phases,
    Pruned,
    _auto_device,
    _exit_hung,
    _finish,
    _give_up,
    _load_user_rows,
    _lost,
    _one_line,
    _release,
    _resume_point,
    _validate,
    is_device_fault,
)

log = logging.getLogger(__name__)

# (status, error, traceback, last epoch); status None: the attempt no longer holds the run
Outcome = tuple[RunStatus | None, str | None, str | None, tuple | None]


@dataclass
class _Seat:
    """One member of the group: its claim, spec, heartbeat and the epoch kept for its finish."""

    claim: MemberClaim
    spec: Any  # models.spec.TrainSpec
    heartbeat: Heartbeat
    phases: Phases
    last: list[tuple] = field(default_factory=list)
    gone: bool = False  # known to have left the group: its last epoch reported, or it raised
    ended: bool = False  # its outcome is recorded (or its attempt given up)

    @property
    def run_id(self) -> int:
        return self.claim.run_id

    @property
    def attempt(self) -> int:
        return self.claim.attempt


class _Group:
    """The members of one group and what they share: the engine, settings and lease owner."""

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
        self.joined: list[_Seat] = []  # the seats handed to fit_group, in its results' order
        self.ended: dict[int, str | None] = {}
        self.key: str | None = None
        self.queue = ""
        self.started = time.perf_counter()

    def claim(self, run_id: int) -> list[_Seat]:
        claims, self.key, self.queue = claim_group(
            self.engine,
            run_id,
            size=self.size,
            group=self.id,
            owner=self.owner,
            worker=self.worker,
            auto_device=_auto_device(),
            lease_seconds=self.settings.lease_seconds,
        )
        return self._seat(claims)

    def admit(self) -> list:  # list[models.fusion.Member]
        """Newly queued compatible runs for the seats members left, claimed as the group's."""
        free = self.size - sum(not (seat.gone or seat.ended) for seat in self.seats)
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
                auto_device=_auto_device(),
                lease_seconds=self.settings.lease_seconds,
            )
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("group %s: no runs admitted: database error: %s", self.id, _one_line(exc))
            return []
        for claim in claims:
            log.info("group %s: run %s admitted", self.id, claim.run_id)
        return self._members(self._seat(claims))

    def _seat(self, claims: list[MemberClaim]) -> list[_Seat]:
        """Seats for valid claims; a claim whose spec is invalid fails at once."""
        seats = []
        for claim in claims:
            phases = Phases()
            spec, error = _validate(claim.spec)
            phases.mark("claimed")
            if error is not None:
                self.ended[claim.run_id] = _finish(
                    self.engine, claim.run_id, claim.attempt, RunStatus.FAILED, error, None,
                    self.settings,
                )  # fmt: skip
                continue
            seat = _Seat(claim, spec, self._heartbeat(claim, spec), phases)
            seat.heartbeat.start()
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
            on_hung=lambda reason: _give_up(engine, run_id, owner, reason, self.on_hung),
        )

    def _members(self, seats: list[_Seat]) -> list:  # list[models.fusion.Member]
        from models.fusion import Member

        members = []
        for seat in seats:
            try:
                resume = _resume_point(self.engine, seat.run_id, seat.attempt, seat.spec)
            except LeaseLost:
                seat.gone = True
                self._end(seat, (None, None, None, None))
                continue
            seat.phases.mark("set_up")
            self.joined.append(seat)
            members.append(
                Member(
                    seat.spec,
                    on_epoch=self._on_epoch(seat),
                    stop=seat.heartbeat.stop,
                    resume=resume,
                    on_batch=seat.heartbeat.tick,
                    on_end=lambda result, seat=seat: self._end(seat, _outcome(seat, result)),
                )
            )
        return members

    def _on_epoch(self, seat: _Seat) -> Callable[[Any], None]:
        """The member's per-epoch write and prune check, as a solo run's (workers/runner.py)."""
        spec = seat.spec

        def on_epoch(report: Any) -> None:  # models.training.EpochReport
            seat.heartbeat.tick()
            started = time.perf_counter()
            epoch = (report.epoch, {"train": report.train, "val": report.val})
            epoch += (report.checkpoint.to_bytes(),)
            if report.epoch == spec.epochs:
                seat.last.append(epoch)
                seat.gone = True
            else:
                try:
                    record_epoch(self.engine, seat.run_id, seat.attempt, *epoch)
                except BaseException:
                    seat.gone = True
                    raise
            seat.phases.epoch_writes += time.perf_counter() - started
            if spec.prune and report.epoch > spec.prune_warmup and report.epoch < spec.epochs:
                reason = prune_reason(self.engine, seat.run_id, report.epoch, report.val.total)
                if reason is not None:
                    seat.gone = True
                    raise Pruned(reason)

        return on_epoch

    def train(self) -> None:
        """Train the claimed seats to the end, each member finished as it leaves the group."""
        from models.data import build_data
        from models.fusion import fit_group
        from models.training import resolve_device

        first = self.seats[0].spec
        data = cached_data(first, lambda: build_data(first, *_load_user_rows(self.engine, first)))
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
            results = fit_group(
                members, data, resolve_device(first.device), checkpoints=True, admit=self.admit
            )
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - training itself failed: every member's attempt
            if is_device_fault(exc):
                device = first.device if first.device in ("cpu", "cuda") else _auto_device()
                reason = f"device fault on {device}: {_one_line(exc)}"
                raise DeviceFault(device, _auto_device(), reason) from exc
            trace = traceback.format_exc()
            for seat in self._training():
                self._end(seat, (RunStatus.FAILED, _one_line(exc), trace, _first(seat.last)))
            return
        for seat, result in zip(self.joined, results, strict=True):
            if not seat.ended:  # each ended as it left the group (on_end)
                self._end(seat, _outcome(seat, result))

    def _training(self) -> list[_Seat]:
        """The seats that reached fit_group, in the order they joined it."""
        return [seat for seat in self.seats if "set_up" in seat.phases.marks and not seat.ended]

    def _end(self, seat: _Seat, outcome: Outcome) -> None:
        status, error, trace, last = outcome
        seat.ended = True
        seat.phases.mark("trained")
        seat.heartbeat.trained()
        try:
            if status is None and error is not None:  # a database error: this attempt only
                _release(self.engine, seat.run_id, self.owner, error)
                ended = None
            elif status is None:
                ended = _lost(self.engine, seat.run_id, seat.attempt)
            else:
                ended = _finish(
                    self.engine, seat.run_id, seat.attempt, status, error, trace, self.settings,
                    last,
                )  # fmt: skip
        except INFRASTRUCTURE_ERRORS as exc:
            _release(self.engine, seat.run_id, self.owner, f"database error: {_one_line(exc)}")
            ended = None
        finally:
            seat.heartbeat.finish()
        self.ended[seat.run_id] = ended
        if ended is not None:
            log.info("%s", seat.phases.line(seat.run_id, seat.attempt, ended))

    def release_all(self, reason: str) -> None:
        for seat in self.seats:
            if not seat.ended:
                _release(self.engine, seat.run_id, self.owner, reason)

    def stop_heartbeats(self) -> None:
        for seat in self.seats:
            seat.heartbeat.finish()


def _outcome(seat: _Seat, member: Any) -> Outcome:  # member: models.fusion.MemberResult
    """A member's MemberResult as the status its run ends in, as workers/runner.py's _train."""
    error = member.error
    if isinstance(error, LeaseLost):
        return None, None, None, None
    if isinstance(error, Pruned):
        return RunStatus.PRUNED, str(error), None, None
    if isinstance(error, INFRASTRUCTURE_ERRORS):
        return None, f"database error: {_one_line(error)}", None, None
    if error is not None:
        trace = "".join(traceback.format_exception(error))
        return RunStatus.FAILED, _one_line(error), trace, _first(seat.last)
    result = member.result
    if result.status == "stopped":
        if seat.heartbeat.reason == "time limit":
            return RunStatus.FAILED, "time limit", None, None
        return None, None, None, None
    status = _FIT_STATUS[result.status]
    reason = result.reason if status != RunStatus.SUCCEEDED else None
    return status, reason, None, _first(seat.last)


def _first(items: list) -> Any:
    return items[0] if items else None


def _ids(seats: list[_Seat]) -> str:
    return ", ".join(str(seat.run_id) for seat in seats)


def execute_group(
    engine: Engine,
    run_id: int,
    settings: Settings,
    owner: str,
    worker: str,
    size: int,
    on_hung: Callable[[str], None] = _exit_hung,
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
        group.release_all(str(fault))
        raise
    except INFRASTRUCTURE_ERRORS as exc:
        log.warning("group %s: database error, attempts abandoned: %s", group.id, _one_line(exc))
        group.release_all(f"database error: {_one_line(exc)}")
    finally:
        group.stop_heartbeats()
    return group.ended
