"""Who may open the dashboard: loopback by default; any other address needs a token.

A request carries the token as `Authorization: Bearer TOKEN`, as `?token=TOKEN` (a link to
share; the answer then sets it as a cookie for the page's own requests) or as that cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from service.errors import InputError

COOKIE = "expq_ui_token"
LOCAL_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """InputError unless `host` is loopback or a token guards the dashboard."""
    if token is not None and not token.strip():
        raise InputError("--token / EXPQ_UI_TOKEN is empty; give a secret or leave it unset")
    if not is_loopback(host) and not token:
        raise InputError(
            f"--host {host} is not a loopback address: give --token or set EXPQ_UI_TOKEN, "
            "which every request must then carry"
        )


def _offered(scope: dict[str, Any]) -> tuple[str | None, bool]:
    """The token a request carries and whether it came in the query string."""
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential:
        return credential.strip(), False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return query["token"][0], True
    cookie = SimpleCookie(headers.get("cookie", ""))
    return (cookie[COOKIE].value if COOKIE in cookie else None), False


class TokenGuard:
    """ASGI middleware: 401 for any request without the token, before any route runs."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered, in_query = _offered(scope)
        if offered is None or not hmac.compare_digest(offered.encode(), self.token):
            await _refuse(send)
            return
        if not in_query:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={offered}; HttpOnly; SameSite=Strict; Path=/"
                message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def _refuse(send: Any) -> None:
    body = b"401: this dashboard needs its token (Authorization: Bearer, or ?token=)\n"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
