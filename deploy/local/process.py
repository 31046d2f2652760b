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
import sys
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


def free_ports(count: int) -> list[int]:
    """count distinct free loopback ports: every socket is held until all are chosen."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def command_lines() -> list[tuple[int, bytes]]:
    """(pid, NUL-separated command line) of every process we can read."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found.append((int(proc.name), (proc / "cmdline").read_bytes()))
            except OSError:
                continue
    return found


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so a program's `finally` blocks (and
    ExitStacks) still stop the services it started when it is killed (a CI
    timeout, `kill`); the default action would end it on the spot."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


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
        """The pid of the process we started, or None when it is gone.

        The pid file records the pid and the kernel's start time of that
        process. The start time survives exec, so a wrapper (taskset, env -C,
        nice) that execs the real program keeps the identity, and it differs
        for any later process that merely reuses the number.
        """
        found = self._ours()
        if found is None or found[1].state == "Z":
            return None  # a zombie holds no ports or files: it is not running
        return found[0]

    def _ours(self) -> tuple[int, ProcStat] | None:
        """The recorded pid if it still names the process we started (zombie or not)."""
        recorded = self._recorded()
        if recorded is None:
            return None
        pid, started = recorded
        stat = _proc_stat(pid)
        if stat is None:
            return None
        if started is not None:
            ours = stat.start_time == started
        else:
            # A pid file from before start times were recorded. Pids wrap at
            # 32768 here, so the number alone names some other program soon:
            # every process we start leads its own session, and (when we know
            # the command) still runs the program we started.
            ours = stat.session == pid and (not self.argv or self._runs_our_program(pid))
        return (pid, stat) if ours else None

    def _runs_our_program(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        program = os.path.basename(str(self.argv[0])).encode()
        return any(os.path.basename(arg) == program for arg in cmdline[:3])

    def _recorded(self) -> tuple[int, int | None] | None:
        try:
            fields = self.pid_file.read_text().split()
            pid = int(fields[0])
            started = int(fields[1]) if len(fields) > 1 else None
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid, started

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
        stat = _proc_stat(proc.pid)
        # The start time is read after fork: the child exists (at worst a zombie
        # that wait_ready reports), so /proc has it.
        self.pid_file.write_text(f"{proc.pid} {stat.start_time if stat else ''}".strip() + "\n")
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
        """TERM the process group, KILL it after grace seconds, then sweep the group.

        The group is the session the process was started in, so children a
        wrapper or a server forked (bentoml's workers) go with it.
        """
        found = self._ours()
        if found is not None:
            pid = found[0]
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._alive(pid):
                time.sleep(0.05)
            # KILL whatever is left of the group: the leader if it ignored TERM,
            # and children that outlived it. A group id cannot be reused while
            # any member lives, so this signals only what we started.
            _signal_group(pid, signal.SIGKILL)
            self._alive(pid)  # reap our own child
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


@dataclass(frozen=True)
class ProcStat:
    session: int
    start_time: int  # clock ticks after boot; unchanged by exec
    state: str


def _proc_stat(pid: int) -> ProcStat | None:
    """Fields of /proc/<pid>/stat, or None if no such (live) process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 of proc(5): state; session is field 6, starttime 22.
    return ProcStat(session=int(fields[3]), start_time=int(fields[19]), state=fields[0])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def http_ok(url: str, verify: bool | str = True) -> Callable[[], bool]:
    """A readiness probe: GET url answers 2xx."""

    def probe() -> bool:
        try:
            return requests.get(url, timeout=1, verify=verify).ok
        except requests.RequestException:
            return False

    return probe
