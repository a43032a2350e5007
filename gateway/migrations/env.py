"""Alembic environment of the state database.

``StateDB.migrate`` passes its own connection (already inside a locked transaction) in
``config.attributes["connection"]``. The ``alembic`` command line (developers only, see
alembic.ini) passes the database with ``-x url=...``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from gateway.models import load_all_models
from gateway.statedb import StateDB

config = context.config
target_metadata = load_all_models()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _cli_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass the state database with -x url=sqlite:////path/state.sqlite")
    return url


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    if context.is_offline_mode():
        context.configure(url=_cli_url(), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    db = StateDB(_cli_url())
    try:
        with db.engine.connect() as conn:
            _run(conn)
    finally:
        db.close()


main()
