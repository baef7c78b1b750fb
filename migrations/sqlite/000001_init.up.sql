-- Times are TEXT in the fixed-width form 2006-01-02T15:04:05.000000Z (UTC,
-- microseconds), so they compare correctly as strings.
CREATE TABLE rooms (
    room       TEXT    NOT NULL PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated_at TEXT    NOT NULL
);
CREATE INDEX rooms_updated_at_idx ON rooms (updated_at);

CREATE TABLE elements (
    room       TEXT    NOT NULL REFERENCES rooms (room),
    id         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    data       TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;

CREATE TABLE events (
    room    TEXT    NOT NULL REFERENCES rooms (room),
    seq     INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    payload TEXT    NOT NULL,
    at      TEXT    NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
