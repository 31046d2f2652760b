"""The operator process's shared state (operator/runtime.py) and its seams, without a cluster.

One Runtime is built by the startup handler and kept in kopf's memo; the
Kubernetes seam is one Protocol that the HTTP implementation and the unit
tests' fake both follow; the watch cache keeps only what the steps read.
"""
from __future__ import annotations

import copy
import inspect
import json

import kopf

from irisop_operator import handlers, kube, names
from irisop_operator.builders import Owner, build_children
from irisop_operator.runtime import Runtime, WatchedKube
from irisop_operator.watchcache import Store, WatchCache, projection
from irisop_operator.settings import Settings
from irisop_operator.spec import parse_spec
from tests.unit.test_reconcile import FakeAPI

SHA = "1" * 64
IMAGE = "reg.local/iris@sha256:" + SHA


def _protocol_methods() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(kube.KubeIO).items()
            if callable(fn) and not name.startswith("_")}


def test_the_api_server_and_the_fake_implement_the_one_protocol():
    wanted = _protocol_methods()
    assert set(wanted) == {"live", "apply", "delete", "patch_status", "post_event", "list_pods", "pod_log_tail",
                           "read_secret"}
    for implementation in (kube.ApiServer, WatchedKube, FakeAPI):
        for name, signature in wanted.items():
            have = inspect.signature(getattr(implementation, name))
            assert list(have.parameters) == list(signature.parameters), (implementation, name)


def test_startup_keeps_one_runtime_in_kopfs_memo(monkeypatch):
    monkeypatch.setattr(handlers, "get_settings", lambda: Settings(metrics_port=0))
    monkeypatch.setattr(Runtime, "start", lambda self, namespaces=(): None)  # no cluster to watch here
    memo = kopf.Memo()
    handlers.configure(settings=kopf.OperatorSettings(), memo=memo)
    runtime = memo.runtime
    assert isinstance(runtime, Runtime)
    # kopf gives each object a shallow copy of the operator-wide memo: the same Runtime.
    assert copy.copy(memo).runtime is runtime
    assert not [name for name, value in vars(handlers).items() if isinstance(value, (Runtime, dict)) and
                not name.startswith("__")], "process state must live in the memo, not in module globals"


def test_no_change_handler_is_registered_so_kopf_builds_no_diff_base(monkeypatch):
    # kopf's change handlers read the diff-base that NoDiffBase does not build:
    # adding one must fail here, not silently never fire.
    registry = kopf.get_default_registry()
    resource = kopf.Resource(names.GROUP, names.VERSION, names.PLURAL, kind=names.KIND, namespaced=True)
    assert registry._watching.has_handlers(resource=resource)  # the one event handler is seen
    assert not registry._changing.has_handlers(resource=resource)
    assert not registry._spawning.has_handlers(resource=resource)
    monkeypatch.setattr(handlers, "get_settings", lambda: Settings(metrics_port=0))
    monkeypatch.setattr(Runtime, "start", lambda self, namespaces=(): None)
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings, memo=kopf.Memo())
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, handlers.NoDiffBase)
    body = kopf.Body({"metadata": {"name": "iris", "annotations": {"x": "y"}}, "spec": {"a": 1}, "status": {}})
    assert storage.build(body=body) is None and storage.fetch(body=body) is None


def _deployment_body() -> dict:
    owner = Owner(name="iris", namespace="ml", uid="u1")
    desired = build_children(owner, parse_spec({"model": {"uri": "s3://b/iris/"}}), IMAGE, SHA)["Deployment"]
    live = copy.deepcopy(desired)
    live["metadata"].update({
        "uid": "d1", "generation": 3, "resourceVersion": "77", "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": names.FIELD_MANAGER, "fieldsV1": {"f:spec": {"x": "y" * 5000}}}]})
    live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "z" * 5000
    live["metadata"]["labels"]["someone-else"] = "x"
    live["status"] = {"observedGeneration": 3, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                      "availableReplicas": 1, "conditions": [], "collisionCount": 0}
    return live


def test_the_watch_cache_keeps_only_the_fields_the_steps_read():
    live = _deployment_body()
    view = projection("Deployment", live)
    assert "managedFields" not in view["metadata"] and "resourceVersion" not in view["metadata"]
    assert "kubectl.kubernetes.io/last-applied-configuration" not in view["metadata"]["annotations"]
    assert "someone-else" not in view["metadata"]["labels"]
    assert "collisionCount" not in view["status"]
    assert len(json.dumps(view)) < len(json.dumps(live)) / 3
    # ...and that is enough for drift detection and readiness.
    from irisop_operator.conditions import observe_rollout
    from irisop_operator.drift import needs_apply

    desired = build_children(Owner(name="iris", namespace="ml", uid="u1"),
                             parse_spec({"model": {"uri": "s3://b/iris/"}}), IMAGE, SHA)["Deployment"]
    assert not needs_apply(desired, view)
    assert observe_rollout(view, IMAGE) == observe_rollout(live, IMAGE)
    drifted = copy.deepcopy(live)
    drifted["spec"]["replicas"] = 4
    assert needs_apply(desired, projection("Deployment", drifted))


