"""The campaign's own PostgreSQL and Redis, in a temporary folder and on free ports: the
nemesis restarts, stalls and kills them, so they are never the shared ones."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _wait(ready, what: str, timeout: float = START_TIMEOUT_SECONDS) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout:g} s")
        time.sleep(0.1)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not versions:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return str(versions[-1])


@dataclass
class Postgres:
    """A private cluster listening on every address (the workers reach it over the bridge),
    in a folder of its own under the system's temporary folder: PostgreSQL's user must pass
    through every folder above its data, which a test's tmp_path (mode 0700) does not allow."""

    root: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="expq-chaos-pg-", dir="/tmp"))
    )
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    def url(self, host: str = "127.0.0.1") -> str:
        return f"postgresql+psycopg://{PG_USER}@{host}:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> subprocess.CompletedProcess:
        user = pwd.getpwnam(PG_USER) if os.geteuid() == 0 else None
        return subprocess.run(
            list(command),
            check=True,
            capture_output=True,
            text=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
        )

    def create(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._as_postgres(
            _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER, "--no-sync"
        )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\n")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '*'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nlog_min_messages = warning\n"
            )
        self.start()
        return self

    def _ctl(self, *args: str) -> None:
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), *args
        )

    def start(self) -> None:
        self._ctl("-w", "-t", str(START_TIMEOUT_SECONDS), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-w", "-m", mode, "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and _answers(self.port)

    def terminate_backends(self, client_address: str | None = None) -> int:
        """pg_terminate_backend every client session (of one address when given); how many."""
        import psycopg

        where = "backend_type = 'client backend' AND pid <> pg_backend_pid()"
        params: tuple = ()
        if client_address:
            where += " AND client_addr = %s"
            params = (client_address,)
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres", autocommit=True
        ) as connection:
            rows = connection.execute(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}", params
            ).fetchall()
        return len(rows)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Redis:
    """A private redis-server; `--protected-mode no` lets namespaced workers in."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def url(self, host: str = "127.0.0.1") -> str:
        return f"redis://{host}:{self.port}/0"

    def start(self) -> Redis:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "0.0.0.0",
                "--protected-mode", "no", "--save", "", "--appendonly", "yes",
                "--dir", str(self.root), "--logfile", str(self.root / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: _answers(self.port), f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    destroy = stop


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def amqp_answers(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=1) as connection:
            connection.ensure_connection(max_retries=1)
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


@dataclass
class Rabbit:
    """A rabbitmq-server node of its own (its own name, ports, folder and Erlang cookie),
    listening on `bind`, stopped by its process group; a restart keeps its data (durable
    queues, persistent messages). `consumer_timeout` (seconds) is the node-wide
    delivery-acknowledgement timeout, checked every second (RabbitMQ checks once a minute)."""

    root: Path
    bind: str = "127.0.0.1"
    consumer_timeout: float | None = None
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    node: str = field(default_factory=lambda: f"expq{os.urandom(4).hex()}@localhost")
    process: subprocess.Popen | None = None

    def url(self, host: str = "127.0.0.1") -> str:
        return f"amqp://guest:guest@{host}:{self.port}//"

    def _env(self) -> dict[str, str]:
        root = str(self.root)
        return {
            **os.environ,
            "HOME": root,  # the node's own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{root}/mnesia",
            "RABBITMQ_LOG_BASE": f"{root}/log",
            "RABBITMQ_CONFIG_FILE": f"{root}/rabbitmq.conf",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{root}/advanced.config",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{root}/enabled_plugins",
            "RABBITMQ_PID_FILE": f"{root}/node.pid",
        }

    def start(self) -> Rabbit:
        self.root.mkdir(parents=True, exist_ok=True)
        # guest may connect from other hosts: the namespaced workers come over the bridge
        config = [f"listeners.tcp.default = {self.bind}:{self.port}", "loopback_users = none"]
        if self.consumer_timeout is not None:
            config.append(f"consumer_timeout = {int(self.consumer_timeout * 1000)}")
        (self.root / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        (self.root / "advanced.config").write_text("[{rabbit, [{channel_tick_interval, 1000}]}].\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        with (self.root / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [RABBITMQ_SERVER], env=self._env(), stdout=log, stderr=log, start_new_session=True
            )
        try:
            local = f"amqp://guest:guest@127.0.0.1:{self.port}//"
            _wait(lambda: amqp_answers(local), f"rabbitmq-server on port {self.port}", 120)
        except RuntimeError:
            self.stop()
            raise
        return self

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        """SIGTERM: the node shuts down cleanly, keeping its durable queues and persistent
        messages on disk."""
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    destroy = stop


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from `source` to `sink` until either end closes, then shut both down."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
