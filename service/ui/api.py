"""The JSON API under /api/, which the pages use. Every route only reads."""

from __future__ import annotations

import functools
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.errors import InputError
from service.filters import RunFilter, parse_sort
from service.progress import TERMINAL
from service.store import get_run, list_runs, summarize_runs
from service.store import get_runs as store_get_runs
from service.ui.curves import MAX_POINTS, chart_data
from service.ui.fleet import fleet_status
from service.ui.queries import loss_series, page_of_run_ids

DEFAULT_LIMIT = 50
MAX_LIMIT = 1_000
MAX_CHART_POINTS = 100_000


class NotFound(Exception):
    """A run or experiment that does not exist: 404 with this message."""


def whole_number(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise InputError(f"{name} must be a whole number from 0 to {high}; got {raw!r}")
    return int(raw)


def run_query(request: Request) -> tuple[RunFilter, str, int, int]:
    """The filter, sort, offset and limit of a runs listing, as /api/runs and / read them."""
    params = request.query_params
    where = params.get("where", "").strip() or None
    chosen = RunFilter(
        experiment=params.get("experiment") or None,
        status=params.get("status") or None,
        where=where,
    )
    chosen.conditions()  # a bad filter fails here, with the parser's message and position
    sort = params.get("sort", "").strip() or "id:desc"
    limit = whole_number(request, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = whole_number(request, "offset", 0, 10**9)
    return chosen, sort, offset, limit


def page_of_runs(engine: Any, chosen: RunFilter, sort: str, offset: int, limit: int) -> list:
    """The page's run records: the same records, in the same order, as `runs list`."""
    if offset == 0:
        field, descending = parse_sort(sort)
        return list_runs(
            engine,
            experiment=chosen.experiment,
            status=chosen.status,
            where=chosen.where,
            sort=field.name,
            descending=descending,
            limit=limit,
        )
    ids = page_of_run_ids(engine, chosen, sort, offset, limit)
    return store_get_runs(engine, ids) if ids else []


def runs(request: Request) -> JSONResponse:
    """`runs list --format json` for ?where=&sort=&limit=&offset= (and experiment=, status=)."""
    chosen, sort, offset, limit = run_query(request)
    found = page_of_runs(request.app.state.engine, chosen, sort, offset, limit)
    return JSONResponse([run.to_json() for run in found])


def run_id_of(request: Request) -> int:
    raw = request.path_params["run_id"]
    if not raw.isdigit():
        raise InputError(f"a run id is a whole number; got {raw!r}")
    return int(raw)


def found_run(request: Request) -> Any:
    run_id = run_id_of(request)
    run = get_run(request.app.state.engine, run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    return run


def run(request: Request) -> JSONResponse:
    return JSONResponse(found_run(request).to_json())


def losses(request: Request) -> Response:
    """The winning attempt's L and L_t by epoch and the L_t heatmap per split; curves longer
    than ?max_points= (default 500, 0: never) keep each bucket's min and max."""
    record = found_run(request)
    max_points = whole_number(request, "max_points", MAX_POINTS, MAX_CHART_POINTS)
    engine = request.app.state.engine
    if record.status in TERMINAL:
        body = _finished_losses(engine, record.id, record.attempt, record.epochs_done, max_points)
    else:
        body = _losses_json(engine, record.id, record.attempt, max_points)
    return Response(body, media_type="application/json")


def _losses_json(engine: Any, run_id: int, attempt: int, max_points: int) -> bytes:
    series = loss_series(engine, run_id, attempt)
    data = {"run_id": run_id, "attempt": attempt, **chart_data(series, max_points=max_points)}
    return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=32)
def _finished_losses(
    engine: Any, run_id: int, attempt: int, epochs_done: int, max_points: int
) -> bytes:
    """A finished run's charts, kept: its losses never change again (a finished run refuses
    writes). About 1 MB for 1,000 epochs x 64 timesteps; `epochs_done` is part of the key only."""
    return _losses_json(engine, run_id, attempt, max_points)


def experiment_summary(request: Request) -> JSONResponse:
    """`runs summary --experiment NAME --group-by ... --metric ... --format json`."""
    name = request.path_params["name"]
    engine = request.app.state.engine
    group_by = request.query_params.get("group_by", "").strip() or "model"
    metric = request.query_params.get("metric", "").strip() or "final_val_loss"
    groups = summarize_runs(engine, RunFilter(experiment=name), group_by, metric)
    if not groups:
        raise NotFound(f"no experiment named {name!r}")
    return JSONResponse(groups)


async def workers(request: Request) -> JSONResponse:
    return JSONResponse(await fleet_status(request.app.state.celery()))


ROUTES = [
    Route("/api/runs", runs),
    Route("/api/runs/{run_id}", run),
    Route("/api/runs/{run_id}/losses", losses),
    Route("/api/experiments/{name:path}/summary", experiment_summary),
    Route("/api/workers", workers),
]
