-- 007_rate_limits.sql -- rate limits per queue and per rate key (see
-- schema/sqlite/011_rate_limits.sql for the meaning of each column). The
-- claims of a limited queue serialize on a transaction advisory lock of the
-- queue (server/store_pg_queues.c), so that replicas counting a bucket see
-- each other's records.

ALTER TABLE queue_settings
    ADD COLUMN limits_set BOOLEAN NOT NULL DEFAULT false,   -- false: the queue's defaults apply
    ADD COLUMN rate_limit BIGINT NOT NULL DEFAULT 0,        -- 0: none
    ADD COLUMN rate_period_ms BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN key_rate_limit BIGINT NOT NULL DEFAULT 0,    -- 0: none
    ADD COLUMN key_rate_period_ms BIGINT NOT NULL DEFAULT 0;

ALTER TABLE jobs ADD COLUMN rate_key TEXT COLLATE "C";     -- 1-200 bytes, or NULL

-- one row per claim of a limited bucket: key '' is the queue's own
CREATE TABLE rate_claims (
    queue TEXT COLLATE "C" NOT NULL,
    key   TEXT COLLATE "C" NOT NULL,
    at    BIGINT NOT NULL                                  -- ms, the database's clock, of the claim
);
CREATE INDEX rate_claims_by_bucket ON rate_claims(queue, key, at);
CREATE INDEX rate_claims_by_time ON rate_claims(at);
-- the keys of a queue that have due jobs (the wake-up of a key limit)
CREATE INDEX jobs_rate_keys ON jobs(queue, rate_key, run_at)
    WHERE rate_key IS NOT NULL AND status = 'pending' AND NOT held;
