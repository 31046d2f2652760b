#!/usr/bin/env bash
# The project's test command: install what the tests need, then run them all.
# Unit tests need no services; integration tests start their own (etcd,
# kube-apiserver, moto_server, docker-registry, podman) through fixtures.
# Extra arguments go to pytest, e.g. `tests/run.sh tests/unit -q`.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bash deploy/local/bootstrap.sh --with-kops --with-test-tools || exit $?

# The project's venv (made by bootstrap.sh), never the system Python. Its bin
# directory goes first on PATH so the tools it installed (moto_server,
# bentoml) are the ones the tests find.
venv="${IRISOP_VENV:-$repo/.venv}"
export PATH="$venv/bin:$PATH"
run_pytest() {
  "$venv/bin/python" -m pytest --timeout=900 "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
    return 1
  fi
  return "$rc"
}

# Tests that bring up the machine's one local stack (`irisop up`, marker
# whole_stack) cannot share a session with the tests that run their own node
# on the session's control plane (one kubelet/containerd per machine): they
# get a session of their own, after the first has stopped its node. With
# arguments, pytest runs exactly what was asked.
if [ $# -gt 0 ] && [[ "$*" != -* || "$*" =~ (^| )tests/ ]]; then
  run_pytest "$@"
  exit $?
fi
run_pytest -m "not whole_stack" "$@"
rc=$?
run_pytest -m whole_stack "$@"
rc2=$?
[ "$rc" -ne 0 ] && exit "$rc"
exit "$rc2"
