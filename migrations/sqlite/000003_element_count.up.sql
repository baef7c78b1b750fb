-- rooms.elements is the number of elements of the room. Triggers keep it in
-- the transaction of every insert and delete, so the per-room element limit
-- is checked against an exact figure read with the room's lock, not counted
-- before the write.
ALTER TABLE rooms ADD COLUMN elements INTEGER NOT NULL DEFAULT 0;

UPDATE rooms SET elements = (SELECT count(*) FROM elements WHERE elements.room = rooms.room);

CREATE TRIGGER elements_counted_insert AFTER INSERT ON elements
BEGIN
    UPDATE rooms SET elements = elements + 1 WHERE room = NEW.room;
END;

CREATE TRIGGER elements_counted_delete AFTER DELETE ON elements
BEGIN
    UPDATE rooms SET elements = elements - 1 WHERE room = OLD.room;
END;
