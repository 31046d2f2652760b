"""The versions both clusters run, read from deploy/versions.env.

One file names them so the local cluster and the kops cluster cannot drift
apart; shell scripts `source` the same file. An environment variable of the
same name overrides a value, so the next patch release can be tried without
an edit.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

VERSIONS_FILE = Path(__file__).with_name("versions.env")
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(\S+)\s*$")


@lru_cache(maxsize=1)
def _from_file() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        match = _LINE.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def get(name: str) -> str:
    """The version called `name` (e.g. KUBERNETES_VERSION), env first."""
    value = os.environ.get(name) or _from_file().get(name)
    if not value:
        raise KeyError(f"{name} is not set in {VERSIONS_FILE}")
    return value


def kubernetes() -> str:
    return get("KUBERNETES_VERSION")


def kops() -> str:
    return get("KOPS_VERSION")


def containerd() -> str:
    return get("CONTAINERD_VERSION")


def coredns() -> str:
    return get("COREDNS_VERSION")


def metrics_server() -> str:
    return get("METRICS_SERVER_VERSION")
