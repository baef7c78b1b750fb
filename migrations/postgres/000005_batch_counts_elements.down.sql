-- The trigger of migration 3 again, counting every insert and delete, for a
-- roomfeed of before migration 5. A newer node still writing meanwhile stays
-- exact: its batch sets the count it read under the room's lock plus its own
-- changes, whatever the trigger added before, so it only writes the room row
-- twice again.
DROP TRIGGER elements_counted ON elements;

CREATE TRIGGER elements_counted AFTER INSERT OR DELETE ON elements
    FOR EACH ROW EXECUTE FUNCTION rooms_count_elements();
