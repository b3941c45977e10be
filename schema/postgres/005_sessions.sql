-- 005_sessions.sql -- sessions (whatsappSession): per (channel, accountId)
-- a key/value store of JSON values -- the Baileys auth state ("creds",
-- "pre-key-12", "session-<jid>", ...). Values are written whole and read
-- back whole; see server/sessions.c for the encryption at rest
-- (PostgreSQL).
-- Names are COLLATE "C": compared and ordered byte by byte, as in SQLite.

CREATE TABLE sessions (
    channel    TEXT COLLATE "C" NOT NULL, -- whatsapp, ...
    account_id TEXT COLLATE "C" NOT NULL, -- the phone account the auth state belongs to
    key        TEXT COLLATE "C" NOT NULL, -- entry name, 1..512 printable bytes (not secret: stored in clear)
    enc        SMALLINT NOT NULL,   -- format of value: 0 = compact JSON text in clear,
                                    -- 1 = nonce(24) || XChaCha20-Poly1305 ciphertext of
                                    --     that JSON text, associated data "channel/accountId/key"
    value      BYTEA NOT NULL,      -- the entry's bytes, in the format given by enc
    updated_at BIGINT NOT NULL,     -- ms, last write of this entry
    PRIMARY KEY (channel, account_id, key)
);
-- getAll, keys, clearAll and single-entry access all go through the primary key.