def test_a_child_event_that_changes_nothing_read_schedules_no_resync():
    store = Store()
    live = _deployment_body()
    assert store.put(projection("Deployment", live))  # first sight
    assert not store.put(projection("Deployment", live))
    other = copy.deepcopy(live)
    other["metadata"]["resourceVersion"] = "78"
    other["metadata"]["labels"]["someone-else"] = "y"  # not ours
    other["metadata"]["managedFields"] = []
    assert not store.put(projection("Deployment", other))
    progressed = copy.deepcopy(other)
    progressed["status"]["readyReplicas"] = 0  # status we read
    assert store.put(projection("Deployment", progressed))
    edited = copy.deepcopy(progressed)
    edited["spec"]["replicas"] = 4  # drift
    assert store.put(projection("Deployment", edited))


def test_child_changes_resync_the_parent_only_when_they_change_something_and_this_replica_leads():
    class Leader:
        active_now = True

        def cached(self):
            return self.active_now

        def start(self, on_gain):
            pass

    leader = Leader()
    runtime = Runtime(Settings(), kube_io=WatchedKube(), leadership=leader)
    submitted = []
    runtime.settle.submit = lambda key, value, delay=None: submitted.append(key)
    view = projection("Deployment", _deployment_body())
    runtime.child_change("Deployment", view, deleted=False, changed=False)
    assert submitted == []
    runtime.child_change("Deployment", view, deleted=False, changed=True)
    assert submitted == [("ml", "iris")]
    leader.active_now = False
    runtime.child_change("Deployment", view, deleted=True, changed=True)
    assert submitted == [("ml", "iris")]


def test_models_unseen_counts_cached_models_not_reconciled_since_start():
    class Index(dict):
        pass

    runtime = Runtime(Settings(), kube_io=WatchedKube())
    assert runtime.models_unseen() == -1  # no handler has run: the watch caches may still be filling
    models = Index({("ml", f"m{i}"): [{"metadata": {"namespace": "ml", "name": f"m{i}", "uid": f"u{i}"},
                                       "spec": {}, "status": {}}] for i in range(3)})
    runtime.kube.attach({"irismodels": models})
    assert runtime.models_unseen() == 3
    runtime._handled[("ml", "m0", "u0")] = 1
    assert runtime.models_unseen() == 2
    runtime.forget("ml", "m0")
    assert runtime.models_unseen() == 3


