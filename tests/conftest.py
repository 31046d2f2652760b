"""Shared pytest configuration.

Fixtures live in tests/fixtures/ by area and are registered here once, so a
test module just names the fixtures it needs. Unit tests use none of them and
run with no services.
"""
pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.cluster",
    "tests.fixtures.incluster",
    "tests.fixtures.operator",
    "tests.fixtures.registry",
    "tests.fixtures.serving",
]

# Run as `.venv/bin/python -m pytest` (venv not activated), the tools the venv
# installed (bentoml, moto_server) must still be the ones the tests find.
from irisop_operator.cli import put_own_tools_on_path  # noqa: E402

put_own_tools_on_path()
