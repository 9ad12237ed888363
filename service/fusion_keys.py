"""The fusion key a run is stored with: which queued runs one worker may train in one group.

It is models.spec.fusion_key (plain Python: submitting never imports torch) over the stored
spec, hashed short enough to index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

FUSION_KEY_LENGTH = 16


def fusion_key(spec: Mapping[str, Any]) -> str | None:
    """The run's fusion key, or None (never fused) for a stored spec this version cannot read."""
    from models.spec import SpecError, spec_from_dict
    from models.spec import fusion_key as fields

    try:
        key = fields(spec_from_dict(spec))
    except SpecError:
        return None
    text = json.dumps(key, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FUSION_KEY_LENGTH]
