/* routes.c -- the route table: every endpoint, its method, pattern, auth
 * and handler, in one place. First match wins, so literal paths come
 * before patterns that would also match them. */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

static int
health(struct req *r)
{
    sqlite3 *db = db_reader();
    sqlite3_stmt *st = db ? db_prep(db, "SELECT count(*) FROM sqlite_master") : NULL;
    bool ok = st && sqlite3_step(st) == SQLITE_ROW;

    if (st)
        sqlite3_reset(st);
    if (!ok)
        return req_fail(r, "unavailable", json_pack("{s:s}", "db", "error"),
                        "database cannot be read");
    return req_ok(r, 200, json_pack("{s:s, s:s, s:s}", "status", "ok", "version", BATON_VERSION,
                                    "db", "ok"));
}

const struct route routes[] = {
    {"GET", "/health", AUTH_NONE, health},

    /* events (events.c) */
    {"POST", "/v1/events", AUTH_BEARER, events_report},
    {"GET", "/v1/events", AUTH_BEARER, events_list},

    /* jobs (jobs.c) */

    /* leases and accounts (leases.c) */

    /* dedupe (dedupe.c) */

    /* sessions (sessions.c) */

    /* messages, inbound, outbound (messages.c) */
    {"POST", "/v1/inbound", AUTH_BEARER, messages_inbound},
    {"POST", "/v1/outbound", AUTH_BEARER, messages_outbound},
    {"GET", "/v1/messages/{id}", AUTH_BEARER, messages_get},
    {"GET", "/v1/conversations/{id}/messages", AUTH_BEARER, messages_list},
    {"POST", "/v1/conversations/{id}/messages", AUTH_BEARER, messages_web_post},

    /* webhooks (webhooks.c): their own secrets, checked by the handler */
    {"POST", "/telegram/webhook", AUTH_OWN, webhooks_telegram},
    {"POST", "/telegram/webhook/{accountId}", AUTH_OWN, webhooks_telegram},
    {"GET", "/whatsapp/webhook", AUTH_OWN, webhooks_whatsapp_verify},
    {"GET", "/whatsapp/webhook/{accountId}", AUTH_OWN, webhooks_whatsapp_verify},
    {"POST", "/whatsapp/webhook", AUTH_OWN, webhooks_whatsapp},
    {"POST", "/whatsapp/webhook/{accountId}", AUTH_OWN, webhooks_whatsapp},

    /* convex compatibility (convex.c) */

    {NULL, NULL, AUTH_NONE, NULL},
};

/* Match one path against one pattern; on success stores decoded params. */
static bool
match(const char *pattern, const char *path, char **params)
{
    int np = 0;

    while (*pattern && *path) {
        if (*pattern == '{') {
            const char *end = strchr(pattern, '}');
            size_t len = strcspn(path, "/");
            if (!end || !len || np >= MAX_PARAMS)
                goto no;
            params[np++] = strndup(path, len);
            pattern = end + 1;
            path += len;
        } else if (*pattern++ != *path++)
            goto no;
    }
    if (!*pattern && !*path)
        return true;
no:
    for (int i = 0; i < np; i++) {
        free(params[i]);
        params[i] = NULL;
    }
    return false;
}

const struct route *
routes_match(const char *method, const char *path, struct req *r, bool *path_known)
{
    *path_known = false;
    for (const struct route *rt = routes; rt->method; rt++) {
        char *params[MAX_PARAMS] = {0};
        if (!match(rt->pattern, path, params))
            continue;
        if (strcmp(rt->method, method)) {
            *path_known = true;
            for (int i = 0; i < MAX_PARAMS; i++)
                free(params[i]);
            continue;
        }
        memcpy(r->params, params, sizeof params);
        return rt;
    }
    return NULL;
}
