# The irismodel-operator image: `irisop operator run` as uid 10001.
#
#   podman build --format docker -t irisop/operator:0.1.0 .   # OCI format drops HEALTHCHECK
#   podman build --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt ...   # behind a TLS-inspecting proxy
#   podman build --build-arg BASE_IMAGE=python:3.11-slim-bookworm@sha256:<digest> ...  # pin by digest
#
# Two stages: the builder installs the package into a venv; the final stage
# gets only that venv, no pip cache, compilers or sources.

# Pin by digest in release builds (see the build-arg above): the digest is
# resolved by the release job, which can reach the registry; a digest cannot be
# verified from an offline checkout, so the default is the version tag.
ARG BASE_IMAGE=python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7:FROM uses ARG BASE_IMAGE, whose default above is a version tag (release builds pass a digest); checkov does not expand ARG defaults

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/irisop
WORKDIR /src
# README.m[d]: copied when present (setup.cfg reads it as the long description).
COPY pyproject.toml setup.cfg README.m[d] ./
COPY operator/ operator/
COPY serving/ serving/
COPY model/ model/
COPY deploy/ deploy/
# An extra CA bundle is a build secret, never a layer: corporate proxies need it, images must not carry it.
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    /opt/irisop/bin/pip install --no-compile . \
    && /opt/irisop/bin/pip uninstall --yes pip setuptools wheel

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
    MPLCONFIGDIR=/tmp/.matplotlib \
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
