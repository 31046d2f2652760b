"""ManagedProcess identity and stop(), with real (tiny) processes and no services.

Identity is pid + the kernel's start time, recorded at start: it survives the
exec of a wrapper (taskset, env -C), and a reused pid never matches it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from irisop_deploy.local.process import ManagedProcess, _proc_stat, command_lines, free_ports


def _gone(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is None or stat.state == "Z"


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                pass
    return members


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_reused_pid_never_names_an_unrelated_process(tmp_path):
    # Our own pid is alive, but the recorded start time is another process's:
    # the pid file must be ignored, so stop() cannot signal pytest.
    proc = ManagedProcess(name="etcd", argv=["/usr/bin/etcd"], home=tmp_path)
    started = _proc_stat(os.getpid()).start_time
    proc.pid_file.write_text(f"{os.getpid()} {started + 1}\n")
    assert proc.pid() is None
    proc.stop()  # must not kill pytest
    proc.pid_file.write_text(f"{os.getpid()} {started}\n")
    assert proc.pid() == os.getpid()


def test_a_legacy_pid_file_is_trusted_only_for_a_session_leader(tmp_path):
    # pid files written before start times were recorded hold just the pid;
    # every process we start leads its own session, a bystander does not.
    bystander = subprocess.Popen(["sleep", "30"])  # same session as pytest
    try:
        proc = ManagedProcess(name="old", argv=[], home=tmp_path)
        proc.pid_file.write_text(str(bystander.pid))
        assert proc.pid() is None
        proc.stop()
        assert bystander.poll() is None, "stop() signalled a process it did not start"
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("wrapper", [["env"], ["env", "-C", "/"], ["taskset", "-c", "0"], ["nice"]])
def test_stop_ends_a_program_started_under_a_wrapper_that_execs(tmp_path, wrapper):
    if shutil.which(wrapper[0]) is None:
        pytest.skip(f"{wrapper[0]} not installed")
    proc = ManagedProcess(name="sleeper", argv=[*wrapper, "sleep", "1000"], home=tmp_path)
    assert proc.start()
    pid = proc.pid()
    assert pid is not None, "the wrapped program is not recognised as ours"
    assert _wait(lambda: Path(f"/proc/{pid}/exe").resolve().name == "sleep")  # the wrapper exec'd
    assert proc.pid() == pid and proc.running()
    # A second handle (another `irisop` process) knows it from the pid file alone.
    assert ManagedProcess(name="sleeper", argv=[], home=tmp_path).pid() == pid
    assert not proc.start(), "start() must see the running program and not start another"
    proc.stop(grace=5)
    assert _gone(pid)
    assert not proc.pid_file.exists()


def test_stop_ends_the_children_a_program_forked(tmp_path):
    # A server that forks workers (bentoml) or a shell that runs a pipeline:
    # the children share the process group and must go with the leader, even
    # when the leader exits on TERM before they do.
    script = "trap 'exit 0' TERM; (trap '' TERM; exec sleep 1000) & sleep 1000 & wait"
    proc = ManagedProcess(name="forker", argv=["sh", "-c", script], home=tmp_path)
    proc.start()
    pid = proc.pid()
    assert pid is not None
    assert _wait(lambda: len(_group_members(pid)) >= 3), _group_members(pid)
    children = [p for p in _group_members(pid) if p != pid]
    proc.stop(grace=5)
    assert _wait(lambda: all(_gone(c) for c in children)), f"left behind: {children}"
    assert _gone(pid)


def test_stop_kills_a_program_that_ignores_term(tmp_path):
    proc = ManagedProcess(name="stubborn", argv=["sh", "-c", "trap '' TERM; sleep 1000 & wait; sleep 1000"],
                          home=tmp_path)
    proc.start()
    pid = proc.pid()
    assert pid is not None
    started = time.monotonic()
    proc.stop(grace=0.5)
    assert _wait(lambda: _gone(pid))
    assert time.monotonic() - started < 5


def test_a_program_that_exited_is_not_running(tmp_path):
    proc = ManagedProcess(name="short", argv=["true"], home=tmp_path)
    proc.start()
    assert _wait(lambda: proc.pid() is None)  # an unreaped zombie counts as stopped
    proc.stop()
    assert not proc.pid_file.exists()


def test_a_program_killed_with_sigterm_still_stops_what_it_started(tmp_path):
    # The benchmarks call exit_on_sigterm(): a CI timeout's SIGTERM runs their
    # finally blocks instead of leaving their services running.
    import signal
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from irisop_deploy.local.process import ManagedProcess, exit_on_sigterm
        exit_on_sigterm()
        service = ManagedProcess(name="service", argv=["sleep", "1000"], home=Path({str(tmp_path)!r}))
        try:
            service.start()
            print(service.pid(), flush=True)
            time.sleep(1000)
        finally:
            service.stop()
    """)
    program = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    service_pid = int(program.stdout.readline())
    assert not _gone(service_pid)
    program.send_signal(signal.SIGTERM)
    assert program.wait(timeout=20) == 128 + signal.SIGTERM
    assert _wait(lambda: _gone(service_pid)), "the service outlived the program that started it"


def test_a_legacy_pid_file_naming_another_session_leader_is_not_ours(tmp_path):
    # Pids wrap (32768 here): a legacy pid file's number soon belongs to some
    # other session leader, e.g. the etcd of another test's control plane.
    other = ManagedProcess(name="other", argv=["sleep", "1000"], home=tmp_path / "other")
    other.start()
    try:
        pid = other.pid()
        stale = ManagedProcess(name="etcd", argv=["/usr/bin/etcd", "--name", "x"], home=tmp_path)
        stale.home.mkdir(exist_ok=True)
        stale.pid_file.write_text(str(pid))  # the old format: a pid alone
        assert stale.pid() is None
        stale.stop()
        assert other.pid() == pid, "stop() of a stale legacy pid file killed another program"
        legacy_of_ours = ManagedProcess(name="sleeper", argv=["sleep", "1000"], home=tmp_path)
        legacy_of_ours.pid_file.write_text(str(pid))
        assert legacy_of_ours.pid() == pid  # a running stack from before the change is still found
    finally:
        other.stop()


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = free_ports(7)
    assert len(set(ports)) == 7
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_command_lines_include_this_process():
    argv0 = dict(command_lines())[os.getpid()].split(b"\0")[0].decode()
    assert Path(argv0).name.startswith("python"), argv0
