-- element_versions keeps each element's versions, whatever the event history's
-- retention does: one row per write of the element (type created, updated,
-- merged, or deleted with data NULL and the last kind), written in the write's
-- transaction. The store keeps at least its VersionsKeep newest rows per
-- element. A stale If-Match is merged three ways from its row here.
CREATE TABLE element_versions (
    room    TEXT    NOT NULL REFERENCES rooms (room),
    id      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    data    TEXT,
    actor   TEXT    NOT NULL DEFAULT '',
    op_id   TEXT    NOT NULL DEFAULT '',
    at      TEXT    NOT NULL,
    PRIMARY KEY (room, id, version)
) WITHOUT ROWID;

-- The current version of every element; its event's seq is not looked up (0).
INSERT INTO element_versions (room, id, version, seq, type, kind, data, at)
SELECT room, id, version, 0, CASE WHEN version = 1 THEN 'created' ELSE 'updated' END, kind, data, updated_at
FROM elements;

-- idempotency_keys records the answer of every write applied with an
-- Idempotency-Key (or Op-ID), in the write's transaction: a retry with the
-- same key in the room gets that answer again; header is a JSON object.
-- Keys are trimmed by created_at.
CREATE TABLE idempotency_keys (
    room        TEXT    NOT NULL REFERENCES rooms (room),
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    header      TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    seq         INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (room, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
