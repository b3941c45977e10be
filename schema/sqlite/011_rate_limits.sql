-- 011_rate_limits.sql -- rate limits per queue and per rate key.
--
-- A limit is "at most `limit` claims in any window of `period` ms", judged
-- by the store's clock: a sliding window over the claims themselves, kept
-- in rate_claims (one row per claim of a limited queue or key, deleted once
-- older than the period). A queue may have a limit of its own (its claims
-- are the rows with key '') and one for each of its rate keys (the jobs'
-- rate_key). Queues without limits write and read none of this.

-- the limits in force; limits_set 0 means the queue's defaults apply
-- (docs/jobs.md: the outbound queues of Telegram and WhatsApp have some)
ALTER TABLE queue_settings ADD COLUMN limits_set INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue_settings ADD COLUMN rate_limit INTEGER NOT NULL DEFAULT 0;      -- 0: none
ALTER TABLE queue_settings ADD COLUMN rate_period_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue_settings ADD COLUMN key_rate_limit INTEGER NOT NULL DEFAULT 0;  -- 0: none
ALTER TABLE queue_settings ADD COLUMN key_rate_period_ms INTEGER NOT NULL DEFAULT 0;

ALTER TABLE jobs ADD COLUMN rate_key TEXT;          -- 1-200 bytes, or NULL (only the queue's limit)

-- one row per claim of a limited bucket: key '' is the queue's own
CREATE TABLE rate_claims (
    queue TEXT NOT NULL,
    key   TEXT NOT NULL,
    at    INTEGER NOT NULL                          -- ms, store clock, of the claim
);
CREATE INDEX rate_claims_by_bucket ON rate_claims(queue, key, at);
CREATE INDEX rate_claims_by_time ON rate_claims(at);
-- the keys of a queue that have due jobs (the wake-up of a key limit)
CREATE INDEX jobs_rate_keys ON jobs(queue, rate_key, run_at)
    WHERE rate_key IS NOT NULL AND status = 'pending' AND held = 0;
