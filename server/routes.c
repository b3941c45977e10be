/* routes.c -- the route table: every endpoint, its method, pattern, auth,
 * handler and kind (enum route_kind), in one place. First match wins, so
 * literal paths come before patterns that would also match them. */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

static int
health(struct req *r)
{
    struct tx t;
    int rc = tx_read(&t) < 0 ? -1 : store->stats->ping(&t);
    json_t *body;

    tx_read_end(&t);
    if (rc < 0)
        return req_fail(r, "unavailable", json_pack("{s:s}", "db", "down"),
                        "database cannot be read");
    body = json_pack("{s:s, s:s, s:s}", "status", "ok", "version", BATON_VERSION, "db", "ok");
    /* replicas: whether this one runs the maintenance (sweep.c) */
    if (body && store->replicas)
        json_object_set_new(body, "maintainer", json_boolean(store->replicas->maintainer(NULL)));
    return req_ok(r, 200, body);
}

const struct route routes[] = {
    {"GET", "/health", AUTH_NONE, health, ROUTE_READ},
    {"GET", "/metrics", AUTH_BEARER, metrics_get, ROUTE_READ},

    /* events (events.c) */
    {"POST", "/v1/events", AUTH_BEARER, events_report, ROUTE_WRITE},
    {"GET", "/v1/events", AUTH_BEARER, events_list, ROUTE_READ},
    {"GET", "/v1/events/stream", AUTH_BEARER, events_stream, ROUTE_STREAM},

    /* jobs (jobs.c) */
    {"POST", "/v1/jobs", AUTH_BEARER, jobs_enqueue, ROUTE_WRITE},
    {"GET", "/v1/jobs", AUTH_BEARER, jobs_list, ROUTE_READ},
    {"POST", "/v1/jobs/claim", AUTH_BEARER, jobs_claim, ROUTE_POLL},
    {"POST", "/v1/jobs/batch", AUTH_BEARER, jobs_enqueue_batch, ROUTE_WRITE},
    {"POST", "/v1/jobs/requeue-stale", AUTH_BEARER, jobs_requeue_stale, ROUTE_WRITE},
    {"GET", "/v1/jobs/pending", AUTH_BEARER, jobs_pending, ROUTE_READ},
    {"GET", "/v1/jobs/{id}", AUTH_BEARER, jobs_get, ROUTE_READ},
    {"POST", "/v1/jobs/{id}/heartbeat", AUTH_BEARER, jobs_heartbeat, ROUTE_WRITE},
    {"POST", "/v1/jobs/{id}/progress", AUTH_BEARER, jobs_progress, ROUTE_WRITE},
    {"POST", "/v1/jobs/{id}/complete", AUTH_BEARER, jobs_complete, ROUTE_POLL},   /* next.waitMs */
    {"POST", "/v1/jobs/{id}/fail", AUTH_BEARER, jobs_fail, ROUTE_POLL},           /* next.waitMs */
    {"POST", "/v1/jobs/{id}/retry", AUTH_BEARER, jobs_retry, ROUTE_WRITE},
    {"POST", "/v1/jobs/{id}/fail-now", AUTH_BEARER, jobs_fail_now, ROUTE_WRITE},
    {"POST", "/v1/jobs/{id}/cancel", AUTH_BEARER, jobs_cancel, ROUTE_WRITE},
    {"GET", "/v1/queues", AUTH_BEARER, jobs_queues, ROUTE_READ},
    {"POST", "/v1/queues/{queue}/pause", AUTH_BEARER, queues_pause, ROUTE_WRITE},
    {"POST", "/v1/queues/{queue}/resume", AUTH_BEARER, queues_resume, ROUTE_WRITE},
    {"GET", "/v1/queues/{queue}/limits", AUTH_BEARER, queues_limits_get, ROUTE_READ},
    {"PUT", "/v1/queues/{queue}/limits", AUTH_BEARER, queues_limits_put, ROUTE_WRITE},
    {"DELETE", "/v1/queues/{queue}/limits", AUTH_BEARER, queues_limits_delete, ROUTE_WRITE},

    /* leases and accounts (leases.c) */
    {"POST", "/v1/leases/{channel}/{accountId}/acquire", AUTH_BEARER, leases_acquire, ROUTE_WRITE},
    {"POST", "/v1/leases/{channel}/{accountId}/heartbeat", AUTH_BEARER, leases_heartbeat, ROUTE_WRITE},
    {"POST", "/v1/leases/{channel}/{accountId}/release", AUTH_BEARER, leases_release, ROUTE_WRITE},
    {"POST", "/v1/leases/{channel}/{accountId}/force-release", AUTH_BEARER, leases_force_release, ROUTE_WRITE},
    {"GET", "/v1/leases/{channel}/{accountId}", AUTH_BEARER, leases_get, ROUTE_READ},
    {"GET", "/v1/leases", AUTH_BEARER, leases_list, ROUTE_READ},
    {"PUT", "/v1/accounts/{channel}/{accountId}", AUTH_BEARER, accounts_put, ROUTE_WRITE},
    {"GET", "/v1/accounts/{channel}/{accountId}", AUTH_BEARER, accounts_get, ROUTE_READ},
    {"DELETE", "/v1/accounts/{channel}/{accountId}", AUTH_BEARER, accounts_delete, ROUTE_WRITE},
    {"GET", "/v1/accounts", AUTH_BEARER, accounts_list, ROUTE_READ},

    /* schedules (schedules.c) */
    {"POST", "/v1/schedules", AUTH_BEARER, schedules_create, ROUTE_WRITE},
    {"GET", "/v1/schedules", AUTH_BEARER, schedules_list, ROUTE_READ},
    {"GET", "/v1/schedules/{name}", AUTH_BEARER, schedules_get, ROUTE_READ},
    {"DELETE", "/v1/schedules/{name}", AUTH_BEARER, schedules_delete, ROUTE_WRITE},
    {"POST", "/v1/schedules/{name}/pause", AUTH_BEARER, schedules_pause, ROUTE_WRITE},
    {"POST", "/v1/schedules/{name}/resume", AUTH_BEARER, schedules_resume, ROUTE_WRITE},

    /* dedupe (dedupe.c) */
    {"POST", "/v1/dedupe", AUTH_BEARER, dedupe_check, ROUTE_WRITE},

    /* sessions (sessions.c) */
    {"GET", "/v1/sessions/{channel}/{accountId}", AUTH_BEARER, sessions_get_all, ROUTE_READ},
    {"DELETE", "/v1/sessions/{channel}/{accountId}", AUTH_BEARER, sessions_clear, ROUTE_WRITE},
    {"GET", "/v1/sessions/{channel}/{accountId}/keys", AUTH_BEARER, sessions_keys, ROUTE_READ},
    {"POST", "/v1/sessions/{channel}/{accountId}/batch", AUTH_BEARER, sessions_batch, ROUTE_WRITE},
    {"GET", "/v1/sessions/{channel}/{accountId}/keys/{key}", AUTH_BEARER, sessions_get, ROUTE_READ},
    {"PUT", "/v1/sessions/{channel}/{accountId}/keys/{key}", AUTH_BEARER, sessions_put, ROUTE_WRITE},
    {"DELETE", "/v1/sessions/{channel}/{accountId}/keys/{key}", AUTH_BEARER, sessions_delete, ROUTE_WRITE},

    /* messages, inbound, outbound (messages.c) */
    {"POST", "/v1/inbound", AUTH_BEARER, messages_inbound, ROUTE_WRITE},
    {"POST", "/v1/outbound", AUTH_BEARER, messages_outbound, ROUTE_WRITE},
    {"GET", "/v1/messages/{id}", AUTH_BEARER, messages_get, ROUTE_READ},
    {"GET", "/v1/conversations", AUTH_BEARER, messages_conversations, ROUTE_READ},
    {"GET", "/v1/conversations/{id}/messages", AUTH_BEARER, messages_list, ROUTE_POLL},
    {"POST", "/v1/conversations/{id}/messages", AUTH_BEARER, messages_web_post, ROUTE_WRITE},

    /* webhooks (webhooks.c): their own secrets, checked by the handler */
    {"POST", "/telegram/webhook", AUTH_OWN, webhooks_telegram, ROUTE_WRITE},
    {"POST", "/telegram/webhook/{accountId}", AUTH_OWN, webhooks_telegram, ROUTE_WRITE},
    {"GET", "/whatsapp/webhook", AUTH_OWN, webhooks_whatsapp_verify, ROUTE_READ},
    {"GET", "/whatsapp/webhook/{accountId}", AUTH_OWN, webhooks_whatsapp_verify, ROUTE_READ},
    {"POST", "/whatsapp/webhook", AUTH_OWN, webhooks_whatsapp, ROUTE_WRITE},
    {"POST", "/whatsapp/webhook/{accountId}", AUTH_OWN, webhooks_whatsapp, ROUTE_WRITE},

    /* convex compatibility (convex.c): Bearer or "Convex <secret>" */
    {"POST", "/api/query", AUTH_CONVEX, convex_function, ROUTE_POLL},
    {"POST", "/api/mutation", AUTH_CONVEX, convex_function, ROUTE_POLL},
    {"POST", "/api/action", AUTH_CONVEX, convex_function, ROUTE_POLL},
    {"POST", "/api/function", AUTH_CONVEX, convex_function, ROUTE_POLL},
    {"POST", "/api/run/{module}/{function}", AUTH_CONVEX, convex_run, ROUTE_POLL},
    {"GET", "/api/stream_function_logs", AUTH_OWN, convex_logs, ROUTE_POLL},
    {"GET", "/api/{version}/sync", AUTH_OWN, convex_sync, ROUTE_STREAM},

    /* the operator console (console.c): pages, sign-in; its actions are
     * the /v1 routes above, called with the session cookie + CSRF token */
    {"GET", "/", AUTH_NONE, console_root, ROUTE_READ},
    {"GET", "/console", AUTH_NONE, console_page, ROUTE_READ},
    {"GET", "/console/login", AUTH_NONE, console_login_page, ROUTE_READ},
    {"GET", "/console/console.js", AUTH_NONE, console_script, ROUTE_READ},
    {"GET", "/console/api/session", AUTH_NONE, console_session, ROUTE_READ},
    {"POST", "/console/api/login", AUTH_NONE, console_login, ROUTE_READ},
    {"POST", "/console/api/logout", AUTH_BEARER, console_logout, ROUTE_READ},
    {"GET", "/static/{name}", AUTH_NONE, console_static, ROUTE_READ},

    /* the public web chat (webchat.c): visitor tokens, CORS */
    {"GET", "/chat", AUTH_NONE, webchat_page, ROUTE_READ},
    {"POST", "/chat/api/open", AUTH_NONE, webchat_open, ROUTE_READ},
    {"OPTIONS", "/chat/api/open", AUTH_NONE, webchat_preflight, ROUTE_READ},
    {"GET", "/chat/api/conversations/{id}/messages", AUTH_VISITOR, webchat_list, ROUTE_POLL},
    {"POST", "/chat/api/conversations/{id}/messages", AUTH_VISITOR, webchat_post, ROUTE_WRITE},
    {"OPTIONS", "/chat/api/conversations/{id}/messages", AUTH_NONE, webchat_preflight, ROUTE_READ},

    {NULL, NULL, AUTH_NONE, NULL, ROUTE_NONE},
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
