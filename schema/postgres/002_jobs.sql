-- 002_jobs.sql -- jobs, queue settings and schedules on PostgreSQL: the
-- tables of schema/sqlite/002_jobs.sql, 008_queue_settings.sql,
-- 009_schedules.sql and 010_order_keys.sql in their final shape, with the
-- same columns and meanings (see those files). Times are BIGINT
-- milliseconds since the epoch, taken from the database's clock by the
-- store and passed in. Names and keys are COLLATE "C": listings sort them
-- byte by byte, as SQLite does, and the indexes serve that order.
--
-- Several batond processes write here at once. A claim is one statement
-- that locks its row (FOR UPDATE SKIP LOCKED over jobs_claim); the order-key
-- operations serialize per (queue, order_key) with a transaction advisory
-- lock (server/store_pg_jobs.c says why).

CREATE TABLE jobs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- never reused; "id":"123" in JSON
    queue           TEXT COLLATE "C" NOT NULL,  -- 1-200 chars of [A-Za-z0-9._:-]
    status          TEXT NOT NULL               -- pending | processing | completed | failed
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    payload         TEXT NOT NULL,      -- JSON text of any type, byte for byte as enqueued
    priority        BIGINT NOT NULL DEFAULT 0,  -- higher is claimed first
    run_at          BIGINT NOT NULL,    -- not claimable before this (delay, retry backoff)
    attempts        BIGINT NOT NULL DEFAULT 0,  -- claims so far (+1 per claim)
    max_attempts    BIGINT NOT NULL DEFAULT 5,  -- a failure or lock expiry at attempts >= this is final
    locked_by       TEXT,               -- workerId of the latest claim
    locked_until    BIGINT,             -- lock expiry while processing; NULL otherwise
    claim_token     TEXT,               -- fencing token of the current claim ('c_' + hex); NULL when none
    started_at      BIGINT,             -- when the latest claim began
    completed_at    BIGINT,             -- when it completed (retention is counted from here)
    error_reason    TEXT,               -- the last failure's reason (lock_expired, cancelled, worker's own)
    error_message   TEXT,               -- the last failure's human description
    result          TEXT,               -- JSON text given at completion, or NULL
    created_at      BIGINT NOT NULL,    -- enqueue time
    updated_at      BIGINT NOT NULL,    -- last change of any column
    dedupe_key      TEXT COLLATE "C",   -- enqueue dedupe key, one per queue among jobs not completed
    conversation_id TEXT,               -- agent jobs: the conversation they answer
    message_id      TEXT,               -- agent jobs: the inbound message they answer
    order_key       TEXT COLLATE "C",   -- 1-200 bytes, or NULL (no ordering)
    held            BOOLEAN NOT NULL DEFAULT false -- waits behind an earlier job of its order key
);

-- claim: the best due pending job of a queue that holds its key (or has none)
CREATE INDEX jobs_claim ON jobs(queue, priority DESC, run_at, id) WHERE status = 'pending' AND NOT held;
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
-- a key's active jobs: its holder (held = false) and its earliest waiting job
CREATE INDEX jobs_keys ON jobs(queue, order_key, held, id)
    WHERE order_key IS NOT NULL AND status IN ('pending', 'processing');

-- queue_settings: the operator's settings of a queue, one row per queue
-- that has ever had one (see schema/sqlite/008_queue_settings.sql).
CREATE TABLE queue_settings (
    queue      TEXT COLLATE "C" PRIMARY KEY, -- the queue name (jobs.queue)
    paused     BOOLEAN NOT NULL DEFAULT false, -- no claims are handed out while true
    paused_at  BIGINT,                  -- ms, the pause in force; NULL when not paused
    paused_by  TEXT,                    -- who paused it (the request's address); NULL when not paused
    reason     TEXT,                    -- the operator's reason for the pause, or NULL
    updated_at BIGINT NOT NULL          -- ms, the last change of this row
);

-- schedules: a job enqueued at each due time of a cron expression or every
-- every_ms (see schema/sqlite/009_schedules.sql).
CREATE TABLE schedules (
    name        TEXT COLLATE "C" PRIMARY KEY, -- [A-Za-z0-9_-], 1-100 characters
    queue       TEXT NOT NULL,          -- the queue its jobs go to
    payload     TEXT NOT NULL,          -- JSON text of each job's payload
    cron        TEXT,                   -- five-field expression, or NULL
    every_ms    BIGINT,                 -- the interval, or NULL (exactly one of cron, every_ms is set)
    timezone    TEXT NOT NULL DEFAULT 'UTC',
    paused      BOOLEAN NOT NULL DEFAULT false,
    next_run    BIGINT NOT NULL,        -- ms: the next due time
    last_run    BIGINT,                 -- ms: the due time last fired
    last_job_id BIGINT,                 -- the job enqueued then
    runs        BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
-- the maintenance looks for the earliest due unpaused schedule
CREATE INDEX schedules_by_next_run ON schedules(next_run) WHERE NOT paused;
