-- A claimed delivery is hidden by a lease column that no index covers, so claiming it is a
-- HOT update (no index writes); next_attempt_at keeps meaning "due at".
ALTER TABLE webhook_messages ADD COLUMN lease_until timestamptz;
ALTER TABLE webhook_messages SET (fillfactor = 80);
