-- Outbox for job submission: the API inserts the row first, then publishes the run to JOBS
-- and stamps bus_published_at. A queued row with bus_published_at NULL is a run whose
-- publish failed or was never confirmed; the API's republisher publishes it again
-- (Nats-Msg-Id <job_id>:<run> lets the server drop a copy it already stored).
ALTER TABLE jobs ADD COLUMN bus_published_at timestamptz;
-- Rows from before this migration were published (the old API deleted the ones that failed).
UPDATE jobs SET bus_published_at = updated_at;
CREATE INDEX jobs_unpublished ON jobs (updated_at) WHERE status = 'queued' AND bus_published_at IS NULL;
