-- Ids use the "C" collation so ORDER BY id is byte order, as in SQLite.
-- elements.data is json (not jsonb) and events.payload is text so the bytes
-- written are the bytes read back.
CREATE TABLE rooms (
    room       text COLLATE "C" NOT NULL PRIMARY KEY,
    seq        bigint           NOT NULL,
    updated_at timestamptz      NOT NULL
);
CREATE INDEX rooms_updated_at_idx ON rooms (updated_at);

CREATE TABLE elements (
    room       text COLLATE "C" NOT NULL REFERENCES rooms (room),
    id         text COLLATE "C" NOT NULL,
    kind       text             NOT NULL,
    version    bigint           NOT NULL,
    data       json             NOT NULL,
    updated_at timestamptz      NOT NULL,
    PRIMARY KEY (room, id)
);

CREATE TABLE events (
    room    text COLLATE "C" NOT NULL REFERENCES rooms (room),
    seq     bigint           NOT NULL,
    type    text             NOT NULL,
    payload text             NOT NULL,
    at      timestamptz      NOT NULL,
    PRIMARY KEY (room, seq)
);
