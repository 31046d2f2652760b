"""What the real kops needs, besides moto_server, to plan a cluster offline.

Found by running kops 1.36.2 against moto (docs/aws-bootstrap.md, "kops
against moto"); each piece stands in for one thing that is not on loopback:

- `channel_amis`: the Ubuntu images kops' channel names (owner 099720109477),
  added to moto's own AMI list through MOTO_AMIS_PATH; kops resolves them
  with DescribeImages before anything else.
- `placeholder_hashes`: an HTTP server answering every `<file>.sha256` with a
  made-up hash. kops 1.36.2 carries hashes for Kubernetes up to 1.36.1 only;
  for 1.36.3 and for its own nodeup/protokube it reads
  `<url>.sha256` from dl.k8s.io / artifacts.k8s.io. The cluster spec points
  there through `spec.assets.fileRepository`. The hashes end up in user data
  that never boots, so nothing is weakened: a real run reads the real files.
- `warm_pool_fix`: moto 5.2 answers DescribeWarmPool for a group that does not
  exist yet with a 500 (IndexError in its backend); AWS answers
  ValidationError, which kops reads as "no warm pool". kops retries a 500 for
  minutes, so its Auto Scaling calls go through this proxy, which turns that
  one 500 into AWS's answer and passes everything else through unchanged.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import re
import threading
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

import requests

CANONICAL = "099720109477"


def channel_amis(channel: Path, dest: Path) -> Path:
    """moto's default AMIs plus every Canonical image the channel names; returns the JSON file."""
    default = resources.files("moto.ec2").joinpath("resources/amis.json.gz").read_bytes()
    amis = json.loads(gzip.decompress(default))
    names = sorted(set(re.findall(rf"name: ({CANONICAL}/\S+)", channel.read_text())))
    for number, full in enumerate(names):
        owner, _, name = full.partition("/")
        amis.append({
            "ami_id": f"ami-0ca{number:014x}", "state": "available", "public": True, "owner_id": owner,
            "image_location": full, "root_device_type": "ebs", "root_device_name": "/dev/sda1",
            "description": "kops channel image (test copy)", "image_type": "machine",
            "architecture": "arm64" if "arm64" in name else "x86_64", "name": name,
            "virtualization_type": "hvm", "hypervisor": "xen",
        })
    dest.write_text(json.dumps(amis))
    return dest


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def placeholder_hashes(asked: list[str]) -> Iterator[str]:
    """A file repository that knows a (made-up) hash for every file; records what kops asked for."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if not self.path.endswith(".sha256"):
                self.send_response(404)
                self.end_headers()
                return
            asked.append(self.path)
            body = (hashlib.sha256(b"irisop placeholder " + self.path.encode()).hexdigest() + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as url:
        yield url


_VALIDATION_ERROR = (
    b'<ErrorResponse xmlns="https://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type>'
    b"<Code>ValidationError</Code><Message>AutoScalingGroup name not found</Message></Error>"
    b"<RequestId>irisop-test</RequestId></ErrorResponse>"
)
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


@contextmanager
def warm_pool_fix(upstream: str, fixed: list[str]) -> Iterator[str]:
    """A pass-through proxy to moto that answers DescribeWarmPool's 500 as AWS would."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            answer = requests.request(self.command, upstream + self.path, data=body, headers=headers, timeout=30)
            status, data = answer.status_code, answer.content
            if status == 500 and b"Action=DescribeWarmPool" in body:
                status, data = 400, _VALIDATION_ERROR
                fixed.append(body.decode(errors="replace"))
            self.send_response(status)
            for key, value in answer.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as url:
        yield url
