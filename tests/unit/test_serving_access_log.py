"""uvicorn's access log stays off in the serving worker: not printed, and not built either."""
from __future__ import annotations

import asyncio
import logging

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from irisop_serving.service import silence_uvicorn_access_log


@pytest.fixture
def access_logger():
    """The process-wide loggers as BentoML leaves them (a handler on the root), restored afterwards."""
    access = logging.getLogger("uvicorn.access")
    propagate, level = access.propagate, access.level
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    yield access
    root.removeHandler(handler)
    access.propagate = propagate
    access.setLevel(level)  # setLevel also clears the loggers' cached answers


def _connection() -> HttpToolsProtocol:
    """What uvicorn makes for each new connection; it decides there whether to build access-log lines."""
    config = uvicorn.Config(app=lambda scope, receive, send: None, log_config=None, http="httptools")
    config.load()
    loop = asyncio.new_event_loop()
    try:
        return HttpToolsProtocol(config, ServerState(), {}, _loop=loop)
    finally:
        loop.close()


def test_uvicorn_builds_no_access_line_once_silenced(access_logger):
    # BentoML's root handlers make uvicorn think its access log is wanted...
    assert _connection().access_log is True
    silence_uvicorn_access_log()
    # ...and with none of its own and no propagation, every response skips the line.
    assert _connection().access_log is False
    assert not access_logger.isEnabledFor(logging.INFO)
