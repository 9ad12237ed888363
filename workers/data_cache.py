"""Encoded datasets a training process keeps between runs and groups: a warm worker builds a
dataset once per process, not once per run.

A dataset is named by what `models.data.build_data` reads: the task, the user data's sha256s
or the built-in generator's size, length and seed, and the validation split. Only a few are
kept; the least recently used goes first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

CACHED_DATASETS = 4

_cache: OrderedDict[tuple, Any] = OrderedDict()


def data_key(spec: Any) -> tuple:
    """What names a spec's encoded dataset."""
    seed = spec.seed if spec.data_seed is None else spec.data_seed
    if spec.data is None:
        source: tuple = ("built-in", spec.seq_len, spec.samples, seed)
    else:
        source = ("user", spec.data, spec.val_data)
    split = None if spec.val_data is not None else (spec.val_fraction, seed)
    return (spec.task, source, split)


def cached_data(spec: Any, build: Callable[[], Any]) -> Any:
    """The spec's encoded dataset, built by `build()` on a miss."""
    key = data_key(spec)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    data = build()
    _cache[key] = data
    if len(_cache) > CACHED_DATASETS:
        _cache.popitem(last=False)
    return data
