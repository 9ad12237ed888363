"""What an adaptive search searches: its space as Optuna distributions, its objective, its sampler.

A space is stored as JSON in the study's row (`to_json` / `from_json`): numeric ranges, and
categorical choices kept as the spec stores each value (validated once, when the study is made),
so that a trial's stored spec gives its parameters back exactly. Optuna is imported only where
a point is proposed: the CLI parses a sweep without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.errors import InputError
from service.sweep import Range

SEARCHES = ("tpe", "gp", "cmaes", "random", "grid")
DEFAULT_OBJECTIVE = "best_val_loss"
# Fields where more is better: without `:min|max`, these are maximised and the rest minimised.
_MAXIMISED_COLUMNS = ("best_metric", "final_metric")


@dataclass(frozen=True)
class Objective:
    """A run field the filters know, and whether the study minimises or maximises it."""

    name: str
    direction: str  # "minimize" or "maximize"


def parse_objective(text: str | None) -> Objective:
    """`FIELD[:min|max]`: a numeric field of `--where`; `best_val_loss` (min) by default."""
    from service.filters import lookup_field

    name, sep, way = (text or DEFAULT_OBJECTIVE).strip().rpartition(":")
    if not sep:
        name, way = way, ""
    found = lookup_field(name.strip())
    if found is None or not found.numeric or found.source == "tag":
        raise InputError(
            f"--objective takes a numeric run field (best_val_loss, best_metric, val_accuracy, "
            f"...) with :min or :max; got {text!r}"
        )
    if way not in ("", "min", "max"):
        raise InputError(f"--objective: the direction is min or max; got {way!r}")
    if not way:
        maximised = found.name in _MAXIMISED_COLUMNS or found.source == "metric"
        way = "max" if maximised else "min"
    return Objective(found.name, "maximize" if way == "max" else "minimize")


@dataclass(frozen=True)
class Space:
    """The ranges and categorical choices a study samples from."""

    ranges: tuple[Range, ...] = ()
    integers: frozenset[str] = frozenset()  # range names whose spec field is a whole number
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted([r.name for r in self.ranges] + list(self.choices))

    def to_json(self) -> dict[str, Any]:
        return {
            "ranges": [
                {"name": r.name, "low": r.low, "high": r.high, "log": r.log} for r in self.ranges
            ],
            "integers": sorted(self.integers),
            "choices": {name: list(values) for name, values in self.choices.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Space:
        return cls(
            tuple(Range(r["name"], r["low"], r["high"], r["log"]) for r in data["ranges"]),
            frozenset(data["integers"]),
            {name: tuple(values) for name, values in data["choices"].items()},
        )

    def distributions(self) -> dict[str, Any]:
        """The space as Optuna distributions, by parameter name."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        found: dict[str, Any] = {
            name: CategoricalDistribution(values) for name, values in self.choices.items()
        }
        for r in self.ranges:
            if r.name in self.integers:
                found[r.name] = IntDistribution(int(r.low), int(r.high), log=r.log)
            else:
                found[r.name] = FloatDistribution(r.low, r.high, log=r.log)
        return found

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space: every choice (a grid has no ranges)."""
        return {name: list(values) for name, values in self.choices.items()}

    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.choices.values())


def check_ranges(ranges: list[Range], integer_fields: frozenset[str]) -> frozenset[str]:
    """The names of `ranges` over whole-number fields; InputError for a fractional bound."""
    integers = set()
    for r in ranges:
        if r.name in integer_fields:
            if not (r.low.is_integer() and r.high.is_integer()):
                raise InputError(f"--range {r.name}: a whole-number field takes whole bounds")
            integers.add(r.name)
    return frozenset(integers)


def point_value(value: Any, distribution: Any) -> Any:
    """A sampled float as a spec stores it: six significant digits, kept inside its range."""
    if not isinstance(value, float) or not hasattr(distribution, "low"):
        return value
    rounded = float(f"{value:.6g}")
    return min(max(rounded, distribution.low), distribution.high)


def sampler_seed(study_seed: int, trial_number: int) -> int:
    """The seed of the sampler that proposes trial `trial_number`: the same study seed and
    history give the same point, whichever process proposes it."""
    return (study_seed * 1_000_003 + trial_number) % 2**32


def make_sampler(search: str, study_seed: int, trial_number: int, space: Space) -> Any:
    """A fresh Optuna sampler of kind `search` for proposing trial `trial_number`.

    The grid sampler shuffles its points by its seed and gives trial k the k-th: it keeps the
    study's seed, so that every rebuild numbers the points alike.
    """
    import optuna

    if search == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=study_seed)
    seed = sampler_seed(study_seed, trial_number)

    if search == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if search == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if search == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown search {search!r}")
