"""`irisop serve` against hostile and clumsy clients, over raw sockets.

Oversized bodies (Content-Length and chunked) get 413 before they are read and
leave the worker's memory where it was; short, slow and abandoned bodies get
408 (never the 504 of a processing timeout); every client error is one INFO
line in the log, never an ERROR traceback; and the smaller rules: 415 for
anything but JSON, duplicate keys, integers of any length, POST /metadata.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from irisop_serving.settings import max_body_bytes
from tests.fixtures.serving import Server, running_server, train_into, wait_ready

pytestmark = pytest.mark.integration

MAX_ROWS = 50
LIMIT = max_body_bytes(MAX_ROWS)
BODY_TIMEOUT = 1.0
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = tmp_path_factory.mktemp("model")
    train_into(model)
    env = {"IRISOP_MAX_BATCH_ROWS": str(MAX_ROWS), "IRISOP_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    for srv in running_server(model, tmp_path_factory.mktemp("serve"), env=env):
        wait_ready(srv)
        yield srv


# ------------------------------------------------------------------ raw HTTP
def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(path: str = "/predict", content_type: str | None = "application/json", **fields: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """Read one response (Content-Length framed, as every answer of ours is)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    header, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = header.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(status_line.split()[1]), headers, json.loads(rest[:length]) if length else None


def exchange(server: Server, raw: bytes) -> tuple[int, dict[str, str], Any]:
    with connect(server) as sock:
        sock.sendall(raw)
        return response(sock)


def client_error_lines(server: Server) -> int:
    return server.log().count("client error")


def wait_for_lines(server: Server, count: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while client_error_lines(server) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} client-error lines:\n{server.log()[-3000:]}")
        time.sleep(0.05)
    return server.log()


def worker(server: Server) -> psutil.Process:
    """The BentoML worker process (the one that parses bodies), a descendant of the server."""
    pid = server.process.pid()
    assert pid is not None
    children = psutil.Process(pid).children(recursive=True)
    (found,) = [p for p in children if "_bentoml_impl.worker" in " ".join(p.cmdline())]
    return found


# ------------------------------------------------------------------ 2. bounded memory
def test_a_declared_oversized_body_is_refused_unread(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(head(Content_Length=str(LIMIT + 1)) + b'{"rows": [')  # the rest is never sent
        status, headers, body = response(sock)
    assert status == 413 and body["field"] == "body" and f"limit of {LIMIT} bytes" in body["error"]
    assert headers["connection"] == "close"


def test_a_chunked_oversized_body_is_cut_off_at_the_limit(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(head(Transfer_Encoding="chunked"))
        chunk = b'{"rows": [' + b"[5.1, 3.5, 1.4, 0.2], " * 2000
        sent = 0
        while sent <= LIMIT:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        status, headers, body = response(sock)
    assert status == 413 and f"limit of {LIMIT} bytes" in body["error"]
    assert headers["connection"] == "close"


def test_a_body_at_the_limit_is_read(server: Server) -> None:
    rows = json.dumps({"rows": [ROW] * MAX_ROWS}).encode()
    padded = rows[:-1] + b" " * (LIMIT - len(rows)) + b"}"
    assert len(padded) == LIMIT
    status, _, body = exchange(server, head(Content_Length=str(LIMIT)) + padded)
    assert status == 200 and len(body["predictions"]) == MAX_ROWS


def test_a_stream_of_oversized_bodies_leaves_memory_where_it_was(server: Server) -> None:
    proc = worker(server)
    exchange(server, head(Content_Length="30") + b'{"rows": [[1, 2, 3, 4]]}      ')
    idle = proc.memory_info().rss
    twenty_mb = 20 * 1024 * 1024
    chunk = b"[5.1, 3.5, 1.4, 0.2], " * 3000  # ~66 KB
    before = client_error_lines(server)
    for i in range(40):
        with connect(server) as sock:
            if i % 2:
                sock.sendall(head(Content_Length=str(twenty_mb)) + b'{"rows": [' + chunk)
            else:
                sock.sendall(head(Transfer_Encoding="chunked") + b"%x\r\n%s\r\n" % (len(chunk), chunk))
                try:
                    for _ in range(twenty_mb // len(chunk)):
                        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server answered and closed: what we want
            try:
                status, _, _ = response(sock)
            except (ConnectionResetError, AssertionError):
                continue  # the reset raced the answer; the log line below still counts it
            assert status == 413
    wait_for_lines(server, before + 40)
    after = proc.memory_info().rss
    print(f"worker RSS idle {idle / 2**20:.1f} MiB, after 40 oversized bodies {after / 2**20:.1f} MiB")
    assert after <= idle * 1.2, (idle, after)


# ------------------------------------------------------------------ 3. client faults
def test_a_short_body_gets_408_not_504(server: Server) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(head(Content_Length="100") + b'{"rows": [[1, 2')
        status, headers, body = response(sock)
    assert status == 408 and body["field"] == "body" and "did not arrive within 1 s" in body["error"]
    assert headers["connection"] == "close"
    assert BODY_TIMEOUT <= time.monotonic() - started < BODY_TIMEOUT + 2


def test_a_slow_body_gets_408(server: Server) -> None:
    payload = json.dumps({"rows": [ROW]}).encode()
    with connect(server) as sock:
        sock.sendall(head(Content_Length=str(len(payload))))
        for byte in payload[:5]:
            sock.sendall(bytes([byte]))
            time.sleep(0.3)
        status, _, body = response(sock)
    assert status == 408


def test_many_partial_bodies_get_408_and_the_server_keeps_answering(server: Server) -> None:
    socks = [connect(server) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(head(Content_Length="100") + b'{"rows"')
        # While they hang, a whole request is answered at once.
        status, _, body = exchange(server, head(Content_Length=str(len(json.dumps({"rows": [ROW]})))) + json.dumps({"rows": [ROW]}).encode())
        assert status == 200 and body["predictions"] == ["setosa"]
        statuses = [response(sock)[0] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert statuses == [408] * 200


def test_a_client_that_leaves_mid_body_is_logged_once_at_info(server: Server) -> None:
    before = client_error_lines(server)
    with connect(server) as sock:
        sock.sendall(head(Content_Length="100") + b'{"rows": [[1')
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0)  # nothing to read: the server has no one to answer
    log = wait_for_lines(server, before + 1)
    assert "disconnected before its body was complete" in log


def test_client_errors_are_one_info_line_each_never_an_error(server: Server) -> None:
    before = client_error_lines(server)
    bad = [b'{"rows": [[1, 2, 3, 4]]', b"null", b'{"rows": "x"}', b'{"rows": [[1, 2, 3]]}', b"\xff"]
    for raw in bad:
        status, _, _ = exchange(server, head(Content_Length=str(len(raw))) + raw)
        assert status == 400
    log = wait_for_lines(server, before + len(bad))
    lines = [line for line in log.splitlines() if "client error" in line]
    assert len(lines) >= len(bad) and all("[INFO]" in line for line in lines), lines[-5:]
    assert "Traceback" not in log and "[ERROR]" not in log


# ------------------------------------------------------------------ 5. smaller ones
@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None, "application/json; charset=latin-1", "multipart/form-data; boundary=x"])
def test_anything_but_json_is_415(server: Server, content_type: str | None) -> None:
    raw = json.dumps({"rows": [ROW]}).encode()
    status, _, body = exchange(server, head(content_type=content_type, Content_Length=str(len(raw))) + raw)
    assert status == 415 and body["field"] == "Content-Type"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON; charset=\"UTF-8\""])
