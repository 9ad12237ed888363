"""The HTML pages: Jinja2 templates over the store's records; the charts draw from /api/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from service.errors import InputError
from service.filters import PARAM_KINDS, RunFilter
from service.output import compare_rows, fmt_number
from service.progress import TERMINAL
from service.records import RunRecord
from service.store import SUMMARY_STATS, get_runs, list_runs, summarize_runs
from service.ui.api import found_run, page_of_runs, run_query

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
TEMPLATES.env.filters["number"] = fmt_number
MAX_COMPARE = 20
MAX_EXPERIMENT_RUNS = 1_000  # the runs an experiment page plots and lists
# Header → the field it sorts by (any other field: the page's sort box).
COLUMNS = (
    ("id", "id"),
    ("experiment", "experiment"),
    ("task", "task"),
    ("model", "model"),
    ("status", "status"),
    ("epochs", "epochs_done"),
    ("lr", "lr"),
    ("hidden", "hidden"),
    ("train L", "final_train_loss"),
    ("val L", "final_val_loss"),
    ("best val L", "best_val_loss"),
    ("metric", "final_metric"),
    ("worker", "worker"),
    ("created", "created_at"),
)
FACETS = ("status", "experiment")
# The run fields an experiment page can plot as the objective.
OBJECTIVES = ("final_train_loss", "final_val_loss", "best_train_loss", "best_val_loss",
              "final_metric", "epochs_done")  # fmt: skip


def render(request: Request, template: str, code: int = 200, /, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(request, template, context, status_code=code)


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status, message=message)


def _facets(engine: Any, chosen: RunFilter) -> dict[str, list[tuple[str, int]]]:
    """Runs per status and per experiment, the other facet's choice kept and this facet's own
    dropped, so that every choice stays one click away. The `where` filter is left out: with
    it, each count probes every matching run (2.3 s for both at 100k runs); without it, each
    is one indexed GROUP BY."""
    found = {}
    for name in FACETS:
        scope = RunFilter(
            experiment=None if name == "experiment" else chosen.experiment,
            status=None if name == "status" else chosen.status,
        )
        # Any float metric: only the group's run count is read. An integer one such as `id`
        # overflows PostgreSQL's integer in the store's avg(value * value) past id 46,341.
        groups = summarize_runs(engine, scope, name, "final_val_loss")
        found[name] = sorted(((g[name], g["runs"]) for g in groups), key=lambda item: -item[1])
    return found


def runs_page(request: Request) -> Response:
    """`/`: the runs table; ?where= in the --where language, ?sort=, ?offset=, facets."""
    engine = request.app.state.engine
    params = request.query_params
    context: dict[str, Any] = {
        "where": params.get("where", ""),
        "sort": params.get("sort", "") or "id:desc",
        "status": params.get("status", ""),
        "experiment": params.get("experiment", ""),
        "columns": COLUMNS,
        "runs": [],
        "facets": {},
        "error": None,
        "offset": 0,
        "limit": 0,
        "more": False,
    }
    try:
        chosen, sort, offset, limit = run_query(request)
        found = page_of_runs(engine, chosen, sort, offset, limit + 1)
    except InputError as exc:
        context["error"] = str(exc)
        return render(request, "runs.html", 400, **context)
    context.update(
        runs=found[:limit],
        more=len(found) > limit,
        offset=offset,
        limit=limit,
        facets=_facets(engine, chosen),
        live=[run.id for run in found[:limit] if run.status not in TERMINAL],
    )
    return render(request, "runs.html", **context)


def run_page(request: Request) -> Response:
    """`/runs/<id>`: the record; its charts load from /api/runs/<id>/losses."""
    run = found_run(request)
    return render(request, "run.html", run=run, live=run.status not in TERMINAL)


def _compare_ids(raw: str) -> list[int]:
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise InputError(f"ids: give comma-separated run ids, e.g. ?ids=1,2,3; got {raw!r}")
    ids = list(dict.fromkeys(int(part) for part in parts))
    if len(ids) > MAX_COMPARE:
        raise InputError(f"ids: compare at most {MAX_COMPARE} runs at once; got {len(ids)}")
    return ids


def compare_page(request: Request) -> Response:
    """`/compare?ids=1,2,3`: curves overlaid, the hyperparameters and tags that differ."""
    runs = get_runs(request.app.state.engine, _compare_ids(request.query_params.get("ids", "")))
    rows = compare_rows(runs)
    summary = [row for row in rows if row[1] == "summary"]
    differing = [row for row in rows if row[2]]
    return render(request, "compare.html", runs=runs, summary=summary, differing=differing)


def _plotted(run: RunRecord) -> dict[str, Any]:
    """What the experiment page's charts and run list need of a run."""
    return {"id": run.id, "status": run.status, "params": run.params,
            **{field: getattr(run, field) for field in OBJECTIVES}}  # fmt: skip


def experiment_page(request: Request) -> Response:
    """`/experiments/<name>`: the summary grouped by any field; parallel coordinates of the
    hyperparameters that vary against the objective; a scatter of one against it."""
    name = request.path_params["name"]
    engine = request.app.state.engine
    runs = list_runs(engine, experiment=name, limit=MAX_EXPERIMENT_RUNS)
    if not runs:
        return error_page(request, 404, f"no experiment named {name!r}")
    # Seeds vary by design (the data seed follows the seed unless set): the summary's std is
    # taken across them, not plotted against. An axis needs a value from every run: a
    # parameter that does not apply to some (the cell of an MLP) is not one.
    values = {
        p: {repr(run.params[p]) for run in runs}
        for p in PARAM_KINDS
        if p not in ("seed", "data_seed") and all(p in run.params for run in runs)
    }
    varying = [p for p, seen in values.items() if len(seen) > 1]
    fewest = min(varying, key=lambda p: len(values[p]), default="model")
    group_by = request.query_params.get("group_by", "").strip() or fewest
    context: dict[str, Any] = {
        "name": name,
        "group_by": group_by,
        "metric": request.query_params.get("metric", "").strip() or "final_val_loss",
        "varying": varying,
        "runs": [_plotted(run) for run in reversed(runs)],
        "groups": [],
        "names": [],
        "total": None,
        "error": None,
    }
    try:
        groups = summarize_runs(engine, RunFilter(experiment=name), group_by, context["metric"])
    except InputError as exc:
        return render(request, "experiment.html", 400, **{**context, "error": str(exc)})
    context.update(
        groups=groups,
        names=[key for key in groups[0] if key not in SUMMARY_STATS],
        total=sum(group["runs"] for group in groups),
    )
    return render(request, "experiment.html", **context)


def workers_page(request: Request) -> Response:
    """`/workers`: filled and refreshed from /api/workers."""
    return render(request, "workers.html")


ROUTES = [
    Route("/", runs_page),
    Route("/runs/{run_id}", run_page),
    Route("/compare", compare_page),
    Route("/experiments/{name:path}", experiment_page),
    Route("/workers", workers_page),
]
