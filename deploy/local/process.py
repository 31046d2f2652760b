"""Start, find and stop the local stack's long-running processes.

Every local service (etcd, kube-apiserver, moto_server, docker-registry, ...)
is a ``ManagedProcess``: a command, a log file and a pid file under one state
directory. ``start`` is idempotent (a live pid file means "already running"),
so `irisop up` and the test fixtures can be run twice safely, and ``stop``
kills the whole process group so nothing is left behind.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import requests


def cache_dir() -> Path:
    """The one cache directory: Go caches, built binaries, base images."""
    return Path(os.environ.get("IRISOP_CACHE", Path.home() / ".cache" / "irisop"))


def state_dir() -> Path:
    """Runtime state (pid files, logs, data dirs) of the local stack."""
    return Path(os.environ.get("IRISOP_STATE", cache_dir() / "state"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class ProcessError(RuntimeError):
    """A local service failed to start; the message ends with its log tail."""


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    home: Path  # holds <name>.pid and <name>.log
    env: Mapping[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] | None = None  # health probe; None means "started"
    timeout: float = 60.0

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        if not self._is_ours(pid):
            return None  # a stale pid file whose number the kernel gave to another program
        return pid

    def _is_ours(self, pid: int) -> bool:
        """Is pid still the program we started? Pids wrap around: a pid file
        left by a killed session may name an unrelated process, which stop()
        must never signal."""
        if not self.argv:
            return True  # a handle made only to stop a process: nothing to compare with
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc to ask: trust the pid file
        program = os.path.basename(str(self.argv[0])).encode()
        return any(os.path.basename(arg) == program for arg in cmdline[:3])

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> bool:
        """Start unless already running; return True if a process was started."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.running():
            self.wait_ready()
            return False
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,  # own process group: stop() kills children too
            )
        self.pid_file.write_text(str(proc.pid))
        self.wait_ready(proc)
        return True

    def wait_ready(self, proc: subprocess.Popen | None = None) -> None:
        if self.ready is None:
            return
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ProcessError(f"{self.name} exited with {proc.returncode}\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise ProcessError(f"{self.name} not ready after {self.timeout:.0f}s\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._alive(pid):
                time.sleep(0.05)
            if self._alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pid_file.unlink(missing_ok=True)

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            # Reap if it is our child, so a zombie does not look alive.
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A process started by an earlier `irisop` run is not our child: once
        # it exits it stays a zombie until PID 1 reaps it (~2 s on these VMs).
        # A zombie holds no ports or files, so it counts as stopped.
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
        # Our own child: reap it. A multi-threaded (Go) leader shows Z while
        # its other threads finish, and only then can be reaped.
        deadline = time.monotonic() + 2
        try:
            while os.waitpid(pid, os.WNOHANG)[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        except ChildProcessError:
            pass  # not our child: PID 1 reaps it
        return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def http_ok(url: str, verify: bool | str = True) -> Callable[[], bool]:
    """A readiness probe: GET url answers 2xx."""

    def probe() -> bool:
        try:
            return requests.get(url, timeout=1, verify=verify).ok
        except requests.RequestException:
            return False

    return probe
