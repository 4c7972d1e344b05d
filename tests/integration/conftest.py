"""What the integration tests of one test process share (each xdist worker has its own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import CLI_ENV


@pytest.fixture
def clis_on_prefect_server(prefect_harness: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI processes this test starts (run_cli, start_cli) run their flows on the session's
    Prefect server, the harness's, instead of each starting a temporary server of its own
    (about 7 s of CPU per command). Tests of that temporary server itself (test_security,
    test_schedules, the terminal test of test_progress) do not use this."""
    monkeypatch.setitem(CLI_ENV, "PREFECT_API_URL", prefect_harness)
    return prefect_harness


@pytest.fixture
def clis_on_their_own_server(clis_on_prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Undoes `clis_on_prefect_server` (a module's default) for one test: its CLI processes
    start their own temporary Prefect server, as a user's command does, for tests of what a
    killed command leaves behind."""
    monkeypatch.delitem(CLI_ENV, "PREFECT_API_URL")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the session (tests/postgres.py): its URL."""
    from tests.postgres import postgres_unavailable, running_postgres

    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's PostgreSQL server: its SQLAlchemy URL."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"
