"""Shared pytest configuration.

Fixtures live in tests/fixtures/ by area and are registered here once, so a
test module just names the fixtures it needs. Unit tests use none of them and
run with no services.
"""
pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.cluster",
    "tests.fixtures.operator",
    "tests.fixtures.registry",
    "tests.fixtures.serving",
]
