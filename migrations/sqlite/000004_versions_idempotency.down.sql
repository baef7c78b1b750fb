DROP TABLE idempotency_keys;
DROP TABLE element_versions;
