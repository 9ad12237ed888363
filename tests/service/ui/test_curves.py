"""Downsampling keeps each bucket's extremes; the charts' JSON holds every split and L_t."""

from __future__ import annotations

import math
import random

import numpy as np

from service.ui.curves import bucket_size, chart_data, heatmap, min_max


def test_short_curves_are_kept_whole() -> None:
    epochs = np.arange(1, 4)
    assert min_max(epochs, np.array([[3.0, 2.0, np.nan]]), 500) == [
        {"epoch": [1, 2, 3], "value": [3.0, 2.0, None]}
    ]
    assert bucket_size(500, 500) == 1
    assert bucket_size(1000, 0) == 1


def test_each_bucket_keeps_its_min_and_max_in_epoch_order() -> None:
    rng = random.Random(3)
    epochs = np.arange(1, 1001)
    values = [rng.uniform(0, 1) for _ in epochs]
    values[636] = 50.0  # a spike a mean per bucket would flatten
    values[101] = -7.0
    [small] = min_max(epochs, np.array([values]), 100)
    assert len(small["epoch"]) <= 100
    assert small["epoch"] == sorted(small["epoch"])
    size = bucket_size(1000, 100)
    assert size == 20
    for start in range(0, 1000, size):
        bucket = values[start : start + size]
        kept = [
            v
            for e, v in zip(small["epoch"], small["value"], strict=True)
            if start < e <= start + size
        ]
        assert sorted(kept) == sorted({min(bucket), max(bucket)})
        assert all(values[e - 1] == v for e, v in zip(small["epoch"], small["value"], strict=True))
    assert 50.0 in small["value"] and -7.0 in small["value"]


def test_a_bucket_with_a_non_finite_loss_keeps_a_gap() -> None:
    grid = np.array([[1.0, 2.0, np.nan, np.nan, 3.0, np.nan, 0.5, 0.7, np.nan, np.nan]])
    [curve] = min_max(np.arange(1, 11), grid, 4)
    # Buckets of 5: epochs 1-5 keep 1 (min), 3 (a gap), 5 (max); 6-10 keep 6 (a gap), 7, 8.
    assert curve == {"epoch": [1, 3, 5, 6, 7, 8], "value": [1.0, None, 3.0, None, 0.5, 0.7]}


def test_heatmap_columns_average_buckets_of_epochs() -> None:
    epochs = np.arange(1, 11)
    grid = np.array([epochs.astype(float), [np.nan] * 9 + [4.0]])
    found = heatmap(epochs, [1, 2], grid, 5)
    assert found["bucket"] == 2
    assert found["epoch"] == [1, 3, 5, 7, 9]
    assert found["z"][0] == [1.5, 3.5, 5.5, 7.5, 9.5]
    assert found["z"][1] == [None, None, None, None, 4.0]


def test_chart_data_has_l_and_every_l_t_per_split() -> None:
    shuffled = np.array([3, 1, 2])  # the database's order is no order
    series = [
        (split, step, shuffled, shuffled * 10.0 + (step or 0) + (split == "val") * 100)
        for split in ("train", "val")
        for step in (1, 2, None)
    ]
    data = chart_data(series)
    assert data["epochs"] == 3 and data["timesteps"] == [1, 2] and not data["downsampled"]
    assert data["splits"]["val"]["L"] == {"epoch": [1, 2, 3], "value": [110.0, 120.0, 130.0]}
    assert data["splits"]["train"]["L_t"]["2"]["value"] == [12.0, 22.0, 32.0]
    assert data["splits"]["train"]["heatmap"]["z"] == [[11.0, 21.0, 31.0], [12.0, 22.0, 32.0]]
    assert chart_data([])["splits"] == {}


def test_long_runs_are_marked_downsampled() -> None:
    epochs = np.arange(1, 1001)
    data = chart_data([("val", None, epochs, np.sin(epochs))], max_points=200)
    assert data["downsampled"] and data["bucket"] == 10
    assert len(data["splits"]["val"]["L"]["epoch"]) <= 200
    assert min(data["splits"]["val"]["L"]["value"]) == min(math.sin(e) for e in range(1, 1001))
