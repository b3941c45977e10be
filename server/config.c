/* config.c -- batond's settings: one table gives each setting its
 * environment variable, flag, default and help line; flags override the
 * environment; any invalid value stops start-up with a one-line reason. */
#include <stdlib.h>
#include <string.h>

#include "base.h"

struct config cfg;

enum kind { K_STR, K_MS, K_INT, K_BOOL, K_LISTEN, K_ENV, K_SYNC, K_LEVEL };

struct setting {
    const char *env;
    const char *flag;
    enum kind kind;
    const char *dflt;           /* NULL: unset */
    size_t off;                 /* offset into struct config */
    int64_t min, max;           /* K_MS / K_INT */
    const char *help;
};

#define OFF(f) offsetof(struct config, f)
#define DAY "604800000"

static const struct setting settings[] = {
    {"BATON_LISTEN", "listen", K_LISTEN, "127.0.0.1:3210", 0, 0, 0,
     "address and port to serve on (port 0 picks a free one)"},
    {"BATON_DB", "db", K_STR, "./data/baton.db", OFF(db_path), 0, 0,
     "SQLite database file (its directory is created), or a postgres:// URL"},
    {"BATON_PG_POLL_ONLY", "pg-poll-only", K_BOOL, "0", OFF(pg_poll_only), 0, 0,
     "PostgreSQL behind a pooler that cannot LISTEN: replicas look again every 250 ms"},
    {"AGENT_SECRET", "secret", K_STR, NULL, OFF(secret), 0, 0,
     "bearer secret for /v1, /api and /metrics (prefer the environment)"},
    {"BATON_ENV", "env", K_ENV, "development", OFF(production), 0, 0,
     "development or production (production requires AGENT_SECRET)"},
    {"BATON_MAX_BODY", "max-body", K_INT, "1048576", OFF(max_body), 1, INT32_MAX,
     "largest accepted request body in bytes (413 above)"},
    {"BATON_SYNC", "sync", K_SYNC, "full", OFF(sync_full), 0, 0,
     "full: a 2xx is on disk; normal: may lose the last commits on power loss"},
    {"BATON_DB_CONVERT_MAX_BYTES", "db-convert-max-bytes", K_INT, "1073741824", OFF(db_convert_max_bytes), 0,
     INT64_MAX, "SQLite: a file made before auto-vacuum is converted at start when at most this big"},
    {"BATON_SWEEP_INTERVAL_MS", "sweep-interval-ms", K_MS, "5000", OFF(sweep_interval_ms), 10, INT32_MAX,
     "how often expired job locks, old jobs, dedupe keys and events are swept"},
    {"BATON_JOB_LOCK_MS", "job-lock-ms", K_MS, "300000", OFF(job_lock_ms), 100, INT32_MAX,
     "default job lock when a claim gives no lockMs"},
    {"BATON_RETENTION_MS", "retention-ms", K_MS, DAY, OFF(retention_ms), 0, INT64_MAX / 4,
     "completed jobs older than this are deleted"},
    {"BATON_DEDUPE_TTL_MS", "dedupe-ttl-ms", K_MS, DAY, OFF(dedupe_ttl_ms), 1, INT64_MAX / 4,
     "how long an inbound message id is remembered"},
    {"BATON_EVENT_RETENTION_MS", "event-retention-ms", K_MS, DAY, OFF(event_retention_ms), 0, INT64_MAX / 4,
     "events older than this are deleted"},
    {"BATON_LEASED_CHANNELS", "leased-channels", K_STR, "whatsapp", OFF(leased_channels), 0, 0,
     "channels whose outbound queues require the current lease token"},
    {"BATON_SESSION_KEY", "session-key", K_STR, NULL, OFF(session_key), 0, 0,
     "32-byte key (hex or base64) encrypting session values at rest"},
    {"BATON_SESSION_REQUIRE_LEASE", "session-require-lease", K_BOOL, "0", OFF(session_require_lease), 0, 0,
     "1: session writes must carry the current lease token"},
    {"TELEGRAM_WEBHOOK_SECRET", "telegram-webhook-secret", K_STR, NULL, OFF(telegram_secret), 0, 0,
     "x-telegram-bot-api-secret-token expected on /telegram/webhook"},
    {"TELEGRAM_ALLOWED_CHAT_IDS", "telegram-allowed-chat-ids", K_STR, NULL, OFF(telegram_allowed), 0, 0,
     "comma list of chat ids to act on (unset: all)"},
    {"WHATSAPP_VERIFY_TOKEN", "whatsapp-verify-token", K_STR, NULL, OFF(whatsapp_verify), 0, 0,
     "hub.verify_token expected by GET /whatsapp/webhook"},
    {"WHATSAPP_APP_SECRET", "whatsapp-app-secret", K_STR, NULL, OFF(whatsapp_app_secret), 0, 0,
     "app secret for X-Hub-Signature-256 on POST /whatsapp/webhook"},
    {"WHATSAPP_ALLOWED_CONTACTS", "whatsapp-allowed-contacts", K_STR, NULL, OFF(whatsapp_allowed), 0, 0,
     "comma list of WhatsApp numbers to act on (unset: all)"},
    {"BATON_MAX_CONNECTIONS", "max-connections", K_INT, "512", OFF(max_connections), 1, 65536,
     "concurrent connections accepted (parked long-polls count)"},
    {"BATON_IDLE_TIMEOUT_MS", "idle-timeout-ms", K_MS, "30000", OFF(idle_timeout_ms), 1000, 3600000,
     "idle or slow connections are closed after this"},
    {"BATON_HEADER_TIMEOUT_MS", "header-timeout-ms", K_MS, "10000", OFF(header_timeout_ms), 100, 3600000,
     "a request's line and headers must arrive within this (408 and closed)"},
    {"BATON_BODY_TIMEOUT_MS", "body-timeout-ms", K_MS, "60000", OFF(body_timeout_ms), 100, 3600000,
     "a request's whole body must arrive within this of its start (408 and closed)"},
    {"BATON_MAX_CONNECTIONS_PER_ADDRESS", "max-connections-per-address", K_INT, "256",
     OFF(max_connections_per_address), 1, 65536,
     "concurrent connections from one client address (429 and closed above)"},
    {"BATON_AUTH_FAILURE_BURST", "auth-failure-burst", K_INT, "10", OFF(auth_failure_burst), 1, 1000000,
     "failed authentications one address may make at once before 429"},
    {"BATON_AUTH_FAILURES_PER_MIN", "auth-failures-per-min", K_INT, "6", OFF(auth_failures_per_min), 0,
     1000000, "failed authentications per minute per address after the burst (0: no limit)"},
    {"BATON_WEBHOOK_RATE", "webhook-rate", K_INT, "100", OFF(webhook_rate), 0, 1000000,
     "webhook requests per second per address, burst twice that (0: no limit)"},
    {"BATON_LIMIT_LOOPBACK", "limit-loopback", K_BOOL, "0", OFF(limit_loopback), 0, 0,
     "1: the per-address limits apply to loopback clients too (0: they are exempt)"},
    {"BATON_THREADS", "threads", K_INT, "4", OFF(threads), 1, 64,
     "HTTP worker threads"},
    {"BATON_SHUTDOWN_GRACE_MS", "shutdown-grace-ms", K_MS, "10000", OFF(shutdown_grace_ms), 0, 600000,
     "how long SIGTERM waits for in-flight requests"},
    {"BATON_LOG_LEVEL", "log-level", K_LEVEL, "info", OFF(debug), 0, 0,
     "info or debug (debug adds an http.request line per request)"},
    {"BATON_WEBCHAT", "webchat", K_BOOL, "on", OFF(webchat), 0, 0,
     "on or off: the public web chat page /chat and its routes /chat/api/*"},
    {"BATON_WEBCHAT_ORIGINS", "webchat-origins", K_STR, NULL, OFF(webchat_origins), 0, 0,
     "comma list of other origins allowed to call /chat/api/* (CORS); unset: none"},
    {"BATON_WEBCHAT_MAX_TEXT", "webchat-max-text", K_INT, "2000", OFF(webchat_max_text), 1, 100000,
     "longest web chat message in bytes (400 above)"},
    {"BATON_WEBCHAT_RATE", "webchat-rate", K_INT, "20", OFF(webchat_rate), 1, 100000,
     "web chat messages per minute per conversation and 3x that per client address (429 above)"},
    {"BATON_CONSOLE_SESSION_MS", "console-session-ms", K_MS, "43200000", OFF(console_session_ms), 60000,
     INT32_MAX, "how long a console sign-in lasts"},
    {"BATON_TRUST_PROXY", "trust-proxy", K_BOOL, "0", OFF(trust_proxy), 0, 0,
     "1: believe X-Forwarded-Proto/X-Forwarded-For of a reverse proxy (Secure cookies, client address)"},
    {NULL, NULL, K_STR, NULL, 0, 0, 0, NULL},
};

