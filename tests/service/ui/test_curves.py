"""Downsampling keeps each bucket's extremes; the charts' JSON holds every split and L_t."""

from __future__ import annotations

import math
import random

from service.ui.curves import Curve, bucket_size, chart_data, heatmap, min_max


def test_short_curves_are_kept_whole() -> None:
    curve = Curve([1, 2, 3], [3.0, 2.0, 1.0])
    assert min_max(curve, 500) == curve
    assert bucket_size(500, 500) == 1
    assert bucket_size(1000, 0) == 1


def test_each_bucket_keeps_its_min_and_max_in_epoch_order() -> None:
    rng = random.Random(3)
    epochs = list(range(1, 1001))
    values = [rng.uniform(0, 1) for _ in epochs]
    values[636] = 50.0  # a spike a mean per bucket would flatten
    values[101] = -7.0
    small = min_max(Curve(epochs, values), 100)
    assert len(small.epoch) <= 100
    assert small.epoch == sorted(small.epoch)
    size = bucket_size(1000, 100)
    assert size == 20
    for start in range(0, 1000, size):
        bucket = values[start : start + size]
        kept = [
            v for e, v in zip(small.epoch, small.value, strict=True) if start < e <= start + size
        ]
        assert sorted(kept) == sorted({min(bucket), max(bucket)})
    assert 50.0 in small.value and -7.0 in small.value


def test_a_bucket_of_non_finite_losses_stays_a_gap() -> None:
    curve = Curve(list(range(1, 9)), [1.0, 2.0, None, None, 3.0, None, 0.5, 0.7])
    assert min_max(curve, 4) == Curve([1, 2, 3, 5, 6, 7], [1.0, 2.0, None, 3.0, None, 0.5])


def test_heatmap_columns_average_buckets_of_epochs() -> None:
    epochs = list(range(1, 11))
    rows = {1: [float(e) for e in epochs], 2: [None] * 9 + [4.0]}
    found = heatmap(epochs, rows, 5)
    assert found["bucket"] == 2
    assert found["epoch"] == [1, 3, 5, 7, 9]
    assert found["z"][0] == [1.5, 3.5, 5.5, 7.5, 9.5]
    assert found["z"][1] == [None, None, None, None, 4.0]


def test_chart_data_has_l_and_every_l_t_per_split() -> None:
    points = [
        (epoch, split, step, float(epoch * 10 + (step or 0)))
        for epoch in range(1, 4)
        for split in ("train", "val")
        for step in (1, 2, None)
    ]
    data = chart_data(points)
    assert data["epochs"] == 3 and data["timesteps"] == [1, 2] and not data["downsampled"]
    assert data["splits"]["val"]["L"] == {"epoch": [1, 2, 3], "value": [10.0, 20.0, 30.0]}
    assert data["splits"]["train"]["L_t"]["2"]["value"] == [12.0, 22.0, 32.0]
    assert data["splits"]["train"]["heatmap"]["z"] == [[11.0, 21.0, 31.0], [12.0, 22.0, 32.0]]


def test_long_runs_are_marked_downsampled() -> None:
    points = [(e, "val", None, math.sin(e)) for e in range(1, 1001)]
    data = chart_data(points, max_points=200)
    assert data["downsampled"] and data["bucket"] == 10
    assert len(data["splits"]["val"]["L"]["epoch"]) <= 200
