-- 005_sessions.sql -- sessions (whatsappSession): per (channel, accountId)
-- a key/value store of JSON values -- the Baileys auth state ("creds",
-- "pre-key-12", "session-<jid>", ...). Values are written whole and read
-- back whole; see server/sessions.c for the encryption at rest.

CREATE TABLE sessions (
    channel    TEXT NOT NULL,       -- whatsapp, ...
    account_id TEXT NOT NULL,       -- the phone account the auth state belongs to
    key        TEXT NOT NULL,       -- entry name, 1..512 printable bytes (not secret: stored in clear)
    enc        INTEGER NOT NULL,    -- format of value: 0 = compact JSON text in clear,
                                    -- 1 = BLOB nonce(24) || XChaCha20-Poly1305 ciphertext of
                                    --     that JSON text, associated data "channel/accountId/key"
    value      BLOB NOT NULL,       -- the entry, in the format given by enc
    updated_at INTEGER NOT NULL,    -- ms, server clock, last write of this entry
    PRIMARY KEY (channel, account_id, key)
) WITHOUT ROWID;
-- getAll, keys, clearAll and single-entry access all go through the primary key.
