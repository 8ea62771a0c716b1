"""Entry point of ductwork-sql: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Database

_INSTALL = 'pip install "ductwork[sql]"'


@hookimpl
def register_providers(register: Register) -> None:
    """Register ``postgres`` and ``mysql`` (MySQL and MariaDB) databases."""
    register(Database, "postgres", "ductwork_sql.postgres:PostgresDatabase", install=_INSTALL)
    register(Database, "mysql", "ductwork_sql.mysql:MySQLDatabase", install=_INSTALL)
