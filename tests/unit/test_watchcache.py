"""The operator's own watch cache: list pages, watch, relist after 410, and what it hands on."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from irisop_operator import kube, names
from irisop_operator.leadership import Leadership, outranked, peering_paths
from irisop_operator.watchcache import (PAGE_SIZE, POD, WATCHED, Reflector, Source, Store, WatchCache, projection,
                                        sources)


def _deployment(name: str, replicas: int = 1, rv: str = "1", namespace: str = "ml") -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}", "resourceVersion": rv,
                         "labels": {**names.child_labels(name), **names.MANAGED_SELECTOR}},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas}}


class FakeLister:
    """Answers list pages and watch requests from scripts; records every query."""

    def __init__(self, pages: list[dict], watches: list[list[dict] | Exception]) -> None:
        self.pages, self.watches = list(pages), list(watches)
        self.gets: list[list[tuple[str, str]]] = []
        self.watch_queries: list[dict[str, str]] = []

    def get(self, path, query):
        self.gets.append(query)
        return self.pages.pop(0)

    def watch(self, path, query, read_timeout):
        self.watch_queries.append(dict(query))
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        yield from script


def _page(items, rv="10", token=""):
    return {"metadata": {"resourceVersion": rv, **({"continue": token} if token else {})}, "items": items}


def _reflector(lister, changes, stop=None):
    return Reflector(Source("Deployment", "/apis/apps/v1/deployments", None, "x=y"), Store(), lister,
                     lambda kind, view, deleted, changed: changes.append((view["metadata"]["name"], deleted, changed)),
                     stop or threading.Event(), delays=(0,))


def test_the_first_list_fills_the_store_from_every_page_and_hands_on_nothing():
    lister = FakeLister([_page([_deployment("a")], token="t1"), _page([_deployment("b")], rv="10")], [])
    changes: list = []
    reflector = _reflector(lister, changes)
    assert reflector.relist() == "10"
    assert len(reflector.store) == 2 and reflector.synced.is_set()
    assert changes == []  # a start-up resumes every IrisModel anyway
    assert ("limit", str(PAGE_SIZE)) in lister.gets[0] and ("continue", "t1") in lister.gets[1]
    assert "managedFields" not in reflector.store.get(("ml", "a"))["metadata"]


def test_watch_events_update_the_store_and_say_whether_anything_read_changed():
    events = [
        {"type": "MODIFIED", "object": _deployment("a", rv="11")},  # only the resourceVersion moved
        {"type": "MODIFIED", "object": _deployment("a", replicas=3, rv="12")},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
        {"type": "DELETED", "object": _deployment("a", replicas=3, rv="16")},
    ]
    lister = FakeLister([_page([_deployment("a")])], [events])
    changes: list = []
    reflector = _reflector(lister, changes)
    reflector.relist()
    assert reflector.watch("10") == "16"
    assert changes == [("a", False, False), ("a", False, True), ("a", True, True)]
    assert reflector.store.get(("ml", "a")) is None
    query = lister.watch_queries[0]
    assert query["resourceVersion"] == "10" and query["allowWatchBookmarks"] == "true"


def test_a_410_relists_and_hands_on_what_changed_meanwhile_including_deletions():
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
    stop = threading.Event()
    lister = FakeLister(
        [_page([_deployment("a"), _deployment("b")]),
         _page([_deployment("a", replicas=2), _deployment("c")], rv="30")],
        [[gone], kube.KubeError("watch: connection reset", None), []])
    changes: list = []
    reflector = _reflector(lister, changes, stop)

    def stop_after_the_third_watch(path, query, read_timeout, _watch=lister.watch):
        if len(lister.watch_queries) == 2:
            stop.set()
        yield from _watch(path, query, read_timeout)

    lister.watch = stop_after_the_third_watch
    reflector.run()
    assert reflector.relists == 2
    assert sorted(changes) == [("a", False, True), ("b", True, True), ("c", False, True)]
    # The broken stream resumed from the relist's resourceVersion, without another list.
    assert [q["resourceVersion"] for q in lister.watch_queries] == ["10", "30", "30"]


def test_a_relist_of_one_namespace_leaves_the_others_alone():
    store = Store()
    store.put(projection("Deployment", _deployment("a", namespace="one")))
    store.put(projection("Deployment", _deployment("b", namespace="two")))
    changes = store.replace([], namespace="one")
    assert [(view["metadata"]["name"], deleted) for view, deleted in changes] == [("a", True)]
    assert store.get(("two", "b")) is not None


def test_pods_are_grouped_by_their_irismodel_and_regrouped_when_relabelled():
    store = Store()

    def pod(name, instance):
        return projection("Pod", {"metadata": {"name": name, "namespace": "ml",
                                               "labels": names.child_labels(instance)}, "status": {}})

    store.put(pod("p1", "iris"))
    store.put(pod("p2", "iris"))
    store.put(pod("p1", "other"))
    assert [p["metadata"]["name"] for p in store.group(("ml", "iris"))] == ["p2"]
    store.pop(("ml", "p2"))
    assert store.group(("ml", "iris")) == [] and len(store.group(("ml", "other"))) == 1


def test_only_childrens_changes_are_handed_on_pods_are_only_read():
    heard = []
    cache = WatchCache(lister=None, on_change=lambda kind, *rest: heard.append(kind))
    for reflector in cache.reflectors:
        reflector.on_change(reflector.source.kind, {"metadata": {"namespace": "ml", "name": "x"}}, False, True)
    assert sorted(heard) == sorted(kind for kind in WATCHED if kind != POD) and POD in WATCHED


def test_one_source_per_kind_cluster_wide_and_per_namespace_otherwise():
    assert {s.path for s in sources((), "x=y") if s.kind == "Deployment"} == {"/apis/apps/v1/deployments"}
    assert {s.path for s in sources(("a", "b"), "x=y") if s.kind == "Pod"} == {
        "/api/v1/namespaces/a/pods", "/api/v1/namespaces/b/pods"}
    cache = WatchCache(lister=None, on_change=lambda *change: None, namespaces=("a",))
    assert not cache.synced("Deployment")
    for reflector in cache.reflectors:
        reflector.synced.set()
    assert cache.synced("Deployment")


# ---- leadership -------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _record(priority: int, seconds_ago: float = 0, lifetime: int = 60) -> dict:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seconds_ago)).isoformat()}


def test_kopfs_rule_a_live_peer_with_a_priority_at_least_ours_outranks_us():
    assert not outranked({"me": _record(5), "b": _record(3)}, "me", 5, NOW)
    assert outranked({"me": _record(5), "b": _record(7)}, "me", 5, NOW)
    assert outranked({"me": _record(5), "b": _record(5)}, "me", 5, NOW)  # kopf pauses both on a tie
    assert not outranked({"me": _record(5), "b": _record(7, seconds_ago=61)}, "me", 5, NOW)  # expired
    assert outranked({"me": _record(5), "b": {"priority": 9}}, "me", 5, NOW)  # no lastseen: kopf says "now"


class PeeringReader:
    def __init__(self, status):
        self.status, self.paths = status, []

    def get(self, path, query):
        self.paths.append(path)
        if isinstance(self.status, Exception):
            raise self.status
        return {"status": self.status}


def test_leadership_follows_the_peering_object_and_reports_becoming_active():
    reader = PeeringReader({"b": _record(9)})
    leadership = Leadership("irisop", "me", 5, reader=reader, now=lambda: NOW)
    gained: list = []
    leadership._on_gain = lambda: gained.append(1)  # what start() stores, without its polling thread
    assert not leadership.active()  # standby until the peering object says otherwise
    assert not leadership.poll()  # our record is not written yet
    reader.status = {"me": _record(5), "b": _record(9)}
    assert not leadership.poll()
    reader.status = {"me": _record(5), "b": _record(9, seconds_ago=120)}  # the leader is gone
    assert leadership.poll() and gained == [1]
    reader.status = kube.KubeError("GET: 503", 503)
    assert leadership.poll() and gained == [1]  # an API error keeps the answer
    assert reader.paths[0] == "/apis/kopf.dev/v1/clusterkopfpeerings/irisop"


def test_an_answer_older_than_fresh_is_read_again_before_it_is_used():
    # Work queued while this replica led must not run on once kopf paused it.
    reader, clock = PeeringReader({"me": _record(5)}), [100.0]
    leadership = Leadership("irisop", "me", 5, reader=reader, fresh=1.0, now=lambda: NOW, clock=lambda: clock[0])
    assert leadership.active() and len(reader.paths) == 1
    reader.status = {"me": _record(5), "b": _record(9)}  # a peer with a higher priority arrived
    clock[0] += 0.5
    assert leadership.active() and len(reader.paths) == 1  # fresh enough: no read
    clock[0] += 1.0
    assert not leadership.active() and len(reader.paths) == 2  # stale: read again, and now outranked
    reader.status = {"me": _record(5)}  # the peer left
    clock[0] += 5.0
    assert not leadership.cached() and len(reader.paths) == 2  # cached(): the last answer, never a read


def test_without_peering_the_one_replica_is_always_active():
    assert Leadership("", "me", 0).active()
    assert peering_paths("p", ("a", "b")) == ["/apis/kopf.dev/v1/namespaces/a/kopfpeerings/p",
                                              "/apis/kopf.dev/v1/namespaces/b/kopfpeerings/p"]
