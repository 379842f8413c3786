"""The labelling station's migration: ``shot_edits`` becomes field-level without losing a row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from capture.store.label_schema import v_label_station
from capture.store.schema import MIGRATIONS, migrate


def test_old_edits_gain_their_field_and_the_new_actions_are_allowed(tmp_path: Path) -> None:
    db = Database(tmp_path / "old.db")
    before = MIGRATIONS.index(v_label_station)
    migrate(db, MIGRATIONS[:before])
    conn = db.conn
    conn.execute("INSERT INTO parts(label) VALUES ('3001')")
    conn.execute(
        "INSERT INTO part_instances(instance_id, label, created_at) VALUES ('a', '3001', 't')"
    )
    conn.execute(
        "INSERT INTO shots(id, label, instance_id, path, sha256, size, captured_at)"
        " VALUES (1, '3001', 'a', 'images/1.jpg', 'x', 1, 't')"
    )
    conn.execute(
        "INSERT INTO shot_edits(shot_id, action, old, new, who, at) VALUES"
        " (1, 'relabel', '3002', '3001', 'ann', 't1'), (1, 'delete', '3001', NULL, 'bob', 't2')"
    )
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO shot_edits(shot_id, action, who, at) VALUES (1, 'accept', 'x', 't')"
        )
    conn.rollback()
    assert migrate(db) == len(MIGRATIONS)
    rows = conn.execute(
        "SELECT action, field, old, new, who FROM shot_edits ORDER BY id"
    ).fetchall()
    assert rows == [
        ("relabel", "label", "3002", "3001", "ann"),
        ("delete", "deleted_at", None, "t2", "bob"),
    ]
    for action in ("restore", "accept", "discard", "set_attribute"):
        conn.execute(
            "INSERT INTO shot_edits(shot_id, action, field, who, at)"
            " VALUES (1, ?, 'label', 'x', 't')",
            (action,),
        )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO shot_edits(shot_id, action, who, at) VALUES (1, 'bogus', 'x', 't')"
        )
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
