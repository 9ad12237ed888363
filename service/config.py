"""Configuration from the environment, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    heartbeat_seconds: float = 2.0  # how often a training worker renews its lease
    lease_seconds: float = 30.0  # a run whose lease is this stale is claimed again
    reap_seconds: float = 5.0  # how often each worker looks for expired leases
    resend_after_seconds: float = 600.0  # a queued run unclaimed this long is published again


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds; got {raw!r}") from None
    if not 0 < value < 10**7:
        raise ValueError(f"{name} must be a positive number of seconds; got {raw!r}")
    return value


def load_settings() -> Settings:
    """Read the EXPQ_* variables, filling DESIGN.md's defaults."""
    home = Path(os.environ.get("EXPQ_HOME") or Path.home() / ".expq").expanduser()
    return Settings(
        home=home,
        database_url=os.environ.get("EXPQ_DATABASE_URL") or f"sqlite:///{home / 'expq.db'}",
        broker_url=os.environ.get("EXPQ_BROKER_URL") or DEFAULT_BROKER_URL,
        heartbeat_seconds=_seconds("EXPQ_HEARTBEAT_SECONDS", Settings.heartbeat_seconds),
        lease_seconds=_seconds("EXPQ_LEASE_SECONDS", Settings.lease_seconds),
        reap_seconds=_seconds("EXPQ_REAP_SECONDS", Settings.reap_seconds),
        resend_after_seconds=_seconds("EXPQ_RESEND_AFTER_SECONDS", Settings.resend_after_seconds),
    )


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
