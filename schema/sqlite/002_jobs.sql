-- 002_jobs.sql -- jobs: the agent queue (queue 'agent') and the outbound
-- queues ('outbound.<channel>.<accountId>'). A job goes pending ->
-- processing -> completed | failed; a failed attempt with attempts left goes
-- back to pending with a later run_at. Only server/jobs.c writes this table.
-- All times are server-clock milliseconds since the epoch.

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, even after retention deletes; "id":"123" in JSON
    queue           TEXT NOT NULL,      -- 1-200 chars of [A-Za-z0-9._:-]
    status          TEXT NOT NULL       -- pending | processing | completed | failed
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    payload         TEXT NOT NULL,      -- JSON text of any type, as enqueued
    priority        INTEGER NOT NULL DEFAULT 0, -- higher is claimed first
    run_at          INTEGER NOT NULL,   -- not claimable before this (delay, retry backoff)
    attempts        INTEGER NOT NULL DEFAULT 0, -- claims so far (+1 per claim)
    max_attempts    INTEGER NOT NULL DEFAULT 5, -- a failure or lock expiry at attempts >= this is final
    locked_by       TEXT,               -- workerId of the latest claim
    locked_until    INTEGER,            -- lock expiry while processing; NULL otherwise
    claim_token     TEXT,               -- fencing token of the current claim ('c_' + hex); NULL when none
    started_at      INTEGER,            -- when the latest claim began
    completed_at    INTEGER,            -- when it completed (retention is counted from here)
    error_reason    TEXT,               -- the last failure's reason (lock_expired, cancelled, worker's own)
    error_message   TEXT,               -- the last failure's human description
    result          TEXT,               -- JSON text given at completion, or NULL
    created_at      INTEGER NOT NULL,   -- enqueue time
    updated_at      INTEGER NOT NULL,   -- last change of any column
    dedupe_key      TEXT,               -- enqueue dedupe key, unique per queue among jobs not completed
    conversation_id TEXT,               -- agent jobs: the conversation they answer
    message_id      TEXT                -- agent jobs: the inbound message they answer
);

-- claim: the best due pending job of a queue (priority DESC, run_at, id)
CREATE INDEX jobs_claim ON jobs(queue, priority DESC, run_at, id) WHERE status = 'pending';
-- earliest future run_at of a queue (when a parked claim is due) and the
-- oldest due pending job (queue stats)
CREATE INDEX jobs_due ON jobs(queue, run_at) WHERE status = 'pending';
-- claims of expired locks, the earliest lock expiry of a queue, stale counts
CREATE INDEX jobs_locks ON jobs(queue, locked_until) WHERE status = 'processing';
-- the stale sweep: expired locks of every queue
CREATE INDEX jobs_expired ON jobs(locked_until) WHERE status = 'processing';
-- retention: completed jobs by completion time
CREATE INDEX jobs_completed ON jobs(completed_at) WHERE status = 'completed';
-- listing newest first: by queue, by status, by both; counts per queue/status
CREATE INDEX jobs_by_queue ON jobs(queue, id);
CREATE INDEX jobs_by_status ON jobs(status, id);
CREATE INDEX jobs_by_queue_status ON jobs(queue, status, id);
-- enqueue dedupe: a key's jobs in a queue
CREATE INDEX jobs_dedupe ON jobs(queue, dedupe_key) WHERE dedupe_key IS NOT NULL;
