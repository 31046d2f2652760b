"""A small client for the OCI distribution API: exactly the calls a model image needs.

Why not a library: ``oras`` (oras-py) was evaluated. It covers blob/manifest
upload and Basic/Bearer/ECR auth, but has no cross-repository blob mount (the
step that makes a model image cost one small upload instead of ~150 MB), reads
docker config files implicitly (the operator must use only the credentials it
was given), caches ECR tokens inside the client, and retries with sleeps we do
not control. The protocol subset used here is small (HEAD/GET manifest, HEAD
blob, POST mount, POST+PUT monolithic upload, PUT manifest) and is exercised
against a real registry in tests/integration/test_image_pipeline.py.

Auth follows the registry's ``WWW-Authenticate`` challenge: ``Basic`` sends the
credentials (ECR and htpasswd registries), ``Bearer`` trades them at the realm
for a token scoped to the repositories in play (Docker Hub style registries).
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import requests

from irisop_serving.contract import is_sha256

from ..conditions import REGISTRY_ERROR, REGISTRY_UNAUTHORIZED, REGISTRY_UNAVAILABLE, RUNTIME_NOT_FOUND
from ..pipeline import ImageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST)


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Reference:
    """registry/repository[:tag][@digest]."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> "Reference":
        name, _, digest = ref.partition("@")
        registry, slash, rest = name.partition("/")
        # Like docker: the first component is a registry only if it looks like a host.
        if not slash or not ("." in registry or ":" in registry or registry == "localhost"):
            raise ImageError(REGISTRY_ERROR, f"{ref!r} does not start with a registry host")
        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, _, tag = rest.rpartition(":")
        if not rest or rest != rest.lower():
            raise ImageError(REGISTRY_ERROR, f"{ref!r}: repository must be non-empty and lowercase")
        if digest and not (digest.startswith("sha256:") and is_sha256(digest[len("sha256:"):])):
            raise ImageError(REGISTRY_ERROR, f"{ref!r}: malformed digest")
        return cls(registry, rest, tag or None, digest or None)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` → ("bearer", {realm, service, ...})."""
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(params))


@dataclass
class RegistryClient:
    """One registry, one set of credentials, one push (create a new one per push)."""

    registry: str
    username: str = ""
    password: str = field(default="", repr=False)
    insecure: bool = False  # plain HTTP: loopback registries only
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session, repr=False)
    _auth: str | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.registry}/v2/"

    # -- transport -------------------------------------------------------
    def _send(self, method: str, url: str, headers: Mapping[str, str], **kwargs: Any) -> requests.Response:
        hdrs = dict(headers)
        if self._auth:
            hdrs["Authorization"] = self._auth
        try:
            return self.session.request(method, url, headers=hdrs, timeout=self.timeout, allow_redirects=True, **kwargs)
        except requests.RequestException as exc:
            raise ImageError(REGISTRY_UNAVAILABLE, f"{method} {url}: {exc}", transient=True) from exc

    def request(self, method: str, path: str, *, scopes: Iterable[str] = (), ok: Iterable[int] = (200,),
                headers: Mapping[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """One API call; on 401 answer the challenge once and retry."""
        url = path if path.startswith("http") else self.base + path
        headers = headers or {}
        resp = self._send(method, url, headers, **kwargs)
        if resp.status_code == 401:
            self._answer(resp.headers.get("WWW-Authenticate", ""), list(scopes))
            resp = self._send(method, url, headers, **kwargs)
        ok = tuple(ok)
        if resp.status_code in ok:
            return resp
        raise self._error(method, url, resp)

    def _answer(self, challenge: str, scopes: list[str]) -> None:
        scheme, params = parse_challenge(challenge)
        if not self.username:
            raise ImageError(REGISTRY_UNAUTHORIZED, f"{self.registry} wants credentials and none are configured")
        basic = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if scheme == "basic":
            if self._auth == basic:
                raise ImageError(REGISTRY_UNAUTHORIZED, f"{self.registry} rejected the credentials for {self.username!r}")
            self._auth = basic
            return
        if scheme == "bearer" and params.get("realm"):
            query: list[tuple[str, str]] = [("service", params["service"])] if "service" in params else []
            query += [("scope", s) for s in scopes]
            try:
                resp = self.session.get(params["realm"], params=query, headers={"Authorization": basic},
                                        timeout=self.timeout)
            except requests.RequestException as exc:
                raise ImageError(REGISTRY_UNAVAILABLE, f"token endpoint {params['realm']}: {exc}", transient=True) from exc
            if resp.status_code in (401, 403):
                raise ImageError(REGISTRY_UNAUTHORIZED, f"token endpoint refused {self.username!r}")
            if not resp.ok:
                raise ImageError(REGISTRY_UNAVAILABLE, f"token endpoint answered {resp.status_code}", transient=True)
            body = resp.json()
            token = body.get("token") or body.get("access_token")
            if not token:
                raise ImageError(REGISTRY_ERROR, "token endpoint returned no token")
            self._auth = f"Bearer {token}"
            return
        raise ImageError(REGISTRY_UNAUTHORIZED, f"{self.registry}: unsupported auth challenge {challenge!r}")

    def _error(self, method: str, url: str, resp: requests.Response) -> ImageError:
        detail = resp.text[:300].strip()
        if resp.status_code in (401, 403):
            return ImageError(REGISTRY_UNAUTHORIZED, f"{method} {url}: {resp.status_code} {detail}")
        if resp.status_code == 429 or resp.status_code >= 500:
            return ImageError(REGISTRY_UNAVAILABLE, f"{method} {url}: {resp.status_code} {detail}", transient=True)
        return ImageError(REGISTRY_ERROR, f"{method} {url}: {resp.status_code} {detail}")

    # -- manifests -------------------------------------------------------
    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """Digest of repo:ref, or None when it does not exist (HEAD: no body moved)."""
        resp = self.request("HEAD", f"{repo}/manifests/{ref}", scopes=[f"repository:{repo}:pull"],
                            ok=(200, 404), headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:  # registries may omit it on HEAD; fall back to hashing the body
            digest = self.get_manifest(repo, ref)[2]
        return digest

    def get_manifest(self, repo: str, ref: str) -> tuple[dict, str, str]:
        """(manifest, media type, digest of the exact bytes)."""
        resp = self.request("GET", f"{repo}/manifests/{ref}", scopes=[f"repository:{repo}:pull"],
                            ok=(200, 404), headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if resp.status_code == 404:
            raise ImageError(RUNTIME_NOT_FOUND, f"{self.registry}/{repo}:{ref} not found")
        body = resp.content
        digest = sha256_digest(body)
        if ref.startswith("sha256:") and digest != ref:
            raise ImageError(REGISTRY_ERROR, f"{repo}@{ref}: registry returned a manifest hashing to {digest}")
        doc = resp.json()
        media_type = doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
        return doc, media_type, digest

    def put_manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> str:
        resp = self.request("PUT", f"{repo}/manifests/{tag}", scopes=[f"repository:{repo}:pull,push"],
                            ok=(200, 201), data=body, headers={"Content-Type": media_type})
        digest = sha256_digest(body)
        returned = resp.headers.get("Docker-Content-Digest")
        if returned and returned != digest:
            raise ImageError(REGISTRY_ERROR, f"registry stored manifest as {returned}, expected {digest}")
        return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        self.request("DELETE", f"{repo}/manifests/{digest}", scopes=[f"repository:{repo}:*"], ok=(202, 200, 404))

    # -- blobs -------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", f"{repo}/blobs/{digest}", scopes=[f"repository:{repo}:pull"], ok=(200, 404))
        return resp.status_code == 200

    def get_blob(self, repo: str, digest: str) -> bytes:
        resp = self.request("GET", f"{repo}/blobs/{digest}", scopes=[f"repository:{repo}:pull"])
        if sha256_digest(resp.content) != digest:
            raise ImageError(REGISTRY_ERROR, f"{repo} blob {digest} failed verification")
        return resp.content

    def mount_blob(self, repo: str, digest: str, source_repo: str) -> bool:
        """Cross-repository mount: the registry links an existing blob, no bytes move.

        Returns False when the registry declined (it then opened an upload
        session, which we cancel) so the caller can copy the blob instead.
        """
        resp = self.request(
            "POST", f"{repo}/blobs/uploads/", ok=(201, 202),
            params={"mount": digest, "from": source_repo},
            scopes=[f"repository:{repo}:pull,push", f"repository:{source_repo}:pull"],
        )
        if resp.status_code == 201:
            return True
        location = resp.headers.get("Location")
        if location:
            self.request("DELETE", self._absolute(location), ok=(204, 200, 404),
                         scopes=[f"repository:{repo}:pull,push"])
        return False

    def upload_blob(self, repo: str, data: bytes, digest: str | None = None) -> str:
        """Monolithic upload (POST then PUT ?digest=); skipped when the blob exists."""
        digest = digest or sha256_digest(data)
        if self.blob_exists(repo, digest):
            return digest
        scopes = [f"repository:{repo}:pull,push"]
        start = self.request("POST", f"{repo}/blobs/uploads/", ok=(202,), scopes=scopes)
        location = start.headers.get("Location")
        if not location:
            raise ImageError(REGISTRY_ERROR, f"{self.registry} opened an upload without a Location")
        url = self._absolute(location)
        self.request("PUT", url, ok=(201,), scopes=scopes, params={"digest": digest}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        return digest

    def _absolute(self, location: str) -> str:
        if location.startswith("http"):
            return location
        return f"{'http' if self.insecure else 'https'}://{self.registry}{location}"
