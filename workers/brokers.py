"""What a broker URL says about the broker behind it, for the modules that configure, consume
and publish (workers/app.py, workers/flow.py, workers/dispatch.py)."""

from __future__ import annotations

from urllib.parse import urlsplit


def is_redis(url: str) -> bool:
    """Whether `url` names a Redis broker (redis:// or rediss://) rather than an AMQP one."""
    return urlsplit(url).scheme in ("redis", "rediss")
