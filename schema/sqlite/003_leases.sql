-- 003_leases.sql -- leases: one owner per (channel, accountId) at a time,
-- and the accounts registry.
-- A lease row is created on the first acquire and never deleted, so the
-- fencing token of an account only grows, across release, force-release and
-- restarts.

CREATE TABLE leases (
    channel     TEXT NOT NULL,      -- whatsapp, telegram, ...
    account_id  TEXT NOT NULL,      -- the phone / bot account
    owner_id    TEXT,               -- current holder; NULL once released or force-released
    token       INTEGER NOT NULL,   -- fencing token of the latest grant; +1 per new grant
    acquired_at INTEGER NOT NULL,   -- ms, when the latest grant was made
    renewed_at  INTEGER NOT NULL,   -- ms, last acquire/heartbeat by the holder
    expires_at  INTEGER NOT NULL,   -- ms, server clock; valid while now < expires_at
                                    -- (set to the release time on release)
    ttl_ms      INTEGER NOT NULL,   -- ttlMs of the last acquire/heartbeat: a heartbeat's default
    transitions INTEGER NOT NULL DEFAULT 0, -- how many grants with a new token were made
    PRIMARY KEY (channel, account_id)
) WITHOUT ROWID;
-- listOwnedAccounts: leases held by an owner (optionally on one channel)
CREATE INDEX leases_by_owner ON leases(owner_id, channel);
-- leases currently held on any channel/owner: the rows with a holder, by expiry
CREATE INDEX leases_held ON leases(expires_at) WHERE owner_id IS NOT NULL;

-- The registry of accounts the workers should serve (listEnabledAccounts).
CREATE TABLE accounts (
    channel     TEXT NOT NULL,      -- whatsapp, telegram, ...
    account_id  TEXT NOT NULL,      -- the phone / bot account
    enabled     INTEGER NOT NULL,   -- 1: a worker should run it; 0: configured but off
    config      TEXT NOT NULL DEFAULT '{}', -- JSON object, free-form per channel
    created_at  INTEGER NOT NULL,   -- ms, first PUT
    updated_at  INTEGER NOT NULL,   -- ms, latest PUT
    PRIMARY KEY (channel, account_id)
) WITHOUT ROWID;
-- listEnabledAccounts: by enabled flag, optionally on one channel
CREATE INDEX accounts_by_enabled ON accounts(enabled, channel);
