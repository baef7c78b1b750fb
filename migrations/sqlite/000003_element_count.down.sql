DROP TRIGGER elements_counted_delete;
DROP TRIGGER elements_counted_insert;
ALTER TABLE rooms DROP COLUMN elements;
