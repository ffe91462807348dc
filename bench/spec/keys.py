"""Canonical JSON and short content hashes: the basis of cell_key and run_key."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def canonical(value: Any) -> Any:
    """Numbers in one spelling (floats via repr, -0.0 -> 0.0), tuples as lists, dict keys sorted."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value!r} in a spec")
        return 0.0 if value == 0 else float(repr(value))
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    raise TypeError(f"cannot put {type(value).__name__} into a key")


def canonical_json(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"))


def short_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]
