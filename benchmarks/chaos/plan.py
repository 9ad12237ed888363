"""The seeded workload and fault schedule: drawn before anything starts, saved as JSON, and
replayed from that file exactly."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Faults on one worker: its processes or its network.
PROCESS_FAULTS = ("kill_training", "kill_worker", "pause_short", "pause_long")
NETWORK_FAULTS = (
    "partition_db",
    "partition_broker",
    "isolate",
    "drop_replies_db",
    "reset_db",
    "reset_broker",
    "flaky",
)
# Faults on the shared services.
SERVICE_FAULTS = ("broker_restart", "broker_stall", "pg_kill_backends", "pg_restart")
FAULTS = PROCESS_FAULTS + NETWORK_FAULTS + SERVICE_FAULTS
# Workload faults, drawn per run: a cancel some time after the submit, a submit killed mid-call.
RUN_FAULTS = ("cancel", "kill_submit")
WORKERS = 3
LEASE_SECONDS = 5.0  # the campaign fleet's lease; pause_long outlasts it, pause_short does not

# Tiny specs with T = 1 (a label per sequence): 1-3 s a run on a loaded 2-core machine.
_TASKS = (
    {"task": "binary", "model": "mlp"},
    {"task": "sentiment", "model": "rnn"},
    {"task": "binary", "model": "rnn", "cell": "gru"},
)


@dataclass(frozen=True)
class RunPlan:
    index: int
    at: float  # seconds after the start when `expq submit` is called
    options: dict[str, str | int | float]  # submit options, by option name
    timesteps: int = 1  # T: loss rows per epoch and split are T + 1
    cancel_after: float | None = None  # seconds after its submit returned
    kill_submit_after: float | None = None  # SIGKILL `expq submit` this long after it started

    @property
    def key(self) -> str:
        return f"chaos-{self.index}"


@dataclass(frozen=True)
class FaultPlan:
    kind: str
    at: float
    duration: float  # how long it lasts (0 for an instant fault such as a kill)
    worker: int | None = None  # the target of a per-worker fault
    percent: int = 0  # the share of packets a flaky link drops


@dataclass(frozen=True)
class Plan:
    seed: int
    broker: str
    network: bool  # network faults drawn (namespaces could be made)
    window: float  # seconds over which runs are submitted and faults injected
    runs: list[RunPlan] = field(default_factory=list)
    faults: list[FaultPlan] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Plan:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            seed=doc["seed"],
            broker=doc["broker"],
            network=doc["network"],
            window=doc["window"],
            runs=[RunPlan(**run) for run in doc["runs"]],
            faults=[FaultPlan(**fault) for fault in doc["faults"]],
        )


def fault_kinds(network: bool) -> tuple[str, ...]:
    """The kinds a campaign can inject: no network faults without namespaces."""
    return PROCESS_FAULTS + (NETWORK_FAULTS if network else ()) + SERVICE_FAULTS


def _spec(rng: random.Random) -> dict[str, str | int | float]:
    return {
        **rng.choice(_TASKS),
        "hidden": rng.choice((8, 16)),
        "epochs": rng.randint(3, 6),
        "samples": rng.choice((300, 600, 1000)),
        "batch-size": 32,
        "dropout": rng.choice((0.0, 0.1)),
        "seed": rng.randint(0, 10**6),
    }


def _duration(rng: random.Random, kind: str) -> float:
    if kind in ("kill_training", "pg_kill_backends"):
        return 0.0
    if kind == "pause_short":
        return round(rng.uniform(0.5, LEASE_SECONDS * 0.6), 2)
    if kind == "pause_long":
        return round(rng.uniform(LEASE_SECONDS + 1, LEASE_SECONDS + 6), 2)
    return round(rng.uniform(1.0, 10.0), 2)


def draw(seed: int, runs: int, broker: str = "redis", network: bool = True) -> Plan:
    """`runs` runs submitted over a window of a second each (a submit costs about a CPU second),
    and about one fault for every two runs (every kind at least once when there are enough),
    at uniform times: some overlap."""
    rng = random.Random(seed)
    window = round(max(15.0, runs * 1.0), 1)
    planned = []
    for index in range(runs):
        roll = rng.random()
        planned.append(
            RunPlan(
                index=index,
                at=round(rng.uniform(0, window), 2),
                options=_spec(rng),
                cancel_after=round(rng.uniform(0, 3), 2) if roll < 0.08 else None,
                kill_submit_after=round(rng.uniform(0.05, 1.5), 2) if 0.08 <= roll < 0.14 else None,
            )
        )
    kinds = list(fault_kinds(network))
    rng.shuffle(kinds)
    count = max(len(kinds) if runs >= len(kinds) else runs // 2 + 1, runs // 2)
    faults = []
    for number in range(count):
        kind = kinds[number] if number < len(kinds) else rng.choice(kinds)
        faults.append(
            FaultPlan(
                kind=kind,
                at=round(rng.uniform(1.0, window), 2),
                duration=_duration(rng, kind),
                worker=rng.randrange(WORKERS) if kind not in SERVICE_FAULTS else None,
                percent=rng.choice((20, 40, 60)) if kind == "flaky" else 0,
            )
        )
    planned.sort(key=lambda run: run.at)
    faults.sort(key=lambda fault: fault.at)
    return Plan(seed, broker, network, window, planned, faults)
