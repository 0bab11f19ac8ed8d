"""The embedded store's schema: the tables of a new file, and the migrations of an older one."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY,
    generation TEXT NOT NULL,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    retention_days INTEGER,
    min_quality TEXT NOT NULL,
    store_thumbnails INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS persons (
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    person_id TEXT NOT NULL,
    display_name TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (collection_id, person_id)
);
CREATE TABLE IF NOT EXISTS consents (
    collection_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    basis TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    expires_at TEXT,
    reference TEXT,
    PRIMARY KEY (collection_id, person_id),
    FOREIGN KEY (collection_id, person_id) REFERENCES persons(collection_id, person_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS faces (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    face_id TEXT NOT NULL UNIQUE,
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    person_id TEXT,
    external_image_id TEXT,
    box_left REAL NOT NULL, box_top REAL NOT NULL, box_width REAL NOT NULL, box_height REAL NOT NULL,
    quality_score REAL NOT NULL,
    quality_level TEXT NOT NULL,
    embedding BLOB NOT NULL,
    thumbnail BLOB,
    created_at TEXT NOT NULL,
    FOREIGN KEY (collection_id, person_id) REFERENCES persons(collection_id, person_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS faces_by_collection ON faces(collection_id, row);
CREATE INDEX IF NOT EXISTS faces_by_person ON faces(collection_id, person_id);
CREATE INDEX IF NOT EXISTS faces_by_image ON faces(collection_id, external_image_id);
CREATE TABLE IF NOT EXISTS face_tombstones (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id TEXT NOT NULL,
    face_row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_collection ON face_tombstones(collection_id, seq);
CREATE TRIGGER IF NOT EXISTS faces_tombstone AFTER DELETE ON faces BEGIN
    INSERT INTO face_tombstones(collection_id, face_row) VALUES (old.collection_id, old.row);
END;
"""

# Schema changes after the first release, applied in order to a file whose PRAGMA user_version is
# lower (a new file gets SCHEMA and then all of them). Never edit one; append a new one.
MIGRATIONS: list[tuple[int, str]] = [
    (
        2,
        """
ALTER TABLE collections ADD COLUMN threshold REAL;
ALTER TABLE collections ADD COLUMN threshold_source TEXT;
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    collections TEXT,
    default_purpose TEXT,
    rate_per_minute INTEGER,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT,
    revoked_by TEXT
);
""",
    ),
    (
        3,
        # Regard 0.2 compares faces by the angle between their embeddings: a collection's own search
        # threshold was a score on the old scale and is cleared (the calibrated default applies until
        # `regard audit --apply-to` is run again; docs/STORAGE.md). Stored vectors stay as they are:
        # the index scales them to length 1 as it loads them.
        """
UPDATE collections SET threshold_source = json_object('cleared_by', '3_unit_vectors',
        'previous_threshold', threshold, 'previous_source', json(threshold_source)),
    threshold = NULL
WHERE threshold IS NOT NULL;
""",
    ),
    (
        4,
        # The rules of the store are written once for both backends (regard/store/core.py); what
        # the SQLite store did by hand when a collection went, its schema now does.
        """
CREATE TRIGGER IF NOT EXISTS collections_tombstones AFTER DELETE ON collections BEGIN
    DELETE FROM face_tombstones WHERE collection_id = old.id;
END;
""",
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def statements(script: str) -> list[str]:
    """A script's statements, a trigger's body (with its own semicolons) kept whole."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                found.append(pending.strip())
            pending = ""
    return found


def migrate(conn: sqlite3.Connection, audit_schema: str) -> None:
    """Create the tables of a new file, or bring an older one up to date, in one transaction (so
    that processes opening a new file at once do not race)."""
    conn.executescript("BEGIN IMMEDIATE;\n" + SCHEMA + "\n" + audit_schema)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in MIGRATIONS:
            if version < number:
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
