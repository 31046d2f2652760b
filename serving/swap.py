"""Put a class of ours where BentoML looks one of its own up when it builds the app.

BentoML 1.4 has no public switch for the request middlewares it adds, and it
imports each class by module attribute at app build time (after the service
module is imported), so replacing that attribute is enough. If the class has
moved in a later release, nothing is replaced, BentoML's own stays and the
log says so; the unit test that checks the built app then fails.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Callable

logger = logging.getLogger("irisop_serving")


def replace_class(module_name: str, attribute: str, build: Callable[[type], type], why: str) -> bool:
    """Set ``module.attribute`` to ``build(original)``; whether it could.

    ``original`` is the library's own class even when this runs twice (each
    replacement keeps it as ``replaces``), so replacements never stack.
    """
    try:
        module: Any = importlib.import_module(module_name)
    except ImportError:
        module = None
    current = getattr(module, attribute, None)
    if not isinstance(current, type):
        logger.warning("%s.%s was not found; %s stays (docs/serving.md)", module_name, attribute, why)
        return False
    original = getattr(current, "replaces", None) or current
    replacement = build(original)
    replacement.replaces = original  # type: ignore[attr-defined]
    setattr(module, attribute, replacement)
    return True
