"""Secrets and untrusted input: a broker behind TLS and a password, a database URL with a
password, and neither password anywhere a user, a log or another service can read it."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from faults.fleet import FAULT_ENV, Fleet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from support import PrivateRedis, assert_settled, expq_env, read_log, run_cli

pytestmark = pytest.mark.integration

BROKER_PASSWORD = "broker-pw-9f3k"
DATABASE_PASSWORD = "db-pw-2m8q"
ROOT = Path(__file__).resolve().parents[2]


def _certificate(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


def _redis_contents(redis: PrivateRedis) -> str:
    client, parts = redis.client(), []
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key))
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
        elif kind == b"hash":
            parts += [*client.hkeys(key), *client.hvals(key)]
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"zset":
            parts += client.zrange(key, 0, -1)
        parts.append(key)
    return b"\n".join(parts).decode(errors="replace")


def _database_contents(engine) -> str:  # noqa: ANN001
    from sqlalchemy import inspect

    tables = inspect(engine).get_table_names()
    assert {"runs", "losses", "experiments"} <= set(tables)
    with engine.connect() as connection:
        return "\n".join(
            json.dumps(row._asdict(), default=str)
            for table in tables
            for row in connection.execute(text(f"SELECT * FROM {table}"))
        )


def test_passwords_and_tls_never_leak(postgresql_url: str, tmp_path: Path, worker_factory) -> None:  # noqa: ANN001
    cert, key = _certificate(tmp_path)
    redis = PrivateRedis(tmp_path / "redis", password=BROKER_PASSWORD, tls=(cert, key)).start()
    try:
        # The server trusts local clients: the database password is carried, never checked.
        database_url = make_url(postgresql_url).set(password=DATABASE_PASSWORD)
        database_url = database_url.render_as_string(hide_password=False)
        env = expq_env(tmp_path, database_url, redis.url, **FAULT_ENV)
        fleet = Fleet(database_url, redis.url, env, worker_factory)
        worker = fleet.worker()
        outputs = []
        submitted = run_cli(
            env, "submit", "--task", "binary", "--model", "mlp", "--epochs", "2",
            "--samples", "200", "--device", "cpu", "--json",
        )  # fmt: skip
        outputs.append(submitted)
        assert submitted.returncode == 0, submitted.stderr
        run_id = json.loads(submitted.stdout)["id"]
        fleet.wait_status(run_id, "succeeded")
        for args in (
            ["runs", "show", str(run_id), "--format", "json"],
            ["runs", "list", "--format", "json"],
            ["workers", "--format", "json"],
            ["workers"],
        ):
            outputs.append(run_cli(env, *args))
            assert outputs[-1].returncode == 0, outputs[-1].stderr
        listed = json.loads(outputs[-2].stdout)
        assert [w["queues"] for w in listed] == [["auto", "cpu"]]

        # TLS is verified: without the CA that signed the server's certificate, no connection.
        unverified = {**env, "EXPQ_BROKER_URL": redis.url.split("?")[0]}
        refused = run_cli(unverified, "submit", "--task", "binary", "--model", "mlp")
        outputs.append(refused)
        assert refused.returncode == 1
        assert refused.stderr.startswith("Error: broker unreachable at rediss://:***@127.0.0.1")
        assert "certificate verify failed" in refused.stderr

        assert_settled(fleet.engine, [run_id])
        places = {
            "worker log": read_log(worker.log_path),
            "CLI output": "\n".join(o.stdout + o.stderr for o in outputs),
            "database": _database_contents(fleet.engine),
            "broker": _redis_contents(redis),
        }
        for where, content in places.items():
            assert content, where
            for password in (BROKER_PASSWORD, DATABASE_PASSWORD):
                assert password not in content, f"{password} in the {where}"
    finally:
        redis.stop()


def _torch_loads(path: Path) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "load" and getattr(node.func.value, "id", None) == "torch":
                calls.append(node)
    return calls


def test_every_torch_load_refuses_pickled_code() -> None:
    """A checkpoint is data: torch.load must never unpickle arbitrary objects."""
    for package in ("service", "workers", "models", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            for call in _torch_loads(path):
                flags = {k.arg: k.value for k in call.keywords}
                value = flags.get("weights_only")
                assert isinstance(value, ast.Constant) and value.value is True, (
                    f"{path.relative_to(ROOT)}:{call.lineno}: torch.load without weights_only=True"
                )
