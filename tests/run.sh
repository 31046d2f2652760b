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
"$venv/bin/python" -m pytest --timeout=900 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