static int
apply(struct config *c, const struct setting *s, const char *v, const char *src,
      char *why, size_t n)
{
    char *base = (char *)c;
    int64_t x;

    switch (s->kind) {
    case K_STR: {
        char **p = (char **)(base + s->off);
        free(*p);
        *p = (v && *v) ? strdup(v) : NULL;
        return 0;
    }
    case K_MS:
    case K_INT:
        if (parse_int64(v, &x) < 0 || x < s->min || x > s->max) {
            snprintf(why, n, "%s: %s must be an integer between %lld and %lld, got '%s'",
                     src, s->env, (long long)s->min, (long long)s->max, v);
            return -1;
        }
        *(int64_t *)(base + s->off) = x;
        return 0;
    case K_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
            *(bool *)(base + s->off) = true;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !*v)
            *(bool *)(base + s->off) = false;
        else {
            snprintf(why, n, "%s: %s must be 0 or 1, got '%s'", src, s->env, v);
            return -1;
        }
        return 0;
    case K_ENV:
        if (strcmp(v, "production") && strcmp(v, "development")) {
            snprintf(why, n, "%s: %s must be development or production, got '%s'", src, s->env, v);
            return -1;
        }
        c->production = !strcmp(v, "production");
        return 0;
    case K_SYNC:
        if (strcmp(v, "full") && strcmp(v, "normal")) {
            snprintf(why, n, "%s: %s must be full or normal, got '%s'", src, s->env, v);
            return -1;
        }
        c->sync_full = !strcmp(v, "full");
        return 0;
    case K_LEVEL:
        if (strcmp(v, "info") && strcmp(v, "debug")) {
            snprintf(why, n, "%s: %s must be info or debug, got '%s'", src, s->env, v);
            return -1;
        }
        c->debug = !strcmp(v, "debug");
        return 0;
    case K_LISTEN: {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || parse_int64(colon + 1, &x) < 0 || x < 0 || x > 65535) {
            snprintf(why, n, "%s: %s must be HOST:PORT with a port 0-65535, got '%s'", src, s->env, v);
            return -1;
        }
        free(c->listen_host);
        c->listen_host = strndup(v, (size_t)(colon - v));
        c->listen_port = (int)x;
        return 0;
    }
    }
    return 0;
}

