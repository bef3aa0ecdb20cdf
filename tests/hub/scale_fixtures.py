"""Fixtures for the hub's scale tests: a real PostgreSQL and a real SeaweedFS (S3).

A test module takes them with ``pytest_plugins = ["scale_fixtures"]``: a plugin's
fixtures are global, so each server starts once per pytest run, on first use, however
many modules ask (a fixture imported by name into two modules would be two fixture
definitions to pytest, and start twice), and stops when the run ends. The servers
are in tests/hub/scale_servers.py; a missing binary fails the tests, never skips them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scale_servers import PostgresServer, SeaweedServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    server = SeaweedServer.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database on the test server, dropped afterwards."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture
def s3_env(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """boto3's credentials for the test server, set in this process's environment."""
    for name, value in seaweed.credentials.items():
        monkeypatch.setenv(name, value)
    return seaweed.credentials


@pytest.fixture
def s3_url(seaweed: SeaweedServer, s3_env: dict[str, str]) -> str:
    """``s3://<new bucket>?endpoint=...`` on the test server (the bucket exists)."""
    return seaweed.url(seaweed.create_bucket())
