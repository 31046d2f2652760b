"""`irisop serve`: run the BentoML service on a local artifact directory."""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from .contract import ENV_EXPECTED_SHA256, ENV_MODEL_DIR, READY_PATH, SERVING_PORT, CommandError

SERVICE = "irisop_serving.service:IrisClassifier"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="artifact directory written by `irisop train`")
    parser.add_argument("--port", type=int, default=SERVING_PORT, help=f"HTTP port (default {SERVING_PORT})")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--expected-sha256", help="refuse readiness unless the model file has this sha256")


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: connections of a stopped server in TIME_WAIT must
        # not make the port look taken for a minute (a listener still does).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def run(args: argparse.Namespace) -> int:
    model_dir = args.model.resolve()
    if not (model_dir / "model.json").is_file():
        raise CommandError(f"{args.model} is not an artifact directory (no model.json); run `irisop train --out {args.model}`")
    if not 0 < args.port < 65536:
        raise CommandError(f"--port {args.port} is out of range")
    if not port_free(args.host, args.port):
        raise CommandError(f"cannot listen on {args.host}:{args.port} (in use or not a local address)")
    env = {
        **os.environ,
        ENV_MODEL_DIR: str(model_dir),
        # No usage-tracking calls from a local server (and no network in tests).
        "BENTOML_DO_NOT_TRACK": "True",
    }
    if args.expected_sha256:
        env[ENV_EXPECTED_SHA256] = args.expected_sha256
    argv = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(args.port), "--host", args.host]
    base = f"http://{args.host}:{args.port}"
    print(f"serving {model_dir} on {base} (POST /predict, GET /metadata, {READY_PATH}, /docs.json)", flush=True)
    print(
        f"try: curl -s -X POST {base}/predict -H 'Content-Type: application/json' "
        """-d '{"rows": [[5.1, 3.5, 1.4, 0.2], [6.9, 3.1, 5.4, 2.1]]}'""",
        flush=True,
    )
    # exec: signals (Ctrl-C, SIGTERM from a test fixture) reach BentoML directly.
    os.execvpe(argv[0], argv, env)
    return 0  # not reached
