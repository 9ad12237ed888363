"""Loss curves shaped for charts: L and every L_t by epoch, and the L_t heatmap, downsampled.

A long curve keeps each bucket's min and max (in epoch order), so that a spike or a collapse
survives the downsampling; a mean per bucket would hide exactly the epochs people look for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "val")
MAX_POINTS = 500  # points per curve on a page: each bucket gives at most two
HEATMAP_COLUMNS = 250  # epochs (columns) per heatmap; buckets beyond that show their mean


@dataclass(frozen=True)
class Curve:
    epoch: list[int]
    value: list[float | None]  # None: a non-finite loss (a gap in the chart)


def bucket_size(length: int, max_points: int) -> int:
    """Epochs per bucket so that two points a bucket fit in `max_points` (1: no downsampling)."""
    if max_points <= 0 or length <= max_points:
        return 1
    return math.ceil(length / max(max_points // 2, 1))


def min_max(curve: Curve, max_points: int) -> Curve:
    """`curve` with each bucket reduced to its min and max points, in epoch order; a bucket
    with a non-finite loss also keeps its first one, as a gap (a divergence stays visible)."""
    size = bucket_size(len(curve.epoch), max_points)
    if size == 1:
        return curve
    kept: list[int] = []
    for start in range(0, len(curve.epoch), size):
        indices = range(start, min(start + size, len(curve.epoch)))
        finite = [i for i in indices if curve.value[i] is not None]
        gaps = [i for i in indices if curve.value[i] is None][:1]
        extremes = (
            {min(finite, key=curve.value.__getitem__), max(finite, key=curve.value.__getitem__)}
            if finite
            else set()
        )
        kept += sorted(extremes | set(gaps))
    return Curve([curve.epoch[i] for i in kept], [curve.value[i] for i in kept])


def _bucket_mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None


def heatmap(epochs: list[int], rows: dict[int, list[float | None]], columns: int) -> dict:
    """L_t over epoch x timestep: z[timestep][epoch bucket], buckets averaged past `columns`."""
    size = math.ceil(len(epochs) / columns) if 0 < columns < len(epochs) else 1
    starts = list(range(0, len(epochs), size))
    return {
        "epoch": [epochs[s] for s in starts],
        "timestep": sorted(rows),
        "z": [[_bucket_mean(rows[t][s : s + size]) for s in starts] for t in sorted(rows)],
        "bucket": size,
    }


def chart_data(
    points: Iterable[tuple[int, str, int | None, float | None]],
    *,
    max_points: int = MAX_POINTS,
    heatmap_columns: int = HEATMAP_COLUMNS,
) -> dict[str, Any]:
    """(epoch, split, timestep, value) rows, epochs ascending → the charts' JSON.

    Every curve of a split spans the same epochs; an epoch missing a value gets None.
    """
    table: dict[str, dict[int | None, dict[int, float | None]]] = {s: {} for s in SPLITS}
    epochs: set[int] = set()
    for epoch, split, timestep, value in points:
        table.setdefault(split, {}).setdefault(timestep, {})[epoch] = value
        epochs.add(epoch)
    ordered = sorted(epochs)
    size = bucket_size(len(ordered), max_points)
    splits: dict[str, Any] = {}
    for split, series in table.items():
        full = {t: [by_epoch.get(e) for e in ordered] for t, by_epoch in series.items()}
        steps = {t: values for t, values in full.items() if t is not None}
        splits[split] = {
            "L": _shown(min_max(Curve(ordered, full.get(None, [None] * len(ordered))), max_points)),
            "L_t": {
                str(t): _shown(min_max(Curve(ordered, steps[t]), max_points)) for t in sorted(steps)
            },
            "heatmap": heatmap(ordered, steps, heatmap_columns) if steps else None,
        }
    return {
        "epochs": len(ordered),
        "timesteps": sorted({t for s in table.values() for t in s if t is not None}),
        "downsampled": size > 1,
        "bucket": size,
        "max_points": max_points,
        "splits": splits,
    }


def _shown(curve: Curve) -> dict[str, list]:
    return {"epoch": curve.epoch, "value": curve.value}
