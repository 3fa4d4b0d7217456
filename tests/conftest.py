from __future__ import annotations

import atexit
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/reference_counts.py


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray instance (2 CPUs) shared by the search tests; the driver reuses it."""
    from search_helpers import init_local_ray

    ray = pytest.importorskip("ray", reason="ray is a dependency of placement-search; install the package")
    if not ray.is_initialized():
        init_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL database for this test session (skips, with the reason, when there is none)."""
    from pg_server import start_postgres

    server = start_postgres()
    if server.url is None and server.external:
        pytest.fail(f"the PostgreSQL server asked for is not usable: {server.reason}", pytrace=False)
    if server.url is None:
        pytest.skip(f"no PostgreSQL server for the storage tests: {server.reason}")
    atexit.register(server.stop)  # also where the session ends without fixture teardown
    try:
        yield server.url
    finally:
        server.stop()
