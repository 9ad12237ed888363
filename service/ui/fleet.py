"""The workers and queue depths for /workers, asked of the broker with short timeouts.

The page must render when the broker is down: every call here returns within about
`BROKER_SECONDS` and turns a failure into a line in the answer, never an exception.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.config import mask_secrets, mask_url

BROKER_SECONDS = 3.0
REPLY_SECONDS = 1.0  # how long live workers get to answer the broadcast


def _ask(app: Any) -> dict[str, Any]:
    from workers.app import QUEUES
    from workers.control import INFO_COMMAND
    from workers.dispatch import broker_backlog

    # A connection of its own: after a broadcast with replies, the pooled connection's Redis
    # client answers None to the backlog's HVALS (seen with kombu 5.7).
    with app.connection_for_write() as connection:
        replies = app.control.broadcast(
            INFO_COMMAND, reply=True, timeout=REPLY_SECONDS, connection=connection
        )
    workers = sorted(
        ({"worker": name, **info} for reply in replies or [] for name, info in reply.items()),
        key=lambda info: info["worker"],
    )
    queues = []
    for queue in QUEUES:
        waiting, in_flight = broker_backlog(app, queue)
        queues.append({"queue": queue, "waiting": waiting, "in_flight": len(in_flight)})
    return {"workers": workers, "queues": queues}


async def fleet_status(app: Any) -> dict[str, Any]:
    """{"broker": masked URL, "up": bool, "error": str | None, "workers": [...], "queues": [...]}.

    Runs in a thread: kombu's calls block, and the event loop serves the other pages meanwhile.
    """
    url = app.conf.broker_url
    answer: dict[str, Any] = {"broker": mask_url(url), "up": False, "error": None}
    try:
        found = await asyncio.wait_for(asyncio.to_thread(_ask, app), BROKER_SECONDS)
    except TimeoutError:
        answer["error"] = f"the broker did not answer within {BROKER_SECONDS:g} s"
    except Exception as exc:  # noqa: BLE001 - kombu raises many transport errors
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        answer["error"] = f"broker unreachable: {mask_secrets(reason, url)}"
    else:
        answer.update(up=True, **found)
    answer.setdefault("workers", [])
    answer.setdefault("queues", [])
    return answer
