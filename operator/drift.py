"""Does a live object still carry everything we applied?

Server-side apply would tell us too, but only by sending a write. Comparing
the desired manifest as a *subset* of the live object (the server adds
defaults and status we never set) lets a no-op resync make zero API calls,
and catches hand edits of any field we own.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

# Keys whose live value the server normalises (e.g. "1000m" -> "1", "0.5" -> "500m").
_QUANTITY_KEYS = {"cpu", "memory", "sizeLimit"}


def _quantity_equal(want: Any, have: Any) -> bool:
    try:
        return Decimal(parse_quantity(want)) == Decimal(parse_quantity(have))
    except (ValueError, TypeError):
        return False


def is_subset(desired: Any, live: Any, parent: str = "") -> bool:
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and is_subset(v, live[k], k) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, l, parent) for d, l in zip(desired, live))
    if desired == live:
        return True
    return parent in _QUANTITY_KEYS and _quantity_equal(desired, live)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    if live is None or live.get("metadata", {}).get("deletionTimestamp"):
        return True
    return not (is_subset(desired["metadata"], live.get("metadata", {})) and is_subset(desired["spec"], live.get("spec", {})))
