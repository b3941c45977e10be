-- 008_queue_settings.sql -- queue_settings: the operator's settings of a
-- queue, one row per queue that has ever had one (the queue itself exists
-- only through its jobs). Today: whether it is paused. A paused queue
-- accepts enqueues and lets its processing jobs finish, but hands out no
-- new claims. Per-queue limits belong in this table too. A row with no
-- setting in force (resumed) is kept; it reads as the defaults.

CREATE TABLE queue_settings (
    queue      TEXT PRIMARY KEY,          -- the queue name (jobs.queue)
    paused     INTEGER NOT NULL DEFAULT 0, -- 1 while paused: no claims are handed out
    paused_at  INTEGER,                   -- ms, server clock, of the pause in force; NULL when not paused
    paused_by  TEXT,                      -- who paused it (the request's address); NULL when not paused
    reason     TEXT,                      -- the operator's reason for the pause, or NULL
    updated_at INTEGER NOT NULL           -- ms, server clock, the last change of this row
) WITHOUT ROWID;
