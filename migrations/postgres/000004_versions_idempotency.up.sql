-- element_versions keeps each element's versions, whatever the event history's
-- retention does: one row per write of the element (type created, updated,
-- merged, or deleted with data NULL and the last kind), written in the write's
-- transaction. The store keeps at least its VersionsKeep newest rows per
-- element. A stale If-Match is merged three ways from its row here.
CREATE TABLE element_versions (
    room    text COLLATE "C" NOT NULL REFERENCES rooms (room),
    id      text COLLATE "C" NOT NULL,
    version bigint           NOT NULL,
    seq     bigint           NOT NULL,
    type    text             NOT NULL,
    kind    text             NOT NULL,
    data    json,
    actor   text             NOT NULL DEFAULT '',
    op_id   text             NOT NULL DEFAULT '',
    at      timestamptz      NOT NULL,
    PRIMARY KEY (room, id, version)
);

-- The current version of every element; its event's seq is not looked up (0).
INSERT INTO element_versions (room, id, version, seq, type, kind, data, at)
SELECT room, id, version, 0, CASE WHEN version = 1 THEN 'created' ELSE 'updated' END, kind, data, updated_at
FROM elements;

-- idempotency_keys records the answer of every write applied with an
-- Idempotency-Key (or Op-ID), in the write's transaction: a retry with the
-- same key in the room gets that answer again; header is a JSON object.
-- Keys are trimmed by created_at.
CREATE TABLE idempotency_keys (
    room        text COLLATE "C" NOT NULL REFERENCES rooms (room),
    key         text COLLATE "C" NOT NULL,
    fingerprint text             NOT NULL,
    status      integer          NOT NULL,
    header      text             NOT NULL,
    body        bytea            NOT NULL,
    seq         bigint           NOT NULL,
    created_at  timestamptz      NOT NULL,
    PRIMARY KEY (room, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
