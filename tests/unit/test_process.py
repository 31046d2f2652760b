"""ManagedProcess bookkeeping that needs no services."""
from __future__ import annotations

import os
import sys

from irisop_deploy.local.process import ManagedProcess


def test_a_stale_pid_file_never_names_an_unrelated_process(tmp_path):
    # Our own pid is alive but is not `etcd`: the pid file must be ignored, so
    # stop() cannot signal a process that merely inherited the number.
    proc = ManagedProcess(name="etcd", argv=["/usr/bin/etcd", "--name", "x"], home=tmp_path)
    proc.pid_file.write_text(str(os.getpid()))
    assert proc.pid() is None
    proc.stop()  # must not kill pytest
    mine = ManagedProcess(name="me", argv=[sys.executable], home=tmp_path)
    mine.pid_file.write_text(str(os.getpid()))
    assert mine.pid() == os.getpid()
