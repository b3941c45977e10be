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
    {"GET", "/metrics", AUTH_BEARER, metrics_get},

    /* events (events.c) */
    {"POST", "/v1/events", AUTH_BEARER, events_report},
    {"GET", "/v1/events", AUTH_BEARER, events_list},
    {"GET", "/v1/events/stream", AUTH_BEARER, events_stream},

    /* jobs (jobs.c) */
    {"POST", "/v1/jobs", AUTH_BEARER, jobs_enqueue},
    {"GET", "/v1/jobs", AUTH_BEARER, jobs_list},
    {"POST", "/v1/jobs/claim", AUTH_BEARER, jobs_claim},
    {"POST", "/v1/jobs/requeue-stale", AUTH_BEARER, jobs_requeue_stale},
    {"GET", "/v1/jobs/pending", AUTH_BEARER, jobs_pending},
    {"GET", "/v1/jobs/{id}", AUTH_BEARER, jobs_get},
    {"POST", "/v1/jobs/{id}/heartbeat", AUTH_BEARER, jobs_heartbeat},
    {"POST", "/v1/jobs/{id}/progress", AUTH_BEARER, jobs_progress},
    {"POST", "/v1/jobs/{id}/complete", AUTH_BEARER, jobs_complete},
    {"POST", "/v1/jobs/{id}/fail", AUTH_BEARER, jobs_fail},
    {"POST", "/v1/jobs/{id}/retry", AUTH_BEARER, jobs_retry},
    {"POST", "/v1/jobs/{id}/fail-now", AUTH_BEARER, jobs_fail_now},
    {"POST", "/v1/jobs/{id}/cancel", AUTH_BEARER, jobs_cancel},
    {"GET", "/v1/queues", AUTH_BEARER, jobs_queues},

    /* leases and accounts (leases.c) */
    {"POST", "/v1/leases/{channel}/{accountId}/acquire", AUTH_BEARER, leases_acquire},
    {"POST", "/v1/leases/{channel}/{accountId}/heartbeat", AUTH_BEARER, leases_heartbeat},
    {"POST", "/v1/leases/{channel}/{accountId}/release", AUTH_BEARER, leases_release},
    {"POST", "/v1/leases/{channel}/{accountId}/force-release", AUTH_BEARER, leases_force_release},
    {"GET", "/v1/leases/{channel}/{accountId}", AUTH_BEARER, leases_get},
    {"GET", "/v1/leases", AUTH_BEARER, leases_list},
    {"PUT", "/v1/accounts/{channel}/{accountId}", AUTH_BEARER, accounts_put},
    {"GET", "/v1/accounts/{channel}/{accountId}", AUTH_BEARER, accounts_get},
    {"DELETE", "/v1/accounts/{channel}/{accountId}", AUTH_BEARER, accounts_delete},
    {"GET", "/v1/accounts", AUTH_BEARER, accounts_list},

    /* dedupe (dedupe.c) */
    {"POST", "/v1/dedupe", AUTH_BEARER, dedupe_check},

    /* sessions (sessions.c) */
    {"GET", "/v1/sessions/{channel}/{accountId}", AUTH_BEARER, sessions_get_all},
    {"DELETE", "/v1/sessions/{channel}/{accountId}", AUTH_BEARER, sessions_clear},
    {"GET", "/v1/sessions/{channel}/{accountId}/keys", AUTH_BEARER, sessions_keys},
    {"POST", "/v1/sessions/{channel}/{accountId}/batch", AUTH_BEARER, sessions_batch},
    {"GET", "/v1/sessions/{channel}/{accountId}/keys/{key}", AUTH_BEARER, sessions_get},
    {"PUT", "/v1/sessions/{channel}/{accountId}/keys/{key}", AUTH_BEARER, sessions_put},
    {"DELETE", "/v1/sessions/{channel}/{accountId}/keys/{key}", AUTH_BEARER, sessions_delete},

    /* messages, inbound, outbound (messages.c) */
    {"POST", "/v1/inbound", AUTH_BEARER, messages_inbound},
    {"POST", "/v1/outbound", AUTH_BEARER, messages_outbound},
    {"GET", "/v1/messages/{id}", AUTH_BEARER, messages_get},
    {"GET", "/v1/conversations", AUTH_BEARER, messages_conversations},
    {"GET", "/v1/conversations/{id}/messages", AUTH_BEARER, messages_list},
    {"POST", "/v1/conversations/{id}/messages", AUTH_BEARER, messages_web_post},

    /* webhooks (webhooks.c): their own secrets, checked by the handler */
    {"POST", "/telegram/webhook", AUTH_OWN, webhooks_telegram},
    {"POST", "/telegram/webhook/{accountId}", AUTH_OWN, webhooks_telegram},
    {"GET", "/whatsapp/webhook", AUTH_OWN, webhooks_whatsapp_verify},
    {"GET", "/whatsapp/webhook/{accountId}", AUTH_OWN, webhooks_whatsapp_verify},
    {"POST", "/whatsapp/webhook", AUTH_OWN, webhooks_whatsapp},
    {"POST", "/whatsapp/webhook/{accountId}", AUTH_OWN, webhooks_whatsapp},

    /* convex compatibility (convex.c): Bearer or "Convex <secret>" */
    {"POST", "/api/query", AUTH_CONVEX, convex_function},
    {"POST", "/api/mutation", AUTH_CONVEX, convex_function},
    {"POST", "/api/action", AUTH_CONVEX, convex_function},
    {"POST", "/api/function", AUTH_CONVEX, convex_function},
    {"POST", "/api/run/{module}/{function}", AUTH_CONVEX, convex_run},
    {"GET", "/api/stream_function_logs", AUTH_OWN, convex_logs},
    {"GET", "/api/{version}/sync", AUTH_OWN, convex_sync},

    /* the operator console (console.c): pages, sign-in; its actions are
     * the /v1 routes above, called with the session cookie + CSRF token */
    {"GET", "/", AUTH_NONE, console_root},
    {"GET", "/console", AUTH_NONE, console_page},
    {"GET", "/console/login", AUTH_NONE, console_login_page},
    {"GET", "/console/console.js", AUTH_NONE, console_script},
    {"GET", "/console/api/session", AUTH_NONE, console_session},
    {"POST", "/console/api/login", AUTH_NONE, console_login},
    {"POST", "/console/api/logout", AUTH_BEARER, console_logout},
    {"GET", "/static/{name}", AUTH_NONE, console_static},

    /* the public web chat (webchat.c): visitor tokens, CORS */
    {"GET", "/chat", AUTH_NONE, webchat_page},
    {"POST", "/chat/api/open", AUTH_NONE, webchat_open},
    {"OPTIONS", "/chat/api/open", AUTH_NONE, webchat_preflight},
    {"GET", "/chat/api/conversations/{id}/messages", AUTH_VISITOR, webchat_list},
    {"POST", "/chat/api/conversations/{id}/messages", AUTH_VISITOR, webchat_post},
    {"OPTIONS", "/chat/api/conversations/{id}/messages", AUTH_NONE, webchat_preflight},

    {NULL, NULL, AUTH_NONE, NULL},
};

/* Match path[0..len) (still %-encoded) against one pattern; on success
 * stores the decoded params. Literal parts compare with the raw text. */
static bool
match(const char *pattern, const char *path, size_t len, char **params)
{
    const char *end = path + len, *why;
    int np = 0;

    while (*pattern && path < end) {
        if (*pattern == '{') {
            const char *close = strchr(pattern, '}');
            const char *slash = memchr(path, '/', (size_t)(end - path));
            size_t n = slash ? (size_t)(slash - path) : (size_t)(end - path);
            if (!close || !n || np >= MAX_PARAMS || url_decode(path, n, &params[np], &why) < 0)
                goto no;
            np++;
            pattern = close + 1;
            path += n;
        } else if (*pattern++ != *path++)
            goto no;
    }
    if (!*pattern && path == end)
        return true;
no:
    for (int i = 0; i < np; i++) {
        free(params[i]);
        params[i] = NULL;
    }
    return false;
}

const struct route *
routes_match(const char *method, const char *path, size_t len, struct req *r, bool *path_known)
{
    *path_known = false;
    for (const struct route *rt = routes; rt->method; rt++) {
        char *params[MAX_PARAMS] = {0};
        if (!match(rt->pattern, path, len, params))
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
