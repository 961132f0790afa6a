"""The schema comes only from the Alembic migrations: they must build exactly what the
models describe, and step down and up again without losing the change log."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from hanet.server.database import alembic_config, make_engine, upgrade
from hanet.server.models import Base


def test_the_migrations_build_what_the_models_describe(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            drift = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert drift == []
    finally:
        engine.dispose()


def test_the_change_log_survives_its_migration_both_ways(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        config = alembic_config(engine)
        command.upgrade(config, "0005")
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO router_changes (router_id, at) "
                                    "VALUES ('r-1', CURRENT_TIMESTAMP)"))  # fmt: skip
        command.upgrade(config, "head")
        with engine.begin() as connection:
            rows = connection.execute(text("SELECT seq, kind, resource_id FROM changes")).all()
            assert [tuple(r) for r in rows] == [(1, "router", "r-1")]
            connection.execute(text("INSERT INTO changes (kind, resource_id, at) "
                                    "VALUES ('network', 'n-1', CURRENT_TIMESTAMP)"))  # fmt: skip
            numbers = connection.execute(text("SELECT seq FROM changes ORDER BY seq")).all()
            assert [n for (n,) in numbers] == [1, 2]  # numbering goes on after the rename
        command.downgrade(config, "0005")
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT router_id FROM router_changes")).all()
            assert [r for (r,) in rows] == ["r-1"]
    finally:
        engine.dispose()
