"""The dashboard's ASGI app: pages, the JSON API, static files, errors as one line."""

from __future__ import annotations

import functools
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.errors import ExpqError, InputError
from service.ui import api, pages
from service.ui.access import TokenGuard

HERE = Path(__file__).resolve().parent
# Everything the pages load comes from this server: the browser refuses anything else.
# plotly's WebGL traces (parcoords) compile their shaders with `new Function`: 'unsafe-eval'.
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def plotly_js() -> Path:
    """plotly.min.js as the pinned plotly wheel installed it (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise ExpqError("the plotly package is not installed: pip install -c constraints.txt -e .")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ExpqError(f"plotly.min.js is missing from the plotly package at {path}")
    return path


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return pages.error_page(request, status, message)


async def _input_error(request: Request, exc: Exception) -> Response:
    return _error(request, 400, str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(request, 404, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(request, exc.status_code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette answers 500 without a word in the server's log: the traceback goes there.
    traceback.print_exception(exc, file=sys.stderr)
    return _error(request, 500, f"internal error: {type(exc).__name__}")


async def _database_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OperationalError)
    lines = str(exc.orig or exc).strip().splitlines()
    return _error(request, 503, f"database error: {lines[0] if lines else type(exc).__name__}")


class SecurityHeaders:
    """ASGI middleware adding the content policy and no-sniff to every answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message["headers"],
                    (b"content-security-policy", POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def make_app(engine: Engine, token: str | None = None, broker_url: str | None = None) -> Any:
    """The dashboard over `engine`; every request must carry `token` when one is given."""
    script = plotly_js()

    def plotly(_request: Request) -> FileResponse:
        return FileResponse(script, media_type="text/javascript")

    app = Starlette(
        routes=[
            *pages.ROUTES,
            *api.ROUTES,
            Route("/static/plotly.min.js", plotly),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            InputError: _input_error,
            api.NotFound: _not_found,
            HTTPException: _http_error,
            OperationalError: _database_error,
            Exception: _server_error,
        },
    )
    app.state.engine = engine
    app.state.celery = functools.cache(lambda: _celery(broker_url))
    wrapped: Any = SecurityHeaders(app)
    return TokenGuard(wrapped, token) if token else wrapped


def _celery(broker_url: str | None) -> Any:
    from workers.app import make_app as make_celery

    return make_celery(broker_url)
