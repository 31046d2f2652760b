"""The operator's own watch cache against the real API server: list, then watch.

A 410 Gone is covered by the unit tests (tests/unit/test_watchcache.py): on a
young control plane etcd has compacted nothing, so a watch from an old
resourceVersion is served, not refused, and this module cannot provoke one.
"""
from __future__ import annotations

import pytest

from irisop_operator import kube, names
from irisop_operator.watchcache import WatchCache
from tests.fixtures.cluster import wait_for

pytestmark = pytest.mark.integration


def _service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {**names.child_labels(name), **names.MANAGED_SELECTOR}},
            "spec": {"selector": names.selector_labels(name), "ports": [{"port": 80, "targetPort": 3000}]}}


@pytest.fixture
def api_server(kube_cluster) -> kube.ApiServer:
    return kube.ApiServer(kube_cluster.api_client())


def test_the_cache_lists_then_hears_changes_and_deletions(api_server, kube_cluster, namespace):
    from kubernetes import client

    core = client.CoreV1Api(kube_cluster.api_client())
    core.create_namespaced_service(namespace, _service("before"))
    heard: list[tuple[str, str, bool, bool]] = []
    cache = WatchCache(api_server, lambda kind, view, deleted, changed: heard.append(
        (kind, view["metadata"]["name"], deleted, changed)), namespaces=(namespace,))
    cache.start()
    try:
        wait_for(lambda: cache.synced("Service"), timeout=30, what="the first list of Services")
        services = cache.stores["Service"]
        assert services.get((namespace, "before")) is not None
        assert heard == []  # the first list is not handed on

        core.create_namespaced_service(namespace, _service("after"))
        wait_for(lambda: services.get((namespace, "after")) is not None, timeout=30, what="the new Service")
        core.patch_namespaced_service("after", namespace, {"metadata": {"labels": {"someone-else": "x"}}})
        # Strategic merge keys ports by port: this edits the one port's target.
        core.patch_namespaced_service("after", namespace, {"spec": {"ports": [{"port": 80, "targetPort": 3001}]}})
        wait_for(lambda: services.get((namespace, "after"))["spec"]["ports"][0]["targetPort"] == 3001, timeout=30,
                 what="the edited Service")
        core.delete_namespaced_service("after", namespace)
        wait_for(lambda: ("Service", "after", True, True) in heard, timeout=30, what="the deletion")
        ours = [event for event in heard if event[1] == "after"]
        # added (changed), a foreign label (nothing read changed), the target port (changed), deleted
        assert ours == [("Service", "after", False, True), ("Service", "after", False, False),
                        ("Service", "after", False, True), ("Service", "after", True, True)], ours
        assert services.get((namespace, "after")) is None
    finally:
        cache.stop()
