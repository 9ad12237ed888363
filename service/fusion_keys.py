"""The fusion key a run is stored with: which queued runs one worker may train in one group.

It is models.fusion.fusion_key over the stored spec, hashed short enough to index, computed
here in plain Python because submitting never imports torch. A test holds the two equal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

FUSION_KEY_LENGTH = 16


def fusion_fields(spec: Mapping[str, Any]) -> list[Any]:
    """What must agree for runs to share one group: the data and its split, and the shapes."""
    seed = spec["seed"] if spec.get("data_seed") is None else spec["data_seed"]
    user_data = spec.get("data") is not None
    split = None if spec.get("val_data") is not None else [spec.get("val_fraction", 0.2), seed]
    rnn = spec["model"] == "rnn"
    return [
        spec["task"],
        [spec["data"], spec.get("val_data")] if user_data else [spec["seq_len"], spec["samples"]],
        split,
        spec["model"],
        spec["cell"] if rnn else None,
        spec["hidden"],
        spec["layers"],
        None if rnn else spec["activation"],
        spec["loss"],
        spec["batch_size"],
        spec["device"],
    ]


def fusion_key(spec: Mapping[str, Any]) -> str | None:
    """The run's fusion key, or None (never fused) when the spec lacks a field it needs."""
    try:
        fields = fusion_fields(spec)
    except (KeyError, TypeError):
        return None
    text = json.dumps(fields, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FUSION_KEY_LENGTH]
