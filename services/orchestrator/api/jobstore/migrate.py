"""Versioned SQL migrations, the same files for SQLite and PostgreSQL.

migrations/NNNN_name.sql are applied in version order, each once, each in its own transaction with
its row in schema_migrations (so a failed file leaves the ones before it applied and itself not).
The engine supplies the transaction and makes it exclusive among migrators: SQLite by BEGIN
IMMEDIATE (one writer at a time), PostgreSQL by pg_advisory_xact_lock(MIGRATION_LOCK). Two replicas
opening the store at once therefore never apply a file twice: the second waits, then finds its row.

A database may know versions this build does not (a newer replica migrated it during a rolling
upgrade): they are left alone, so every migration must keep older code working.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The key of PostgreSQL's advisory lock around migrations (any constant bigint; "ffjobs" in ASCII).
MIGRATION_LOCK = 0x66666A6F6273
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements: `--` comments dropped, split at semicolons that end a line."""
        lines = [line.split("--", 1)[0].rstrip() for line in self.sql.splitlines()]
        text = "\n".join(line for line in lines if line.strip())
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", text) if s.strip()]


def load(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a version in {directory}")
    return migrations


def migrate(
    transaction: Callable[[], AbstractContextManager[Any]], param: str = "?", directory: Path = MIGRATIONS_DIR
) -> list[int]:
    """Apply the pending migrations; return the versions this call applied.

    `transaction()` opens a transaction no other migrator can run at the same time and yields a
    DB-API cursor; `param` is the engine's placeholder ("?" for sqlite3, "%s" for psycopg).
    """
    applied = []
    for migration in load(directory):
        with transaction() as cur:
            cur.execute(_CREATE_TABLE)
            cur.execute(f"SELECT 1 FROM schema_migrations WHERE version = {param}", (migration.version,))
            if cur.fetchone() is not None:
                continue
            for statement in migration.statements():
                cur.execute(statement)
            cur.execute(
                f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({param}, {param}, {param})",
                (migration.version, migration.name, time.time()),
            )
            applied.append(migration.version)
    return applied
