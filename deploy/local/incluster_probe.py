"""A prediction made from inside the cluster, to `status.url`.

What a client pod sees: the Service's DNS name resolved by CoreDNS, then the
ClusterIP through kube-proxy. A short-lived pod using the serving image
(it has Python) POSTs the reference rows and prints the answer; its log is
the result. Pure manifest builder, plus one function that runs it.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

# The script the pod runs: stdlib only, prints one JSON line or the error.
_SCRIPT = """
import json, sys, urllib.request
url, body = sys.argv[1], sys.argv[2].encode()
req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
for attempt in range(20):
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            print(json.dumps({"status": resp.status, "body": json.loads(resp.read())}))
            sys.exit(0)
    except Exception as exc:  # the probe reports any failure as its result
        last = repr(exc)
        import time; time.sleep(0.5)
print(json.dumps({"error": last}))
sys.exit(1)
"""


class ProbeError(RuntimeError):
    """The in-cluster prediction did not succeed; the message has the pod's output."""


def probe_pod(name: str, namespace: str, image: str, url: str, rows: list[list[float]]) -> dict[str, Any]:
    """The probe pod (pure): non-root, read-only, no service-account token."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "irisop-probe"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["python3", "-c", _SCRIPT, url, json.dumps({"rows": rows})],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def predict_from_pod(api: Any, namespace: str, image: str, url: str, rows: list[list[float]],
                     timeout: float = 90.0) -> dict[str, Any]:
    """Run the probe pod to completion; return the answer's JSON body."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = f"irisop-probe-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_pod(namespace, probe_pod(name, namespace, image, url, rows))
    try:
        deadline = time.monotonic() + timeout
        phase = "Pending"
        while time.monotonic() < deadline:
            phase = core.read_namespaced_pod(name, namespace).status.phase
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        log = core.read_namespaced_pod_log(name, namespace) if phase in ("Succeeded", "Failed") else ""
        lines = [line for line in str(log).splitlines() if line.startswith("{")]
        result = json.loads(lines[-1]) if lines else {}
        if phase != "Succeeded" or "body" not in result:
            raise ProbeError(f"in-cluster POST {url} from pod {name}: phase {phase}, output {log.strip()[-500:]!r}")
        return result["body"]
    finally:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
