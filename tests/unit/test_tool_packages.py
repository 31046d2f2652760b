"""Every external tool the code and the tests run comes from a package bootstrap.sh installs.

CI once ran on the machine the code was written on, which had catatonit;
bootstrap.sh installs with --no-install-recommends and left it out, so
`podman run --init` failed on the first fresh machine. This asks dpkg, on this
machine, which package ships each tool, and fails unless that package is in
bootstrap.sh's APT_PACKAGES or is part of every Debian system (priority
"required", what `debootstrap --variant=minbase` installs).

TOOLS is checked against the code too: a literal command (``["podman", ...]``,
``shutil.which("etcd")``, ``system_binary("runc", ...)``) found in the code or
the tests and missing from TOOLS (and from the project-built and venv tools
below) fails the scan test, so the table cannot silently fall behind.
"""
from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from tests.fixtures.tools import run

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "deploy" / "local" / "bootstrap.sh"
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# tool (name on PATH, or an absolute path) -> what runs it
TOOLS: dict[str, str] = {
    "podman": "model-image and runtime-image tests, the runtime image's smoke run",
    "buildah": "the runtime image build (deploy/images/runtime.Containerfile)",
    "skopeo": "copying images between registries (tests, irisop up)",
    "runc": "podman's and containerd's OCI runtime",
    "/usr/libexec/podman/catatonit": "`podman run --init`",
    "newuidmap": "podman's user namespaces (uidmap)",
    "etcd": "the control plane's datastore",
    "docker-registry": "the local OCI registry",
    "debootstrap": "the Python base image",
    "conntrack": "kube-proxy on the local node",
    "iptables": "kube-proxy and the CNI portmap plugin",
    "socat": "kubectl port-forward on the local node",
    "/usr/lib/cni/bridge": "the local node's pod network",
    "/usr/lib/cni/host-local": "the local node's pod IPAM",
    "/usr/lib/cni/portmap": "hostPort mappings on the local node",
    "wrk": "the serving and local-cluster benchmarks",
    "htpasswd": "the registry's basic auth in tests",
    "ip": "the local node's bridge and the stack's own interface",
    "ss": "which addresses the stack's services listen on (tests)",
    "modprobe": "br_netfilter for the local node",
    "taskset": "pinning benchmark servers to a CPU",
    "tar": "base-image rootfs tarballs",
    "umount": "cleaning up the local node's mounts",
    "sh": "shell snippets (in-cluster build script checks)",
    "env": "running tools with a clean environment",
    "cat": "container smoke checks",
    "sleep": "placeholder processes in tests",
    "nice": "process-identity tests",
    "true": "process-identity tests",
    "dpkg": "this test",
    "dpkg-query": "this test",
}
# Provided by the machine this project targets (Debian bookworm with Python
# 3.11 and Go 1.26), not by the project: they run bootstrap.sh itself, and
# git made the checkout it runs from (benchmarks/serving_app.py reads the
# baseline revision with it).
MACHINE = {"python3", "go", "bash", "git"}
# Built by the project from the Go module proxy, or installed into its venv.
PROJECT_BUILT = {"kubectl", "kops", "kube-apiserver", "kubelet", "containerd", "metrics-server", "coredns"}
VENV = {"irisop", "bentoml", "moto_server", "py-spy"}

# Literal commands in the code: the first element of an argv list, or a lookup by name.
_COMMAND = re.compile(r"""(?:(?:\brun|Popen|check_call|check_output|_run)\(\s*\[|argv\s*=\s*\[|"""
                      r"""(?:which|system_binary|require_tool)\()\s*["']([a-z][a-zA-Z0-9_.-]*)["']""")


def apt_packages_in_order() -> list[str]:
    text = BOOTSTRAP.read_text()
    block = re.search(r"^APT_PACKAGES=\((.*?)\)", text, re.S | re.M)
    assert block, "APT_PACKAGES=(...) not found in bootstrap.sh"
    return block.group(1).split()