def test_json_content_types_are_accepted(server: Server, content_type: str) -> None:
    raw = json.dumps({"rows": [ROW]}).encode()
    status, _, body = exchange(server, head(content_type=content_type, Content_Length=str(len(raw))) + raw)
    assert status == 200 and body["predictions"] == ["setosa"]


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (b'{"rows": [[1, 2, 3, 4]], "rows": [[5, 6, 7, 8]]}', {"field": "rows", "error": "duplicate key 'rows'"}),
        (b'{"rows": [[1, 2, 3, 4], {"sepal_length": 1, "sepal_length": 2, "sepal_width": 3, "petal_length": 4, "petal_width": 5}]}', {"row": 1, "field": "sepal_length", "error": "duplicate feature"}),
    ],
)
def test_duplicate_keys_are_refused(server: Server, raw: bytes, expect: dict[str, Any]) -> None:
    status, _, body = exchange(server, head(Content_Length=str(len(raw))) + raw)
    assert status == 400
    for key, value in expect.items():
        assert value in body[key] if key == "error" else body[key] == value


@pytest.mark.parametrize("digits", [401, 4301, 20000])
def test_integers_of_any_length_name_the_row_and_field(server: Server, digits: int) -> None:
    raw = b'{"rows": [[1, 2, 3, 4], [1, 2, 3, %s]]}' % (b"9" * digits)
    assert len(raw) < LIMIT
    status, _, body = exchange(server, head(Content_Length=str(len(raw))) + raw)
    assert (status, body) == (400, {"error": "row 1: petal_width is too large for a float", "row": 1, "field": "petal_width"})


def test_other_methods(server: Server) -> None:
    for method, path, allow in [("POST", "/metadata", "GET, HEAD"), ("DELETE", "/metadata", "GET, HEAD"), ("GET", "/predict", "POST"), ("PUT", "/predict", "POST")]:
        raw = f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".encode()
        status, headers, body = exchange(server, raw)
        assert (status, headers["allow"]) == (405, allow), (method, path)
        assert "is not allowed" in body["error"]


def test_serve_restarts_at_once_on_the_same_port(server: Server, tmp_path: Path) -> None:
    """A stopped server leaves TIME_WAIT connections behind; the port check must not refuse for them."""
    from irisop_serving.cli import port_free

    model = tmp_path / "model"
    train_into(model)
    first = Server(model, tmp_path / "one").start()
    try:
        wait_ready(first)
        # Closing from the server side (413 + Connection: close) leaves TIME_WAIT on its port.
        exchange(first, head(Content_Length=str(10**9)))
    finally:
        first.stop()
    assert port_free("127.0.0.1", first.port)
    second = Server(model, tmp_path / "two", port=first.port).start()
    try:
        wait_ready(second)
    finally:
        second.stop()
