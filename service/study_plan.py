"""`expq sweep --search`: the sweep's options checked and turned into a study, before anything
is stored. Every mistake is an InputError (exit 2) naming the option."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import InputError
from service.search_space import Space, check_ranges, parse_objective
from service.study import StudyPlan
from service.sweep import Range, base_seed, integer_fields, split_values

DEFAULT_REDUCTION = 3


@dataclass(frozen=True)
class SearchOptions:
    """The options of `expq sweep` that only a search takes."""

    search: str
    trials: int | None
    parallel: int
    objective: str | None
    prune: str | None
    prune_min_epochs: int | None
    prune_reduction: int | None


def _check_pruning(options: SearchOptions) -> dict[str, Any]:
    """The spec fields of the pruner; ASHA's rungs begin at --prune-min-epochs, which is where
    the runner starts asking (after prune_warmup epochs)."""
    asha_only = options.prune_min_epochs is not None or options.prune_reduction is not None
    if asha_only and options.prune != "asha":
        raise InputError("--prune-min-epochs and --prune-reduction go with --prune asha")
    if options.prune == "asha":
        return {"prune": "asha", "prune_warmup": (options.prune_min_epochs or 1) - 1}
    return {}


def _canonical_choices(
    fixed: dict[str, Any], lists: dict[str, list[str]], validate: Callable
) -> dict[str, tuple[Any, ...]]:
    """Each listed value as the spec stores it (`0.10` → 0.1, `16` → 16), so that a trial's
    stored spec names its choice exactly; InputError for a value no spec accepts."""
    choices = {}
    for name, values in lists.items():
        stored = []
        for value in values:
            try:
                stored.append(validate({**fixed, name: value}).to_dict()[name])
            except InputError as exc:
                raise InputError(f"--{name.replace('_', '-')} {value}: {exc}") from None
        if len(set(map(repr, stored))) != len(stored):
            raise InputError(f"--{name.replace('_', '-')}: a value is listed twice")
        choices[name] = tuple(stored)
    return choices


def _check_ranges_valid(fixed: dict[str, Any], ranges: list[Range], validate: Callable) -> None:
    for r in ranges:
        for bound in (r.low, r.high):
            try:
                validate({**fixed, r.name: bound})
            except InputError as exc:
                raise InputError(f"--range {r.name}: {exc}") from None


def plan_study(
    raw: dict[str, str],
    ranges: list[Range],
    options: SearchOptions,
    *,
    experiment: str,
    data: Path | None,
    val_data: Path | None,
    queue_for: Callable[[str], str],
    priority: int,
    max_attempts: int,
    tags: dict[str, str],
) -> tuple[StudyPlan, dict[str, bytes]]:
    """The study to store, and the data files' bytes by digest."""
    from service.submit import prepare_spec, validate_spec

    fixed, lists = split_values(raw)
    overlap = sorted(set(lists) & {r.name for r in ranges})
    if overlap:
        raise InputError(f"{overlap[0]} is given both as a list and as a --range")
    if "device" in lists:
        raise InputError("--search takes one --device: a study's trials share a queue")
    objective = parse_objective(options.objective)
    fixed |= _check_pruning(options)
    if not lists and not ranges:
        raise InputError("--search needs something to search: a list (--hidden 8,16) or --range")
    if options.search == "grid" and ranges:
        raise InputError("--search grid takes lists only; sample ranges with another search")
    space = Space(tuple(ranges), check_ranges(ranges, integer_fields()), {})
    space = Space(space.ranges, space.integers, _canonical_choices(fixed, lists, validate_spec))
    _check_ranges_valid(fixed, ranges, validate_spec)
    trials = options.trials
    if options.search == "grid":
        trials = trials or space.grid_size()
        if trials > space.grid_size():
            raise InputError(f"--trials {trials}: the grid has {space.grid_size()} points")
    elif trials is None:
        raise InputError(f"--search {options.search} needs --trials N")
    first = {name: values[0] for name, values in space.choices.items()}
    first |= {r.name: r.low for r in ranges}
    spec, files = prepare_spec({**fixed, **first}, data, val_data)
    base = {**fixed, "data": spec.data, "val_data": spec.val_data}
    plan = StudyPlan(
        experiment=experiment,
        search=options.search,
        objective=objective,
        trials=trials,
        parallel=min(options.parallel, trials),
        seed=base_seed(fixed),
        space=space,
        base_spec={k: v for k, v in base.items() if v is not None},
        queue=queue_for(spec.device),
        priority=priority,
        max_attempts=max_attempts,
        tags=tags,
        pruner=options.prune,
        prune_min_epochs=(options.prune_min_epochs or 1) if options.prune == "asha" else None,
        prune_reduction=(options.prune_reduction or DEFAULT_REDUCTION)
        if options.prune == "asha"
        else None,
    )
    return plan, files
