"""The campaign's fleet: private PostgreSQL and broker, a network namespace per worker (when
namespaces can be made), and three real `expq worker` processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.chaos.network import Cut, Namespace, Network
from benchmarks.chaos.services import Postgres, Rabbit, Redis

# A short fleet, as in tests/faults: a lost attempt is back in the queue within LEASE + REAP.
FLEET_ENV = {
    "EXPQ_HEARTBEAT_SECONDS": "0.5",
    "EXPQ_LEASE_SECONDS": "5",
    "EXPQ_REAP_SECONDS": "0.5",
    "EXPQ_RESEND_AFTER_SECONDS": "5",
    "EXPQ_MAX_ATTEMPTS": "20",
    "OMP_NUM_THREADS": "1",
}
_NODE = re.compile(r"(expq-[0-9a-f]{6}@\S+?) ready")


@dataclass
class Worker:
    index: int
    namespace: Namespace | None
    log_path: Path
    process: subprocess.Popen | None = None
    paused: int = 0  # overlapping pauses: the group is stopped while this is above 0
    killed: int = 0  # overlapping kills: restarted when this is back to 0
    cuts: list[Cut] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # Celery node names, one per start

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def node_names(self) -> list[str]:
        """Every node name this worker has had (each start draws a new one), from its log."""
        if self.log_path.exists():
            found = _NODE.findall(self.log_path.read_text(errors="replace"))
            self.nodes = list(dict.fromkeys(found))
        return self.nodes

    def pool_pids(self) -> list[int]:
        if not self.alive():
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []


@dataclass
class Cluster:
    root: Path
    broker: str
    use_network: bool
    workers_count: int = 3
    postgres: Postgres | None = field(init=False, default=None)
    broker_service: Redis | Rabbit | None = field(init=False, default=None)  # its own
    network: Network | None = field(init=False, default=None)
    workers: list[Worker] = field(init=False, default_factory=list)
    lock: threading.RLock = field(init=False, default_factory=threading.RLock)

    def start(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.use_network:
            self.network = Network(self.workers_count).create()
        self.postgres = Postgres().create()
        from service.db import get_engine

        get_engine(self.postgres.url())  # the schema, made before any worker races to make it
        if self.broker == "redis":
            self.broker_service = Redis(self.root / "redis").start()
        else:
            self.broker_service = Rabbit(self.root / "rabbitmq", bind="0.0.0.0").start()
        for index in range(self.workers_count):
            namespace = self.network.namespaces[index] if self.network else None
            worker = Worker(index, namespace, self.root / f"worker-{index}.log")
            self.workers.append(worker)
            self.start_worker(worker)
        return self

    @property
    def service_host(self) -> str:
        """Where the workers reach the services: the bridge, or loopback without namespaces."""
        return self.network.host_address if self.network else "127.0.0.1"

    def broker_url(self, host: str = "127.0.0.1") -> str:
        return self.broker_service.url(host)

    @property
    def broker_port(self) -> int:
        """The port the workers reach the broker on (what a cut of the broker names)."""
        return self.broker_service.port

    def client_env(self) -> dict[str, str]:
        """The environment of `expq` commands run by the campaign itself (root namespace)."""
        return {
            **os.environ,
            **FLEET_ENV,
            "EXPQ_HOME": str(self.root / "home"),
            "EXPQ_DATABASE_URL": self.postgres.url(),
            "EXPQ_BROKER_URL": self.broker_url(),
        }

    def start_worker(self, worker: Worker) -> None:
        env = {
            **self.client_env(),
            "EXPQ_DATABASE_URL": self.postgres.url(self.service_host),
            "EXPQ_BROKER_URL": self.broker_url(self.service_host),
        }
        prefix = worker.namespace.exec_prefix() if worker.namespace else []
        command = [sys.executable, "-m", "service", "worker", "--queues", "cpu,auto"]
        with worker.log_path.open("ab") as log:
            worker.process = subprocess.Popen(
                [*prefix, *command, "--concurrency=1", "--loglevel=INFO"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=Path(__file__).resolve().parents[2],
            )

    def signal_worker(self, worker: Worker, signum: int) -> None:
        if worker.alive():
            try:
                os.killpg(worker.process.pid, signum)
            except ProcessLookupError:
                pass

    def set_cuts(self, worker: Worker) -> None:
        if worker.namespace is not None:
            worker.namespace.apply(worker.cuts)

    def heal_all(self) -> None:
        """Undo every fault still in force: the quiet period that follows is fault-free."""
        with self.lock:
            for worker in self.workers:
                worker.cuts.clear()
                self.set_cuts(worker)
                worker.paused = 0
                self.signal_worker(worker, signal.SIGCONT)
                worker.killed = 0
                if not worker.alive():
                    self.start_worker(worker)
            broker = self.broker_service
            if broker is not None:
                broker.resume()
                if broker.process is None:
                    broker.start()
            if not self.postgres.running():
                self.postgres.start()

    def stop(self) -> None:
        """Stop everything started, each step whatever the one before it raised."""
        try:
            for worker in self.workers:
                self.signal_worker(worker, signal.SIGCONT)
                self.signal_worker(worker, signal.SIGTERM)
            for worker in self.workers:
                if worker.process is None:
                    continue
                try:
                    worker.process.wait(15)
                except subprocess.TimeoutExpired:
                    self.signal_worker(worker, signal.SIGKILL)
                    worker.process.wait()
        finally:
            try:
                self._stop_services()
            finally:
                if self.network is not None:
                    self.network.destroy()

    def _stop_services(self) -> None:
        try:
            if self.broker_service is not None:
                self.broker_service.destroy()
        finally:
            if self.postgres is not None:
                self.postgres.destroy()
