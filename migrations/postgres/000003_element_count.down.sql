DROP TRIGGER elements_counted ON elements;
DROP FUNCTION rooms_count_elements();
ALTER TABLE rooms DROP COLUMN elements;
