/* leases.c -- leases (one owner per channel/account, fencing tokens) and
 * the accounts registry. */
#include <string.h>

#include "batond.h"

bool
channel_is_leased(const char *channel)
{
    const char *p = cfg.leased_channels;
    size_t n = strlen(channel);

    while (p && *p) {
        size_t len = strcspn(p, ",");
        while (len && *p == ' ')
            p++, len--;
        if (len == n && !strncmp(p, channel, n))
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

int
lease_fence(struct tx *t, struct req *r, const char *channel, const char *account, int64_t token)
{
    sqlite3_stmt *st = db_prep(t->db, "SELECT owner_id, token, expires_at FROM leases"
                                      " WHERE channel = ? AND account_id = ?");
    json_t *details;

    if (!st)
        return db_fail(r, t->db);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return req_fail(r, "lease_not_held", NULL, "no lease has been granted on %s/%s", channel, account);
    }
    if (sqlite3_column_type(st, 0) != SQLITE_NULL && sqlite3_column_int64(st, 1) == token &&
        sqlite3_column_int64(st, 2) > t->now) {
        sqlite3_reset(st);
        return 0;
    }
    details = json_pack("{s:o, s:I}", "currentOwnerId", col_text(st, 0),
                        "currentToken", (json_int_t)sqlite3_column_int64(st, 1));
    sqlite3_reset(st);
    return req_fail(r, "lease_not_held", details, "lease token %lld is not the current lease on %s/%s",
                    (long long)token, channel, account);
}
