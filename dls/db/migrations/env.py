"""Alembic environment: always run with a connection handed in by dls.db.migrate."""

from __future__ import annotations

from alembic import context

import dls.db.models  # noqa: F401 - registers every table on the metadata
from dls.db.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `dls db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
