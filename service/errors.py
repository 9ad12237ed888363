"""Errors the CLI turns into one line on stderr and a documented exit code."""

from __future__ import annotations


class ExpqError(Exception):
    """Base of expq's user-facing errors; `exit_code` is what the CLI exits with."""

    exit_code = 1


class InputError(ExpqError):
    """Bad usage or invalid input: nothing was written or queued."""

    exit_code = 2


class DatabaseError(ExpqError):
    """The database is unreachable or its schema is not the one expq needs."""


class BrokerUnavailable(ExpqError):
    """The broker refused or timed out; the message names the masked broker URL."""


class ConfigError(ExpqError):
    """An EXPQ_* setting that expq cannot use (a malformed URL, an unknown scheme)."""

    exit_code = 2
