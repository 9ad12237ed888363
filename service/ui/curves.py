"""Loss curves shaped for charts: L and every L_t by epoch, and the L_t heatmap, downsampled.

A long curve keeps each bucket's min and max (in epoch order), so that a spike or a collapse
survives the downsampling; a mean per bucket would hide exactly the epochs people look for.
Vectorized with numpy: a 1,000-epoch x 64-timestep run is 130,000 values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_POINTS = 500  # points per L curve on a page: each bucket gives at most two
STEP_POINTS = 200  # points per L_t curve: a run may have 64 of them per split
HEATMAP_COLUMNS = 200  # epochs (columns) per heatmap; buckets beyond that show their mean

Series = tuple[str, int | None, np.ndarray, np.ndarray]  # split, timestep (None: L), epochs, values


def bucket_size(length: int, max_points: int) -> int:
    """Epochs per bucket so that two points a bucket fit in `max_points` (1: no downsampling)."""
    if max_points <= 0 or length <= max_points:
        return 1
    return math.ceil(length / max(max_points // 2, 1))


def _buckets(grid: np.ndarray, size: int) -> np.ndarray:
    """(curves, epochs) → (curves, buckets, size), the last bucket padded with NaN."""
    curves, length = grid.shape
    buckets = math.ceil(length / size)
    padded = np.full((curves, buckets * size), np.nan)
    padded[:, :length] = grid
    return padded.reshape(curves, buckets, size)


def _listed(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, None where a value is missing or not finite (a gap in the chart)."""
    return [None if math.isnan(v) else v for v in values.tolist()]


def min_max(epochs: np.ndarray, grid: np.ndarray, max_points: int) -> list[dict[str, list]]:
    """Each row of `grid` (curves x epochs, NaN: no finite value) as {"epoch", "value"}, every
    bucket reduced to its min and max, in epoch order; a bucket with a NaN also keeps its first
    one, as a gap, so that a divergence stays visible."""
    size = bucket_size(len(epochs), max_points)
    if size == 1:
        return [{"epoch": epochs.tolist(), "value": _listed(row)} for row in grid]
    split = _buckets(grid, size)
    missing = np.isnan(split)
    real = (np.arange(split.shape[1] * size) < len(epochs)).reshape(1, -1, size)
    gaps = missing & real
    empty = missing.all(axis=2)
    low = np.where(missing, np.inf, split).argmin(axis=2)
    high = np.where(missing, -np.inf, split).argmax(axis=2)
    high = np.where(high == low, -1, high)
    chosen = np.stack(
        [
            np.where(empty, -1, low),
            np.where(empty, -1, high),
            np.where(gaps.any(axis=2), gaps.argmax(axis=2), -1),
        ],
        axis=2,
    )
    chosen.sort(axis=2)
    starts = np.arange(split.shape[1]).reshape(-1, 1) * size
    curves = []
    for row, picks in zip(grid, chosen, strict=True):
        index = (picks + starts)[picks >= 0]
        curves.append({"epoch": epochs[index].tolist(), "value": _listed(row[index])})
    return curves


def heatmap(epochs: np.ndarray, timesteps: list[int], grid: np.ndarray, columns: int) -> dict:
    """L_t over epoch x timestep: z[timestep][epoch bucket], buckets averaged past `columns`."""
    size = math.ceil(len(epochs) / columns) if 0 < columns < len(epochs) else 1
    split = _buckets(grid, size)
    counts = (~np.isnan(split)).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, np.nansum(split, axis=2) / counts, np.nan)
    return {
        "epoch": epochs[::size].tolist(),
        "timestep": timesteps,
        "z": [_listed(row) for row in means],
        "bucket": size,
    }


def chart_data(
    series: Sequence[Series],
    *,
    max_points: int = MAX_POINTS,
    step_points: int = STEP_POINTS,
    heatmap_columns: int = HEATMAP_COLUMNS,
) -> dict[str, Any]:
    """(split, timestep, epochs, values) series → the charts' JSON. Every curve of a run spans
    the same epochs; an epoch missing a value gets None."""
    if not series:
        return {"epochs": 0, "timesteps": [], "downsampled": False, "bucket": 1,
                "max_points": max_points, "splits": {}}  # fmt: skip
    epochs = np.unique(np.concatenate([found[2] for found in series]))
    names = sorted({found[0] for found in series})
    timesteps = np.array(sorted({found[1] for found in series if found[1] is not None}), int)
    grid = np.full((len(names), len(timesteps) + 1, len(epochs)), np.nan)
    for split, step, at, values in series:
        row = 0 if step is None else int(np.searchsorted(timesteps, step)) + 1
        grid[names.index(split), row, np.searchsorted(epochs, at)] = values
    found = {}
    for i, name in enumerate(names):
        total, per_step = grid[i, :1], grid[i, 1:]
        present = ~np.isnan(per_step).all(axis=1)  # this split's own timesteps
        own = timesteps[present].tolist()
        found[name] = {
            "L": min_max(epochs, total, max_points)[0],
            "L_t": dict(
                zip(map(str, own), min_max(epochs, per_step[present], step_points), strict=True)
            ),
            "heatmap": heatmap(epochs, own, per_step[present], heatmap_columns) if own else None,
        }
    size = bucket_size(len(epochs), max_points)
    return {
        "epochs": len(epochs),
        "timesteps": timesteps.tolist(),
        "downsampled": size > 1 or bucket_size(len(epochs), step_points) > 1,
        "bucket": size,
        "step_bucket": bucket_size(len(epochs), step_points),
        "max_points": max_points,
        "step_points": step_points,
        "splits": found,
    }
