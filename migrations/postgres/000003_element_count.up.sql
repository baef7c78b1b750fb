-- rooms.elements is the number of elements of the room. Triggers keep it in
-- the transaction of every insert and delete, whichever node or version of
-- roomfeed (or person with psql) writes, so the per-room element limit is
-- checked against an exact figure read with the room's lock, not counted
-- before the write.
ALTER TABLE rooms ADD COLUMN elements bigint NOT NULL DEFAULT 0;

UPDATE rooms SET elements = c.n
FROM (SELECT room, count(*) AS n FROM elements GROUP BY room) AS c
WHERE rooms.room = c.room;

-- SET search_path FROM CURRENT: the function finds this schema's rooms table
-- whatever the search_path of the session that changes elements.
CREATE FUNCTION rooms_count_elements() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE rooms SET elements = elements + 1 WHERE room = NEW.room;
    ELSE
        UPDATE rooms SET elements = elements - 1 WHERE room = OLD.room;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER elements_counted AFTER INSERT OR DELETE ON elements
    FOR EACH ROW EXECUTE FUNCTION rooms_count_elements();
