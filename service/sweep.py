"""Expanding a sweep into run specs: lists as a grid, ranges sampled at random, seed replicates.

Values stay as the user typed them (strings) until `models.spec.spec_from_dict` validates each
point, so a sweep point fails with exactly the message a single submit would give.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass, fields
from typing import Any

from service.errors import InputError

_RANGE = re.compile(
    r"^\s*(?P<name>[a-z_-]+)\s*=\s*(?P<low>[^:]+):(?P<high>[^:]+)(?::(?P<scale>\w+))?\s*$"
)


@dataclass(frozen=True)
class Range:
    """A numeric interval to sample from, uniformly or log-uniformly."""

    name: str
    low: float
    high: float
    log: bool = False

    def sample(self, rng: random.Random, whole: bool) -> int | float:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        # Six significant digits: exact enough to reproduce, short enough to read.
        return round(value) if whole else float(f"{value:.6g}")


def integer_fields() -> frozenset[str]:
    from models.spec import TrainSpec

    return frozenset(f.name for f in fields(TrainSpec) if str(f.type).startswith("int"))


def parse_range(text: str) -> Range:
    """`lr=1e-3:1e-1:log` or `dropout=0:0.5`."""
    match = _RANGE.match(text)
    if not match:
        raise InputError(f"--range takes NAME=LOW:HIGH[:log]; got {text!r}")
    name = match["name"].replace("-", "_")
    try:
        low, high = float(match["low"]), float(match["high"])
    except ValueError:
        raise InputError(f"--range {name}: LOW and HIGH must be numbers; got {text!r}") from None
    scale = match["scale"] or "linear"
    if scale not in ("linear", "log"):
        raise InputError(f"--range {name}: the scale is linear or log; got {scale!r}")
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise InputError(f"--range {name}: LOW must be below HIGH and both finite; got {text!r}")
    if scale == "log" and low <= 0:
        raise InputError(f"--range {name}: a log range needs LOW > 0; got {text!r}")
    return Range(name, low, high, scale == "log")


def split_values(options: dict[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Options with one value, and options given as comma-separated lists."""
    fixed, lists = {}, {}
    for name, text in options.items():
        values = [value.strip() for value in str(text).split(",")]
        if any(not value for value in values):
            raise InputError(f"--{name.replace('_', '-')}: empty value in list {text!r}")
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            lists[name] = values
    return fixed, lists


def grid_points(lists: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every combination of the listed values (one empty point when nothing is listed)."""
    names = sorted(lists)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(lists[n] for n in names))
    ]


def random_points(
    lists: dict[str, list[str]], ranges: list[Range], count: int, seed: int
) -> list[dict[str, Any]]:
    """`count` points: each list value drawn uniformly, each range sampled; seeded."""
    rng = random.Random(seed)
    whole = integer_fields()
    points = []
    for _ in range(count):
        point: dict[str, Any] = {name: rng.choice(values) for name, values in sorted(lists.items())}
        for spec_range in ranges:
            point[spec_range.name] = spec_range.sample(rng, spec_range.name in whole)
        points.append(point)
    return points


def count_runs(lists: dict[str, list[str]], random_count: int | None, seeds: int) -> int:
    """How many runs a sweep makes, from the list lengths alone (nothing is built)."""
    points = random_count if random_count is not None else math.prod(map(len, lists.values()))
    return points * seeds


def _check_size(
    lists: dict[str, list[str]], random_count: int | None, seeds: int, most: int
) -> None:
    runs = count_runs(lists, random_count, seeds)
    if runs <= most:
        return
    if random_count is None:
        factors = [f"{name} {len(lists[name])}" for name in sorted(lists)]
    else:
        factors = [f"random {random_count}"]
    raise InputError(
        f"the sweep is {runs:,} runs ({' x '.join([*factors, f'seeds {seeds}'])}); the limit "
        f"is {most:,}: shrink the lists, or pass --max-runs {runs} to allow it"
    )


def replicate(points: list[dict[str, Any]], seeds: int, base_seed: int) -> list[dict[str, Any]]:
    """Each point once per seed, seeds base_seed, base_seed + 1, ..."""
    return [{**point, "seed": base_seed + k} for point in points for k in range(seeds)]


def expand(
    options: dict[str, str],
    *,
    ranges: list[Range],
    random_count: int | None,
    seeds: int,
    max_runs: int,
) -> tuple[list[dict[str, Any]], int]:
    """The raw spec of every run in the sweep, and the number of distinct points; InputError,
    before anything is built, when the sweep would be more than `max_runs` runs."""
    fixed, lists = split_values(options)
    overlap = sorted(set(lists) & {r.name for r in ranges})
    if overlap:
        raise InputError(f"{overlap[0]} is given both as a list and as a --range")
    if "seed" in lists and seeds > 1:
        raise InputError("give either a list of --seed values or --seeds N, not both")
    first_seed = base_seed(fixed)
    if random_count is None and ranges:
        raise InputError(
            "--range needs --random N or --search; use a comma-separated list for a grid"
        )
    _check_size(lists, random_count, seeds, max_runs)
    if random_count is None:
        points = grid_points(lists)
    else:
        points = random_points(lists, ranges, random_count, seed=first_seed)
    merged = [{**fixed, **point} for point in points]
    runs = replicate(merged, seeds, first_seed) if seeds > 1 else merged
    return runs, len(points)


def base_seed(fixed: dict[str, str]) -> int:
    try:
        seed = float(fixed.get("seed", 0))
    except ValueError:
        raise InputError(f"seed must be a whole number; got {fixed['seed']!r}") from None
    if not seed.is_integer() or seed < 0:
        raise InputError(f"seed must be a whole number >= 0; got {fixed['seed']!r}")
    return int(seed)
