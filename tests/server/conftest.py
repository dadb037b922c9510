"""Fixtures: a fresh, migrated database per test, on SQLite and on PostgreSQL.

The PostgreSQL variant needs E2H_TEST_DATABASE_URL (``.ci/run`` starts a throwaway
cluster and sets it); each test gets its own database, created and dropped around it.
Without the variable the PostgreSQL variants are skipped, saying why, unless
E2H_REQUIRE_POSTGRES=1 (set in CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, make_url, text

from server.core.config import Settings
from server.core.db import make_engine, migrate
from server.main import create_app
from tests.server.helpers import WORKER_TOKEN, LiveServer, serving

PG_ENV = "E2H_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("E2H_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{PG_ENV} is not set but E2H_REQUIRE_POSTGRES=1 (CI): PostgreSQL setup failed")
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL to test against (.ci/run starts one)")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _fresh_postgres(admin: Engine) -> Iterator[str]:
    name = f"e2h_t_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin.url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'e2h.db'}"
    else:
        yield from _fresh_postgres(request.getfixturevalue("pg_admin"))


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path, worker_token=WORKER_TOKEN, api_token=None)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """A migrated engine, for tests that call ``crud`` directly."""
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def live_server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    env = {
        "E2H_DATABASE_URL": settings.resolved_database_url,
        "E2H_WORKER_TOKEN": WORKER_TOKEN,
        "E2H_DATA_DIR": str(tmp_path),
    }
    env.pop("E2H_API_TOKEN", None)
    with serving(env, tmp_path / "server.log") as server:
        yield server
