-- The batch writer of roomfeed counts the elements of the rooms it writes
-- itself: it reads rooms.elements with the room's lock, follows each write's
-- creation or deletion in Go, and sets the count together with the room's seq
-- in the one update of the room row it makes at the end of the batch. The
-- trigger's own UPDATE of the row for each inserted or deleted element would
-- be a second new version of the row (and its WAL) per write.
--
-- Such a transaction says so with
--     set_config('roomfeed.counts_elements', 'on', true)
-- (transaction-local: it ends with the COMMIT or ROLLBACK), and the trigger
-- then does nothing. Every other writer (an older roomfeed during a rolling
-- upgrade, a write of roomfeed run alone, a person with psql, a restore) does
-- not set it and stays counted by the trigger, as before.
--
-- The WHEN condition is evaluated as each row is inserted or deleted, without
-- calling the function or queueing the after-trigger event when it is false.
-- current_setting(..., true) is NULL where the setting was never made and ''
-- once a transaction that made it has ended, hence IS DISTINCT FROM.
--
-- Both ways of counting serialize on the room row: the batch locks it before
-- it reads the count and holds the lock until it commits the count, and the
-- trigger's UPDATE waits for that lock (and reads the committed count), so
-- an old node's writes and a new node's batch in the same room never lose a
-- count.
DROP TRIGGER elements_counted ON elements;

CREATE TRIGGER elements_counted AFTER INSERT OR DELETE ON elements
    FOR EACH ROW
    WHEN (current_setting('roomfeed.counts_elements', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION rooms_count_elements();
