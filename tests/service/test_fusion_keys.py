"""The stored fusion key groups specs exactly as models.fusion's, and keeps the hash revision
0010 gave the runs it keyed."""

from __future__ import annotations

import itertools

from models.fusion import fusion_key as models_key
from models.spec import spec_from_dict
from service.fusion_keys import fusion_key

BASE = {"task": "sentiment", "model": "rnn", "seed": 1}
# each changes one thing: the first ones keep the key, the others change it
CHANGES = [
    {}, {"lr": 0.5}, {"momentum": 0.2}, {"weight_decay": 0.1}, {"dropout": 0.4},
    {"grad_clip": 0.0}, {"seed": 2, "data_seed": 1}, {"epochs": 9}, {"patience": 2},
    {"time_limit": 5.0}, {"prune": "median"}, {"activation": "relu"},
    {"seed": 2}, {"data_seed": 7}, {"hidden": 9}, {"layers": 2}, {"cell": "lstm"},
    {"loss": "mse"}, {"batch_size": 8}, {"seq_len": 6}, {"samples": 100},
    {"val_fraction": 0.3}, {"device": "cpu"}, {"model": "mlp"}, {"task": "binary"},
    {"data": "a" * 64}, {"model": "mlp", "activation": "relu"},
]  # fmt: skip


def test_equal_stored_keys_are_equal_fusion_keys() -> None:
    specs = [spec_from_dict({**BASE, **change}) for change in CHANGES]
    for a, b in itertools.combinations(specs, 2):
        same = fusion_key(a.to_dict()) == fusion_key(b.to_dict())
        assert same == (models_key(a) == models_key(b)), (a, b)
    base = fusion_key(specs[0].to_dict())
    assert [fusion_key(spec.to_dict()) == base for spec in specs] == [True] * 12 + [False] * 15


def test_a_spec_this_version_cannot_read_is_never_fused() -> None:
    assert fusion_key({"task": "binary", "model": "transformer"}) is None


def test_the_key_is_the_one_revision_0010_stored() -> None:
    from importlib import import_module

    revision = import_module("migrations.versions.0010_fused_groups")
    for change in CHANGES:
        spec = spec_from_dict({**BASE, **change}).to_dict()
        assert fusion_key(spec) == revision._key(spec)
