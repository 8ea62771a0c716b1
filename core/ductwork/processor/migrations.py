"""``dw.databases.migration``: ordered schema changes per database resource.

Migrations come from the database resource's ``migrations`` (a list in ``ductwork.yaml``, or a
folder of ``NNN_tag.up.sql`` / ``NNN_tag.down.sql`` files, statements ending with ``;`` at the
end of a line). Applied ones are recorded in ``ductwork_migrations`` with a checksum of their
statements; a migration changed after it was applied is refused, naming it.

Two runners at once are safe: the whole run holds the database's named lock (``locks``
capability: advisory lock on Postgres, ``GET_LOCK`` on MySQL, a file lock on SQLite) and reads
what is applied only once it holds it. Each migration runs in its own transaction together with
its record, so on backends with transactional DDL a failing migration leaves the database as it
was; elsewhere (MySQL/MariaDB commit each DDL statement) the error says what may remain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ductwork.config.models import DatabaseResource, Migration
from ductwork.errors import ConfigError, NotFoundError, ProviderError, ValidationError
from ductwork.processor._base import Group
from ductwork.providers.database import Database

if TYPE_CHECKING:
    from ductwork.processor.databases import Databases

__all__ = ["MigrationNamespace", "MigrationStatus", "checksum", "load_folder"]

TABLE = "ductwork_migrations"
LOCK = "ductwork-migrations"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (tag VARCHAR(191) PRIMARY KEY, "
    "checksum VARCHAR(64) NOT NULL, position INTEGER NOT NULL, applied_at VARCHAR(40) NOT NULL)"
)
_FILE = re.compile(r"^(?P<order>\d+)_(?P<tag>[A-Za-z0-9][A-Za-z0-9_.-]*)\.(?P<dir>up|down)\.sql$")
_SPLIT = re.compile(r";[ \t]*(?:\r?\n|$)")


@dataclass(frozen=True)
class MigrationStatus:
    """One migration as the database sees it."""

    tag: str
    applied: bool
    applied_at: str | None = None
    changed: bool = False


def checksum(migration: Migration) -> str:
    """SHA-256 of the migration's statements (up and down)."""
    text = json.dumps({"up": migration.up, "down": migration.down}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _statements(text: str) -> list[str]:
    return [s.strip() for s in _SPLIT.split(text) if s.strip()]


def load_folder(folder: Path) -> list[Migration]:
    """Migrations from ``NNN_tag.up.sql`` (and optional ``.down.sql``) files, in NNN order."""
    if not folder.is_dir():
        raise ConfigError(f"migrations folder {folder} does not exist")
    found: dict[tuple[int, str], dict[str, list[str]]] = {}
    for file in sorted(folder.iterdir()):
        match = _FILE.match(file.name)
        if match is None:
            continue
        key = (int(match["order"]), match["tag"])
        found.setdefault(key, {})[match["dir"]] = _statements(file.read_text())
    migrations = []
    for (_, tag), parts in sorted(found.items()):
        if not parts.get("up"):
            raise ConfigError(f"migration {tag!r} in {folder} has no .up.sql statements")
        migrations.append(Migration(tag=tag, up=parts["up"], down=parts.get("down", [])))
    return migrations


class MigrationNamespace(Group):
    """Run, roll back and report migrations."""

    def __init__(self, databases: Databases) -> None:
        self._dbs = databases

    def definitions(self, database: str) -> list[Migration]:
        """The database's migrations, in order."""
        resource = self._dbs.config.resource("databases", database)
        assert isinstance(resource, DatabaseResource)
        if isinstance(resource.migrations, str):
            folder = Path(resource.migrations)
            return load_folder(folder if folder.is_absolute() else self._dbs.config.root / folder)
        return list(resource.migrations)

    async def _applied(self, db: Database) -> list[dict[str, object]]:
        await db.execute(_CREATE)
        result = await db.execute(
            f"SELECT tag, checksum, applied_at FROM {TABLE} ORDER BY position"
        )
        return result.rows

    def _check(
        self, database: str, env: str, defs: list[Migration], applied: list[dict[str, object]]
    ) -> None:
        by_tag = {m.tag: (i, m) for i, m in enumerate(defs)}
        for position, row in enumerate(applied):
            tag = str(row["tag"])
            where = f"database {database!r} (env {env!r})"
            if tag not in by_tag:
                raise ConfigError(
                    f"{where}: migration {tag!r} is applied but no longer in the config; "
                    "put it back (roll it back first if it must go)"
                )
            index, migration = by_tag[tag]
            if index != position:
                raise ConfigError(
                    f"{where}: migration {tag!r} was applied as number {position + 1} but is now "
                    f"number {index + 1}; add new migrations at the end only"
                )
            if checksum(migration) != row["checksum"]:
                raise ConfigError(
                    f"{where}: applied migration {tag!r} has changed since it was applied "
                    "(checksum differs); restore its statements and add a new migration instead"
                )

    async def run(
        self, database: str, *, to: str | None = None, env: str | None = None
    ) -> list[str]:
        """Apply pending migrations in order (up to and including ``to``); return their tags."""
        env_name = self._dbs.env(env)
        defs = self.definitions(database)
        if to is not None and to not in {m.tag for m in defs}:
            raise NotFoundError(f"database {database!r} has no migration {to!r}")
        db = await self._dbs.provider(database, env_name)
        db.require("locks")
        done: list[str] = []
        async with db.lock(LOCK):
            applied = await self._applied(db)
            self._check(database, env_name, defs, applied)
            pending = defs[len(applied) :]
            if to is not None:
                tags = [m.tag for m in defs]
                pending = pending[: max(0, tags.index(to) + 1 - len(applied))]
            for position, migration in enumerate(pending, start=len(applied)):
                await self._apply(db, database, env_name, migration, position)
                done.append(migration.tag)
        return done

    async def _apply(
        self, db: Database, database: str, env: str, migration: Migration, position: int
    ) -> None:
        try:
            async with db.transaction() as tx:
                for statement in migration.up:
                    await tx.execute(statement)
                await tx.execute(
                    f"INSERT INTO {TABLE} (tag, checksum, position, applied_at) "
                    "VALUES (:tag, :checksum, :position, :applied_at)",
                    {
                        "tag": migration.tag,
                        "checksum": checksum(migration),
                        "position": position,
                        "applied_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    },
                )
        except ProviderError as exc:
            raise self._failed(db, database, env, migration.tag, "apply", exc) from exc

    def _failed(
        self, db: Database, database: str, env: str, tag: str, verb: str, exc: ProviderError
    ) -> ProviderError:
        if db.supports("transactional_ddl"):
            state = "the database is as it was before this migration"
        else:
            state = (
                f"{db.context.provider} commits DDL as it runs: statements before the "
                "failing one may remain; the migration was not recorded"
            )
        return db.error(
            f"cannot {verb} migration {tag!r} of database {database!r} "
            f"(env {env!r}): {exc.message}; {state}"
        )

    async def rollback(
        self, database: str, *, to: str | None = None, env: str | None = None
    ) -> list[str]:
        """Undo the last migration, or every one applied after ``to``; return their tags."""
        env_name = self._dbs.env(env)
        defs = self.definitions(database)
        db = await self._dbs.provider(database, env_name)
        db.require("locks")
        undone: list[str] = []
        async with db.lock(LOCK):
            applied = await self._applied(db)
            self._check(database, env_name, defs, applied)
            tags = [str(r["tag"]) for r in applied]
            if to is None:
                targets = tags[-1:]
            elif to not in tags:
                raise NotFoundError(f"migration {to!r} of database {database!r} is not applied")
            else:
                targets = tags[tags.index(to) + 1 :]
            by_tag = {m.tag: m for m in defs}
            missing_down = [t for t in targets if not by_tag[t].down]
            if missing_down:
                raise ValidationError(
                    f"cannot roll back {', '.join(missing_down)}: no 'down' statements"
                )
            for tag in reversed(targets):
                try:
                    async with db.transaction() as tx:
                        for statement in by_tag[tag].down:
                            await tx.execute(statement)
                        await tx.execute(f"DELETE FROM {TABLE} WHERE tag = :tag", {"tag": tag})
                except ProviderError as exc:
                    raise self._failed(db, database, env_name, tag, "roll back", exc) from exc
                undone.append(tag)
        return undone

    async def status(self, database: str, *, env: str | None = None) -> list[MigrationStatus]:
        """Every migration in the config, applied or not, and whether it changed since."""
        db = await self._dbs.provider(database, self._dbs.env(env))
        applied = {str(r["tag"]): r for r in await self._applied(db)}
        out = []
        for migration in self.definitions(database):
            row = applied.get(migration.tag)
            out.append(
                MigrationStatus(
                    tag=migration.tag,
                    applied=row is not None,
                    applied_at=str(row["applied_at"]) if row else None,
                    changed=row is not None and row["checksum"] != checksum(migration),
                )
            )
        return out
