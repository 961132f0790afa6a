"""Engines for the embedded SQLite file and for PostgreSQL, and the schema's migrations.

The schema is only ever made by Alembic (``migrations/``), for both backends, so that a
database created today upgrades in place tomorrow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_URL = "sqlite:///hanet.db"


def make_engine(url: str, *, immediate: bool = False) -> Engine:
    """An engine for ``url``. For SQLite, ``immediate`` makes each transaction take the
    write lock when it begins (BEGIN IMMEDIATE): a transaction that reads and then writes
    would otherwise be refused at once ("database is locked") whenever another writes,
    where with the lock up front it waits its turn (busy timeout)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            # The sqlite3 module opens transactions on its own and would let a SAVEPOINT
            # start (and its RELEASE commit) work of its own: a failed request could leave
            # half its rows behind. Here the module does nothing and SQLAlchemy says BEGIN.
            connection.isolation_level = None
            cursor = connection.cursor()
            # WAL: readers never block the writer; foreign keys are off by default in SQLite.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is already there)."""
    command.upgrade(alembic_config(engine), "head")