void
config_usage(FILE *f)
{
    fprintf(f, "usage: batond [--FLAG VALUE]... [--help] [--version]\n\n"
               "Queue and lease server. Every setting is an environment variable;\n"
               "the flag of the same name overrides it.\n\n");
    for (const struct setting *s = settings; s->env; s++)
        fprintf(f, "  --%-26s %-28s %s (default: %s)\n", s->flag, s->env, s->help,
                s->dflt ? s->dflt : "unset");
}

int
config_load(struct config *c, int argc, char **argv, char *why, size_t n)
{
    const struct setting *s;

    memset(c, 0, sizeof *c);
    for (s = settings; s->env; s++)
        if (s->dflt && apply(c, s, s->dflt, "default", why, n) < 0)
            return -1;
    for (s = settings; s->env; s++) {
        const char *v = getenv(s->env);
        if (v && apply(c, s, v, "environment", why, n) < 0)
            return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char *eq;
        size_t len;

        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            config_usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("batond %s\n", BATON_VERSION);
            return 1;
        }
        if (strncmp(a, "--", 2)) {
            snprintf(why, n, "unexpected argument '%s' (see --help)", a);
            return -1;
        }
        a += 2;
        eq = strchr(a, '=');
        len = eq ? (size_t)(eq - a) : strlen(a);
        for (s = settings; s->env; s++)
            if (strlen(s->flag) == len && !strncmp(s->flag, a, len))
                break;
        if (!s->env) {
            snprintf(why, n, "unknown flag '--%.*s' (see --help)", (int)len, a);
            return -1;
        }
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            snprintf(why, n, "flag --%s needs a value", s->flag);
            return -1;
        }
        if (apply(c, s, v, "flag", why, n) < 0)
            return -1;
    }
    if (c->production && !c->secret) {
        snprintf(why, n, "BATON_ENV=production requires AGENT_SECRET");
        return -1;
    }
    return 0;
}

void
config_free(struct config *c)
{
    free(c->listen_host);
    for (const struct setting *s = settings; s->env; s++)
        if (s->kind == K_STR)
            free(*(char **)((char *)c + s->off));
    memset(c, 0, sizeof *c);
}
