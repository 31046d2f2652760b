"""`irisop down`: stop everything `irisop up` started, leaving no processes or mounts."""
from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from .stack import Stack

    stopped = Stack().down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0
