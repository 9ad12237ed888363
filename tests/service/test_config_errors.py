"""A configuration expq cannot use is one line on stderr with its exit code, and creates nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from support import expq_env, run_cli

SUBMIT = ("submit", "--task", "binary", "--model", "mlp")


def _one_line(result, code: int, message: str) -> None:  # noqa: ANN001 - CompletedProcess
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://bar", "EXPQ_DATABASE_URL names the database 'foo'"),
        ("notaurl", "EXPQ_DATABASE_URL is not a database URL"),
        ("mysql://user@db.example/expq", "names the database 'mysql'"),
        ("postgresql+asyncpg://user@127.0.0.1/expq", "which is not installed"),
    ],
)
@pytest.mark.parametrize("command", [("runs", "list"), SUBMIT, ("db", "upgrade")])
def test_a_database_url_expq_cannot_use(
    tmp_path: Path, embedded_broker_url: str, url: str, message: str, command: tuple[str, ...]
) -> None:
    _one_line(run_cli(expq_env(tmp_path, url, embedded_broker_url), *command), 2, message)


@pytest.mark.parametrize("command", [("runs", "list"), ("runs", "show", "1"), ("export",)])
def test_a_read_command_never_creates_a_database(
    tmp_path: Path, embedded_broker_url: str, command: tuple[str, ...]
) -> None:
    typo = tmp_path / "tpyo" / "expq.db"
    result = run_cli(expq_env(tmp_path, f"sqlite:///{typo}", embedded_broker_url), *command)
    _one_line(result, 1, f"no expq database at {typo}")
    assert not typo.parent.exists()


@pytest.mark.parametrize("command", [("runs", "list"), SUBMIT, ("demo", "--epochs", "1")])
def test_an_expq_home_that_cannot_be_created(
    tmp_path: Path, embedded_broker_url: str, command: tuple[str, ...]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = expq_env(tmp_path, "", embedded_broker_url, EXPQ_HOME=str(blocker / "home"))
    del env["EXPQ_DATABASE_URL"]
    if command[0] == "demo":
        del env["EXPQ_BROKER_URL"]
    result = run_cli(env, *command)
    assert result.returncode == 1, result.stderr
    assert str(blocker / "home") in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


@pytest.mark.parametrize("broker", ["foo://bar", "localhost:6379", "memory://"])
@pytest.mark.parametrize("command", [("worker",), SUBMIT, ("workers",)])
def test_a_broker_url_of_an_unknown_scheme(
    tmp_path: Path, sqlite_url: str, broker: str, command: tuple[str, ...]
) -> None:
    result = run_cli(expq_env(tmp_path, sqlite_url, broker), *command, timeout=30)
    _one_line(result, 2, "EXPQ_BROKER_URL has")
    assert "redis://" in result.stderr


def test_a_setting_that_is_not_a_number(tmp_path: Path, sqlite_url: str) -> None:
    env = expq_env(tmp_path, sqlite_url, "redis://127.0.0.1:1/0", EXPQ_LEASE_SECONDS="soon")
    _one_line(run_cli(env, *SUBMIT), 2, "EXPQ_LEASE_SECONDS must be a number of seconds")


def test_a_database_newer_than_expq(tmp_path: Path, embedded_broker_url: str) -> None:
    database = tmp_path / "expq.db"
    env = expq_env(tmp_path, f"sqlite:///{database}", embedded_broker_url)
    assert run_cli(env, *SUBMIT).returncode == 0
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    for command in (("runs", "list"), ("db", "upgrade"), SUBMIT):
        result = run_cli(env, *command)
        _one_line(result, 1, "revision 9999_future, newer than this expq knows")
        assert "expq db upgrade" not in result.stderr
