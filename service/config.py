"""Configuration from the environment, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from service.errors import ConfigError

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps")


MAX_FUSE = 64


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; see README "Recovery" for how the timings bound recovery."""

    home: Path
    database_url: str
    broker_url: str
    heartbeat_seconds: float = 2.0  # how often a training worker renews its lease
    lease_seconds: float = 30.0  # a run whose lease is this stale is claimed again
    reap_seconds: float = 5.0  # how often each worker looks for expired leases
    resend_after_seconds: float = 60.0  # a queued run unclaimed this long may have lost its message
    visibility_timeout_seconds: float = 3600.0  # Redis redelivers an unacked message after this
    max_attempts: int = 3  # attempts a run may lose (crashes); those given back do not count
    progress_timeout_seconds: float = 300.0  # a claimed run this long without a batch is hung
    # Runs of one shape a training process trains as one fused group (MLPs on the CPU; any
    # other run trains alone whatever K is); 1 turns fusion off. A 16-run MLP sweep took
    # 2.2-2.5x less wall time at 4, 3.0-4.3x at 8 and 3.2-5.4x at 16 through a real worker
    # (benchmarks/results/fusion_2000x5_k4.md, _k8.md, fusion_2000x5.md): 8 keeps most of
    # the gain, and a worker takes what is queued, so a 16-run sweep still spreads over two.
    fuse: int = 8


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds; got {raw!r}") from None
    if not 0 < value < 10**7:
        raise ConfigError(f"{name} must be a positive number of seconds; got {raw!r}")
    return value


def _count(name: str, default: int, high: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    if not raw.strip().isdigit() or not 1 <= int(raw) <= high:
        raise ConfigError(f"{name} must be a whole number from 1 to {high}; got {raw!r}")
    return int(raw)


def _broker_url(url: str) -> str:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        named = f"the scheme {scheme!r}" if scheme else "no scheme"
        raise ConfigError(
            f"EXPQ_BROKER_URL has {named}; expq supports "
            + ", ".join(f"{name}://" for name in BROKER_SCHEMES)
        )
    return url


def load_settings() -> Settings:
    """Read the EXPQ_* variables, filling DESIGN.md's defaults."""
    home = Path(os.environ.get("EXPQ_HOME") or Path.home() / ".expq").expanduser()
    return Settings(
        home=home,
        database_url=os.environ.get("EXPQ_DATABASE_URL") or f"sqlite:///{home / 'expq.db'}",
        broker_url=_broker_url(os.environ.get("EXPQ_BROKER_URL") or DEFAULT_BROKER_URL),
        heartbeat_seconds=_seconds("EXPQ_HEARTBEAT_SECONDS", Settings.heartbeat_seconds),
        lease_seconds=_seconds("EXPQ_LEASE_SECONDS", Settings.lease_seconds),
        reap_seconds=_seconds("EXPQ_REAP_SECONDS", Settings.reap_seconds),
        resend_after_seconds=_seconds("EXPQ_RESEND_AFTER_SECONDS", Settings.resend_after_seconds),
        visibility_timeout_seconds=_seconds(
            "EXPQ_VISIBILITY_TIMEOUT_SECONDS", Settings.visibility_timeout_seconds
        ),
        max_attempts=_count("EXPQ_MAX_ATTEMPTS", Settings.max_attempts, 100),
        progress_timeout_seconds=_seconds(
            "EXPQ_PROGRESS_TIMEOUT_SECONDS", Settings.progress_timeout_seconds
        ),
        fuse=_count("EXPQ_FUSE", Settings.fuse, MAX_FUSE),
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


def mask_secrets(text: str, *urls: str) -> str:
    """`text` with the password of each URL replaced by `***` (for exception messages)."""
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        for form in {password, unquote(password or "")} - {"", None}:
            text = text.replace(form, "***")
    return text
