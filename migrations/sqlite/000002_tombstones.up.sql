-- The last version of every deleted element, so a re-created element goes on
-- from it: versions of an id never repeat, and an If-Match taken before a
-- delete can never match the element created after it.
CREATE TABLE tombstones (
    room    TEXT    NOT NULL REFERENCES rooms (room),
    id      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
