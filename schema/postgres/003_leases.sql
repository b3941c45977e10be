-- 003_leases.sql -- leases: one owner per (channel, accountId) at a time,
-- and the accounts registry (PostgreSQL).
-- A lease row is created on the first grant and never deleted, so the
-- fencing token of an account only grows, across release, force-release and
-- restarts, whichever replica made the grant: the next token is computed
-- from the row by the conditional upsert that grants it. Names are
-- COLLATE "C": compared and ordered byte by byte, as in SQLite.

CREATE TABLE leases (
    channel     TEXT COLLATE "C" NOT NULL, -- whatsapp, telegram, ...
    account_id  TEXT COLLATE "C" NOT NULL, -- the phone / bot account
    owner_id    TEXT COLLATE "C", -- current holder; NULL once released or force-released
    token       BIGINT NOT NULL,    -- fencing token of the latest grant; +1 per new grant
    acquired_at BIGINT NOT NULL,    -- ms, database clock, when the latest grant was made
    renewed_at  BIGINT NOT NULL,    -- ms, last grant/heartbeat by the holder
    expires_at  BIGINT NOT NULL,    -- ms; valid while now < expires_at
                                    -- (set to the release time on release)
    ttl_ms      BIGINT NOT NULL,    -- ttlMs of the last grant/heartbeat: a heartbeat's default
    transitions BIGINT NOT NULL DEFAULT 0, -- how many grants with a new token were made
    PRIMARY KEY (channel, account_id)
);
-- listOwnedAccounts: leases held by an owner (optionally on one channel)
CREATE INDEX leases_by_owner ON leases(owner_id, channel);
-- leases currently held on any channel/owner: the rows with a holder, by expiry
CREATE INDEX leases_held ON leases(expires_at) WHERE owner_id IS NOT NULL;

-- The registry of accounts the workers should serve (listEnabledAccounts).
CREATE TABLE accounts (
    channel     TEXT COLLATE "C" NOT NULL, -- whatsapp, telegram, ...
    account_id  TEXT COLLATE "C" NOT NULL, -- the phone / bot account
    enabled     BOOLEAN NOT NULL,   -- true: a worker should run it; false: configured but off
    config      TEXT NOT NULL DEFAULT '{}', -- JSON object text, kept byte for byte
    created_at  BIGINT NOT NULL,    -- ms, first PUT
    updated_at  BIGINT NOT NULL,    -- ms, latest PUT
    PRIMARY KEY (channel, account_id)
);
-- listEnabledAccounts: by enabled flag, optionally on one channel
CREATE INDEX accounts_by_enabled ON accounts(enabled, channel);
