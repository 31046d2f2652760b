"""Image build tooling: what `irisop images`, the local stack and the AWS bootstrap run.

- ``baseimage``: the Debian bookworm Python base and the buildah builder image (debootstrap, no Docker Hub);
- ``runtime``: the BentoML runtime image (bentoml build + buildah), keyed by its content;
- ``buildjob`` / ``incluster``: the same build as a buildah Job in a cluster;
- ``operatorimage``: the operator's own image from the repository's Dockerfile;
- ``cli``: `irisop images`.

Kept out of the running operator on purpose: the operator only layers a model
onto a runtime image that already exists (``irisop_operator.images``). Imports
run one way: this package -> irisop_operator -> irisop_serving.contract.
``runtime.Containerfile`` beside these modules is package data.
"""