def apt_packages() -> set[str]:
    return set(apt_packages_in_order())


def _dpkg_owner(path: str) -> str | None:
    # usrmerge: dpkg may know /bin/ip while PATH finds /usr/sbin/ip, so try each spelling.
    resolved = str(Path(path).resolve())
    candidates = []
    for p in (path, resolved):
        candidates += [p, re.sub(r"^/usr/", "/", p), re.sub(r"^/(s?bin)/", r"/usr/\1/", p)]
        candidates += [re.sub(r"/s?bin/", "/bin/", c) for c in list(candidates)]
        candidates += [re.sub(r"/bin/", "/sbin/", c) for c in list(candidates)]
    for candidate in dict.fromkeys(candidates):
        out = run(["dpkg", "-S", candidate], check=False)
        owners = [line.split(":", 1)[0].split(",")[0].strip() for line in out.stdout.splitlines()
                  if ":" in line and not line.startswith("diversion ")]
        if out.returncode == 0 and owners:
            return owners[0]
    return None


def _required_packages() -> set[str]:
    out = run(["dpkg-query", "-W", "-f", "${Package} ${Priority} ${Essential}\\n"]).stdout
    return {line.split()[0] for line in out.splitlines()
            if len(line.split()) >= 2 and (line.split()[1] == "required" or line.split()[-1] == "yes")}


@pytest.fixture(scope="module")
def dpkg() -> None:
    if shutil.which("dpkg") is None:
        pytest.skip("not a Debian system: dpkg is needed to map tools to packages")


def test_every_tool_comes_from_bootstrap_or_the_base_system(dpkg: None) -> None:
    allowed = apt_packages() | _required_packages()
    problems = []
    for tool, why in TOOLS.items():
        path = tool if tool.startswith("/") else shutil.which(tool, path=SEARCH_PATH)
        if path is None or not Path(path).exists():
            problems.append(f"{tool} ({why}): not installed here; which package ships it?")
            continue
        owner = _dpkg_owner(path)
        if owner is None:
            problems.append(f"{tool} ({why}): {path} belongs to no Debian package")
        elif owner not in allowed:
            problems.append(f"{tool} ({why}): from {owner}, which bootstrap.sh does not install")
    assert problems == [], "\n".join(problems)


def test_catatonit_is_in_the_apt_list() -> None:
    # The one that bit a fresh machine (issue 11): podman only recommends it.
    assert "catatonit" in apt_packages()


def test_every_command_the_code_runs_is_accounted_for() -> None:
    known = {Path(t).name for t in TOOLS} | MACHINE | PROJECT_BUILT | VENV
    found: dict[str, str] = {}
    for folder in ("operator", "serving", "model", "deploy", "tests", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            for name in _COMMAND.findall(path.read_text()):
                found.setdefault(name, str(path.relative_to(REPO)))
    unaccounted = {name: where for name, where in found.items()
                   if name not in known and shutil.which(name, path=SEARCH_PATH)}
    assert unaccounted == {}, f"add these to TOOLS (and their package to bootstrap.sh): {unaccounted}"


def test_apt_packages_are_listed_once() -> None:
    # A duplicate hides which concern still needs a package when another drops it.
    names = apt_packages_in_order()
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


def test_tests_shell_out_through_the_shared_runner() -> None:
    # A bare subprocess.run(check=True) reports "exit status 125" and drops the
    # tool's own message (issue 11 item 0): tests call tests.fixtures.tools.run.
    # Popen (long-running processes) is not a one-shot command and is allowed.
    wrong = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if path == REPO / "tests" / "fixtures" / "tools.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"
                    and node.func.attr in {"run", "call", "check_call", "check_output"}):
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno}: subprocess.{node.func.attr}")
    assert wrong == [], "use tests.fixtures.tools.run:\n" + "\n".join(wrong)
