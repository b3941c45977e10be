-- 003_leases.sql -- leases: one owner per (channel, accountId) at a time.
-- A row is created on the first acquire and never deleted, so the fencing
-- token of an account only grows, across release, force-release and
-- restarts.

CREATE TABLE leases (
    channel     TEXT NOT NULL,      -- whatsapp, telegram, ...
    account_id  TEXT NOT NULL,      -- the phone / bot account
    owner_id    TEXT,               -- current holder; NULL once released
    token       INTEGER NOT NULL,   -- fencing token of the latest grant; +1 per new holder
    acquired_at INTEGER,            -- ms, when the current holder got it
    renewed_at  INTEGER,            -- ms, last acquire/heartbeat by the holder
    expires_at  INTEGER,            -- ms, server clock; valid while now < expires_at
    transitions INTEGER NOT NULL DEFAULT 0, -- how many times the holder changed
    PRIMARY KEY (channel, account_id)
) WITHOUT ROWID;
-- listOwnedAccounts: leases held by an owner
CREATE INDEX leases_by_owner ON leases(owner_id, channel);
