"""Concurrent fetches of one source share one call; nothing outlives the call.

Waits are for positive signals: the leader is held on an Event until the
follower has counted itself as joined.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from irisop_operator.pipeline import ModelSource
from irisop_operator.singleflight import SingleFlight


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def held_call(flight: SingleFlight, key, outcome):
    """Start fn() as the leader for key and hold it until the returned Event is set."""
    release, started, calls = threading.Event(), threading.Event(), []

    def fn():
        calls.append(1)
        started.set()
        release.wait(5)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    pool = ThreadPoolExecutor(4)
    leader = pool.submit(flight.run, key, fn)
    assert started.wait(5)
    return pool, leader, release, calls


def test_a_call_that_arrives_while_one_runs_gets_its_result_without_calling():
    joins = []
    flight: SingleFlight[str] = SingleFlight(on_join=lambda: joins.append(1))
    pool, leader, release, calls = held_call(flight, "s3://b/m/", "verified")
    follower = pool.submit(flight.run, "s3://b/m/", lambda: pytest.fail("the follower must not fetch"))
    wait_until(lambda: flight.joined == 1)
    release.set()
    assert leader.result(5) == follower.result(5) == "verified"
    assert calls == [1] and joins == [1]
    assert flight.in_flight() == 0


def test_the_leaders_error_reaches_every_caller():
    flight: SingleFlight[str] = SingleFlight()
    pool, leader, release, _ = held_call(flight, "k", ValueError("NoSuchKey"))
    follower = pool.submit(flight.run, "k", lambda: "unused")
    wait_until(lambda: flight.joined == 1)
    release.set()
    for future in (leader, follower):
        with pytest.raises(ValueError, match="NoSuchKey"):
            future.result(5)
    assert flight.in_flight() == 0


def test_other_keys_run_on_their_own_and_nothing_is_cached_after_the_call():
    flight: SingleFlight[str] = SingleFlight()
    pool, leader, release, _ = held_call(flight, "a", "from a")
    assert pool.submit(flight.run, "b", lambda: "from b").result(5) == "from b"  # not blocked behind "a"
    release.set()
    assert leader.result(5) == "from a"
    assert flight.run("a", lambda: "read again") == "read again"  # a finished call is not a cache
    assert flight.joined == 0


def test_sources_share_only_with_the_same_request_and_the_same_credentials():
    plain = ModelSource(uri="s3://b/m/")
    keys = {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    assert plain.flight_key == ModelSource(uri="s3://b/m/").flight_key
    assert plain.flight_key != ModelSource(uri="s3://b/m/", sha256="0" * 64).flight_key
    assert plain.flight_key != ModelSource(uri="s3://b/other/").flight_key
    with_keys = ModelSource(uri="s3://b/m/", credentials=keys)
    assert with_keys.flight_key != plain.flight_key
    assert with_keys.flight_key != ModelSource(uri="s3://b/m/", credentials={**keys, "AWS_ACCESS_KEY_ID": "AKIA2"}).flight_key
    assert "s3cr3t" not in repr(with_keys.flight_key)
