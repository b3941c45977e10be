-- 010_order_keys.sql -- ordered keys: among the jobs of one queue with the
-- same order_key at most one is processing, and they are claimed in id
-- (enqueue) order.
--
-- Of the active (pending or processing) jobs of a key exactly one holds the
-- key (held = 0), the others wait behind it (held = 1). A job without a key
-- always has held = 0, so the claim of such a job is what it was: the best
-- job of jobs_claim, which now lists only the jobs that hold their key.
-- When the holder leaves (completed or finally failed) the key passes to the
-- earliest waiting job: two probes of jobs_keys. An expired lock does not
-- pass the key: the job is requeued and, holding its key, is claimed again
-- first (or, with no attempt left, fails, which passes the key on).

ALTER TABLE jobs ADD COLUMN order_key TEXT;         -- 1-200 bytes, or NULL (no ordering)
ALTER TABLE jobs ADD COLUMN held INTEGER NOT NULL DEFAULT 0; -- 1: waits behind an earlier job of its key

-- claim: the best due pending job of a queue that holds its key (or has none)
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs(queue, priority DESC, run_at, id) WHERE status = 'pending' AND held = 0;
-- a key's active jobs: its holder (held = 0) and its earliest waiting job
CREATE INDEX jobs_keys ON jobs(queue, order_key, held, id)
    WHERE order_key IS NOT NULL AND status IN ('pending', 'processing');
