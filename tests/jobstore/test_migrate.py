"""The migration runner's file handling (applying them is in the contract tests, on both engines)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.orchestrator.api.jobstore.migrate import Migration, load, migrate


def test_statements_drop_comments_and_split_at_line_end_semicolons() -> None:
    sql = "-- a comment; not a statement\nCREATE TABLE t (a TEXT); -- trailing\n\nINSERT INTO t VALUES ('x;y');\n"
    assert Migration(1, "0001_t", sql).statements() == ["CREATE TABLE t (a TEXT)", "INSERT INTO t VALUES ('x;y')"]


def test_load_orders_by_version_and_rejects_bad_names(tmp_path: Path) -> None:
    (tmp_path / "0002_b.sql").write_text("SELECT 2;")
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    assert [m.version for m in load(tmp_path)] == [1, 2]
    (tmp_path / "3_c.sql").write_text("SELECT 3;")
    with pytest.raises(ValueError, match="NNNN_name"):
        load(tmp_path)


def test_a_failed_file_is_rolled_back_and_the_ones_before_it_stay(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x TEXT);")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x TEXT);\nCREATE TABLE a (x TEXT);")  # fails
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)

    @contextmanager
    def transaction() -> Iterator[sqlite3.Cursor]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn.cursor()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    with pytest.raises(sqlite3.OperationalError):
        migrate(transaction, "?", tmp_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"schema_migrations", "a"}
    assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == [1]
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x TEXT);")  # fixed
    assert migrate(transaction, "?", tmp_path) == [2]
    assert migrate(transaction, "?", tmp_path) == []
    conn.close()
