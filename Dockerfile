# The irismodel-operator image: `irisop operator run` as uid 10001, with only
# what the operator imports (the `operator` extra: kopf, kubernetes, boto3,
# requests, prometheus-client). No BentoML, scikit-learn or matplotlib.
#
# Built by the project's own tooling (irisop_deploy.images.operatorimage, used
# by `irisop up` and `irisop cluster create`) with podman or buildah, on the
# project's own Debian base image (irisop_deploy.images.baseimage): no Docker
# Hub. By hand:
#
#   podman build --format docker \
#     --build-arg BASE_IMAGE=localhost/irisop/python-base:bookworm \
#     --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt \   # behind a TLS-inspecting proxy
#     -t irisop/operator:dev .
#
# Two stages: the builder installs into a venv (dependencies first, in a
# layer of their own, so a source change rebuilds only the last small layer);
# the final stage gets only that venv: no pip cache, no sources.

# Any image with Debian's python3 and python3-venv works; release builds pass
# a digest (BASE_IMAGE=registry/...@sha256:...).
ARG BASE_IMAGE=localhost/irisop/python-base:bookworm
# checkov:skip=CKV_DOCKER_7:FROM uses ARG BASE_IMAGE, a locally built base by default (release builds pass a digest); checkov does not expand ARG defaults

FROM ${BASE_IMAGE} AS builder
ARG EXTRA=operator
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/irisop
WORKDIR /src
COPY pyproject.toml setup.cfg constraints.txt ./
# The extra's requirements, read from setup.cfg, pinned by constraints.txt.
# An extra CA bundle is a build secret, never a layer: corporate proxies need
# it, images must not carry it.
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    /opt/irisop/bin/python -c "import configparser, sys; c = configparser.ConfigParser(); c.read('setup.cfg'); \
reqs = [r for r in c['options.extras_require'][sys.argv[1]].splitlines() if r.strip() and not r.startswith('irismodel-operator')]; \
open('/tmp/reqs.txt', 'w').write('\n'.join(reqs + c['options'].get('install_requires', '').split()))" "$EXTRA" \
    && /opt/irisop/bin/pip install --no-compile -c constraints.txt -r /tmp/reqs.txt "setuptools>=68" wheel
# README.m[d]: copied when present (setup.cfg reads it as the long description).
COPY README.m[d] ./
COPY operator/ operator/
COPY serving/ serving/
COPY model/ model/
COPY deploy/ deploy/
# No network from here on: the build backend came with the dependencies.
RUN /opt/irisop/bin/pip install --no-compile --no-deps --no-build-isolation . \
    && /opt/irisop/bin/pip uninstall --yes pip setuptools wheel \
    && find /opt/irisop -name '__pycache__' -prune -exec rm -rf {} + \
    && find /opt/irisop -path '*/site-packages/*/tests' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="irismodel-operator" \
      org.opencontainers.image.description="Kubernetes operator serving scikit-learn Iris models from S3 with BentoML" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 irisop \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin irisop
COPY --from=builder /opt/irisop /opt/irisop
# HOME and caches under /tmp: the pod runs with a read-only root and an emptyDir on /tmp.
ENV PATH=/opt/irisop/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
# kopf's liveness endpoint (the operator runs with --liveness=http://0.0.0.0:8080/healthz).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3).status != 200)"]
ENTRYPOINT ["irisop", "operator", "run"]
CMD ["--liveness=http://0.0.0.0:8080/healthz"]
