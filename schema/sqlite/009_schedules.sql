-- 009_schedules.sql -- schedules: a job enqueued at each due time of a cron
-- expression or every every_ms. The writer's maintenance fires the due
-- ones: it advances next_run and inserts the job (dedupe key
-- schedule:<name>:<due ms>) in one write, so a due time gives one job,
-- even across restarts.

CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,          -- [A-Za-z0-9_-], 1-100 characters
    queue       TEXT NOT NULL,             -- the queue its jobs go to
    payload     TEXT NOT NULL,             -- JSON text of each job's payload
    cron        TEXT,                      -- five-field expression, or NULL
    every_ms    INTEGER,                   -- the interval, or NULL (exactly one of cron, every_ms is set)
    timezone    TEXT NOT NULL DEFAULT 'UTC',
    paused      INTEGER NOT NULL DEFAULT 0,
    next_run    INTEGER NOT NULL,          -- ms, server clock: the next due time
    last_run    INTEGER,                   -- ms: the due time last fired
    last_job_id INTEGER,                   -- the job enqueued then
    runs        INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
-- the maintenance looks for the earliest due unpaused schedule
CREATE INDEX schedules_by_next_run ON schedules(next_run) WHERE paused = 0;