def test_serving_pods_come_from_the_watch_cache_not_a_list_request():
    def pod(name: str, instance: str, **status) -> dict:
        return projection("Pod", {
            "metadata": {"name": name, "namespace": "ml", "labels": names.child_labels(instance),
                         "annotations": {names.ANNOTATION_MODEL_SHA: SHA}, "managedFields": [{"x": "y"}]},
            "spec": {"containers": [{"name": "predictor", "image": IMAGE}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", **status}})

    kube_io = WatchedKube()
    kube_io.cache = WatchCache(lister=None, on_change=lambda *change: None)  # filled by hand, never started
    for reflector in kube_io.cache.reflectors:
        reflector.synced.set()
    for view in (pod("iris-a", "iris"), pod("iris-b", "iris"), pod("other-a", "other")):
        kube_io.cache.stores["Pod"].put(view)
    found = kube_io.list_pods("ml", names.selector_string("iris"))
    assert [p["metadata"]["name"] for p in found] == ["iris-a", "iris-b"]
    assert "spec" not in found[0] and "podIP" not in found[0]["status"] and "managedFields" not in found[0]["metadata"]
    assert kube_io.list_pods("other-ns", names.selector_string("iris")) == []


class _Queue:
    """Stands in for the reconcile queue: records what was submitted."""

    def __init__(self):
        self.submitted: list[tuple] = []
        self.background: list[bool] = []

    def submit(self, key, value, delay=None, background=False):
        self.submitted.append((key, value["metadata"]["generation"], delay))
        self.background.append(background)

    def pending(self):
        return len(self.submitted)


class _Reconciler:
    def __init__(self, fail=None):
        self.fail, self.calls, self.forgotten = fail, [], []

    def reconcile(self, body):
        self.calls.append(body["metadata"]["generation"])
        if self.fail:
            raise self.fail

    def forget(self, namespace, name):
        self.forgotten.append((namespace, name))


def _model(generation: int) -> dict:
    return {"metadata": {"namespace": "ml", "name": "iris", "uid": "u1", "generation": generation,
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"model": {"uri": "s3://b/iris/"}}, "status": {}}


def _runtime(fail=None) -> Runtime:
    runtime = Runtime(Settings(), kube_io=WatchedKube())
    runtime.work, runtime.reconciler = _Queue(), _Reconciler(fail)
    return runtime


def test_only_a_generation_not_yet_reconciled_queues_a_reconcile():
    runtime = _runtime()
    runtime.model_event(None, _model(1))  # start-up listing: the resume pass
    assert runtime.work.submitted == [(("ml", "iris"), 1, None)]
    runtime.reconcile_latest(projection(names.KIND, _model(1)))
    assert runtime.reconciler.calls == [1]
    runtime.model_event("MODIFIED", _model(1))  # our own status write, or a label
    assert len(runtime.work.submitted) == 1
    runtime.model_event("MODIFIED", _model(2))  # a new spec
    assert runtime.work.submitted[-1] == (("ml", "iris"), 2, None)
    runtime.reconcile_latest(projection(names.KIND, _model(1)))  # a stale body changes nothing
    assert runtime.reconciler.calls == [1]
    runtime.model_event("DELETED", _model(2))
    assert runtime.reconciler.forgotten == [("ml", "iris")]


def test_a_transient_failure_is_retried_with_backoff_and_a_permanent_one_waits_for_the_spec():
    from irisop_operator.pipeline import ArtifactError

    runtime = _runtime(fail=ArtifactError("S3Unreachable", "connection refused", transient=True))
    runtime.reconcile_latest(projection(names.KIND, _model(1)))
    runtime.reconcile_latest(projection(names.KIND, _model(1)))
    assert [delay for _, _, delay in runtime.work.submitted] == [5, 10]
    runtime.reconciler.fail = ArtifactError("ChecksumMismatch", "not the pinned sha256")
    runtime.reconcile_latest(projection(names.KIND, _model(1)))
    assert len(runtime.work.submitted) == 2  # no retry
    runtime.model_event("MODIFIED", _model(1))
    assert len(runtime.work.submitted) == 2  # the same spec is not tried again
    runtime.model_event("MODIFIED", _model(2))
    assert runtime.work.submitted[-1][:2] == (("ml", "iris"), 2)


def test_after_a_start_a_new_change_goes_before_the_resume_of_finished_objects():
    from irisop_operator.runtime import RESUME_DELAY

    runtime = _runtime()
    finished = _model(3)
    finished["status"] = {"observedGeneration": 3}
    runtime.model_event(None, finished)  # listed at start, finished by the previous process
    runtime.model_event(None, _model(1))  # created or changed while no operator ran
    assert [delay for _, _, delay in runtime.work.submitted] == [RESUME_DELAY, None]
    assert runtime.work.background == [True, False]  # and in the queue's background lane


def test_a_queued_reconcile_or_resync_does_nothing_on_a_replica_that_no_longer_leads():
    class Standby:
        def active(self):
            return False

        def start(self, on_gain):
            pass

    runtime = Runtime(Settings(), kube_io=WatchedKube(), leadership=Standby())
    ran = []
    runtime.reconciler.reconcile = lambda body: ran.append("reconcile")
    runtime.reconciler.resync_children = lambda body: ran.append("resync")
    body = {"metadata": {"namespace": "ml", "name": "iris", "uid": "u1", "generation": 1}, "spec": {}}
    runtime.kube.model = lambda namespace, name: body
    runtime.reconcile_latest(body)
    runtime.resync_latest(("ml", "iris"))
    assert ran == []
    assert runtime._handled_generation(body["metadata"]) is None  # not marked done: the leader does it


def test_becoming_the_leader_reconciles_what_was_left_and_resyncs_the_rest():
    runtime = Runtime(Settings(), kube_io=WatchedKube())
    done = {"metadata": {"namespace": "ml", "name": "done", "uid": "u1", "generation": 2}}
    left = {"metadata": {"namespace": "ml", "name": "left", "uid": "u2", "generation": 1}}
    runtime._handled[("ml", "done", "u1")] = 2
    runtime.kube.models = lambda: [done, left]
    reconciles, resyncs = [], []
    runtime.work.submit = lambda key, value, delay=None: reconciles.append(key)
    runtime.settle.submit = lambda key, value, delay=None: resyncs.append(key)
    runtime.resync_all()
    assert reconciles == [("ml", "left")] and resyncs == [("ml", "done")]
