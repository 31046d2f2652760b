"""The small interface between the bootstrap and the kops/kubectl processes.

Steps never call subprocess directly: they ask a Runner. The real one runs
the command; the dry-run one prints it and pretends it succeeded; tests pass
their own Runner (kops cannot reach a loopback moto_server).
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Protocol, Sequence, TextIO


@dataclass
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandFailed(RuntimeError):
    """A required command exited non-zero; the message names it and ends with its stderr."""


class Runner(Protocol):
    def which(self, tool: str) -> str | None: ...

    def run(self, argv: Sequence[str], *, capture: bool = False) -> Result: ...


def require(runner: Runner, argv: Sequence[str], *, capture: bool = False) -> Result:
    """Run argv and raise CommandFailed unless it succeeded."""
    result = runner.run(argv, capture=capture)
    if not result.ok:
        tail = result.stderr.strip().splitlines()[-5:]
        raise CommandFailed(f"{shlex.join(argv)} exited {result.returncode}" + ("\n" + "\n".join(tail) if tail else ""))
    return result


class SubprocessRunner:
    """Runs tools from PATH (or from the directories given first, e.g. the cache)."""

    def __init__(self, extra_path: Sequence[str] = ()) -> None:
        self.extra_path = list(extra_path)

    def which(self, tool: str) -> str | None:
        for directory in self.extra_path:
            found = shutil.which(tool, path=directory)
            if found:
                return found
        return shutil.which(tool)

    def run(self, argv: Sequence[str], *, capture: bool = False) -> Result:
        exe = self.which(argv[0])
        if exe is None:
            return Result(127, "", f"{argv[0]}: not found")
        # Long kops/kubectl runs stream to the terminal unless the caller needs the output.
        proc = subprocess.run([exe, *argv[1:]], capture_output=capture, text=True, check=False)
        return Result(proc.returncode, proc.stdout or "", proc.stderr or "")


@dataclass
class DryRunRunner:
    """Prints each command instead of running it; `which` still looks at PATH."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    commands: list[list[str]] = field(default_factory=list)

    def which(self, tool: str) -> str | None:
        return shutil.which(tool)

    def run(self, argv: Sequence[str], *, capture: bool = False) -> Result:
        self.commands.append(list(argv))
        print(f"      would run: {shlex.join(argv)}", file=self.out, flush=True)
        return Result(0, "", "")
