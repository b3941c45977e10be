/* agent_util.c -- baton-agent's pure parts: configuration from the
 * environment, Telegram text splitting, channel API error mapping. No I/O
 * beyond getenv, so the tests link it directly. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent.h"

/* ---- configuration --------------------------------------------------------- */

static const struct var {
    const char *name, *def, *help;
} vars[] = {
    {"AGENT_ROLE", "core", "core | whatsapp | telegram"},
    {"WORKER_ID", "<hostname>-<pid>", "this worker's id (job lockedBy, lease ownerId)"},
    {"BATON_URL", BATON_DEFAULT_URL, "batond's address"},
    {"AGENT_SECRET", "none", "batond's bearer secret"},
    {"AGENT_HANDLER", "echo", "core: command run with /bin/sh -c per job (\"echo\": built-in)"},
    {"AGENT_HANDLER_TIMEOUT_MS", "120000", "core: the handler is killed after this long"},
    {"ENABLE_WHATSAPP", "1", "whatsapp: 0|false idles without taking the lease"},
    {"WHATSAPP_ACCOUNT_ID", "default", "whatsapp: the account (lease whatsapp/<id>)"},
    {"WHATSAPP_LEASE_TTL_MS", "45000", "whatsapp: lease time to live"},
    {"WHATSAPP_HEARTBEAT_MS", "15000", "whatsapp: lease heartbeat interval (< ttl)"},
    {"WHATSAPP_SEND_TIMEOUT_MS", "20000", "whatsapp: time allowed for one API call"},
    {"WHATSAPP_API_BASE", "https://graph.facebook.com/v21.0", "whatsapp: Cloud API base URL"},
    {"WHATSAPP_PHONE_NUMBER_ID", "required", "whatsapp: the sending phone number id"},
    {"WHATSAPP_ACCESS_TOKEN", "required", "whatsapp: Cloud API access token"},
    {"TELEGRAM_ACCOUNT_ID", "default", "telegram: the account (queue outbound.telegram.<id>)"},
    {"TELEGRAM_BOT_TOKEN", "required", "telegram: the bot token"},
    {"TELEGRAM_API_BASE", "https://api.telegram.org", "telegram: Bot API base URL"},
    {"TELEGRAM_SEND_TIMEOUT_MS", "20000", "telegram: time allowed for one API call"},
    {NULL, NULL, NULL},
};

void
agent_usage(FILE *f)
{
    fputs("usage: baton-agent [--help] [--version]\n"
          "\n"
          "The workers of baton, configured by the environment:\n"
          "  core      claims jobs on queue 'agent', runs AGENT_HANDLER with\n"
          "            {\"job\":...,\"messages\":[...]} on stdin; its stdout is the reply\n"
          "            (exit 75: retry later, other non-zero: permanent failure)\n"
          "  whatsapp  holds the lease whatsapp/<account> and sends outbound messages\n"
          "            through the WhatsApp Cloud API\n"
          "  telegram  sends outbound messages through the Telegram Bot API\n"
          "\n"
          "Variables (default):\n",
          f);
    for (const struct var *v = vars; v->name; v++)
        fprintf(f, "  %-26s %s [%s]\n", v->name, v->help, v->def);
    fputs("\nExit 0 after SIGTERM/SIGINT, 78 on a bad setting, 1 on other errors.\n", f);
}

static const char *
env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v && *v ? v : def;
}

static int
env_ms(const char *name, long def, long min, long *out, char *why, size_t n)
{
    const char *v = getenv(name);
    char *end;
    long x;

    if (!v || !*v) {
        *out = def;
        return 0;
    }
    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < min || x > 86400000L) {
        snprintf(why, n, "%s must be an integer number of milliseconds between %ld and 86400000",
                 name, min);
        return -1;
    }
    *out = x;
    return 0;
}

/* Letters, digits and ._:@+- (what batond accepts in an account id). */
static int
env_name(const char *name, const char *def, const char **out, char *why, size_t n)
{
    const char *v = env_or(name, def);
    size_t len = strlen(v);

    if (len > 100 || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789._:@+-") != len) {
        snprintf(why, n, "%s must be 1-100 characters of letters, digits and ._:@+-", name);
        return -1;
    }
    *out = v;
    return 0;
}

static int
env_required(const char *name, const char *role, const char **out, char *why, size_t n)
{
    if (!(*out = env_or(name, NULL))) {
        snprintf(why, n, "%s is required with AGENT_ROLE=%s", name, role);
        return -1;
    }
    return 0;
}

int
agent_config(struct agent_cfg *c, char *why, size_t n)
{
    const char *en = env_or("ENABLE_WHATSAPP", "1"), *wid = getenv("WORKER_ID");

    memset(c, 0, sizeof *c);
    c->role = env_or("AGENT_ROLE", "core");
    if (strcmp(c->role, "core") && strcmp(c->role, "whatsapp") && strcmp(c->role, "telegram")) {
        snprintf(why, n, "AGENT_ROLE must be core, whatsapp or telegram (got '%.40s')", c->role);
        return -1;
    }
    if (wid && *wid) {
        if (strlen(wid) >= sizeof c->worker_id) {
            snprintf(why, n, "WORKER_ID must be shorter than %zu characters", sizeof c->worker_id);
            return -1;
        }
        snprintf(c->worker_id, sizeof c->worker_id, "%s", wid);
    } else {
        char host[200] = "agent";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        snprintf(c->worker_id, sizeof c->worker_id, "%s-%ld", host, (long)getpid());
    }
    c->baton_url = env_or("BATON_URL", BATON_DEFAULT_URL);
    if (strncmp(c->baton_url, "http://", 7) && strncmp(c->baton_url, "https://", 8)) {
        snprintf(why, n, "BATON_URL must start with http:// or https://");
        return -1;
    }
    c->secret = env_or("AGENT_SECRET", NULL);
    c->handler = env_or("AGENT_HANDLER", "echo");
    if (!strcasecmp(en, "1") || !strcasecmp(en, "true") || !strcasecmp(en, "yes"))
        c->whatsapp_enabled = true;
    else if (!strcasecmp(en, "0") || !strcasecmp(en, "false") || !strcasecmp(en, "no"))
        c->whatsapp_enabled = false;
    else {
        snprintf(why, n, "ENABLE_WHATSAPP must be 1, true, 0 or false");
        return -1;
    }
    c->wa_api_base = env_or("WHATSAPP_API_BASE", "https://graph.facebook.com/v21.0");
    c->tg_api_base = env_or("TELEGRAM_API_BASE", "https://api.telegram.org");
    if (env_ms("AGENT_HANDLER_TIMEOUT_MS", 120000, 1, &c->handler_timeout_ms, why, n) < 0 ||
        env_ms("WHATSAPP_LEASE_TTL_MS", 45000, 100, &c->wa_ttl_ms, why, n) < 0 ||
        env_ms("WHATSAPP_HEARTBEAT_MS", 15000, 10, &c->wa_heartbeat_ms, why, n) < 0 ||
        env_ms("WHATSAPP_SEND_TIMEOUT_MS", 20000, 100, &c->wa_send_timeout_ms, why, n) < 0 ||
        env_ms("TELEGRAM_SEND_TIMEOUT_MS", 20000, 100, &c->tg_send_timeout_ms, why, n) < 0 ||
        env_name("WHATSAPP_ACCOUNT_ID", "default", &c->wa_account, why, n) < 0 ||
        env_name("TELEGRAM_ACCOUNT_ID", "default", &c->tg_account, why, n) < 0)
        return -1;
    if (c->wa_heartbeat_ms >= c->wa_ttl_ms) {
        snprintf(why, n, "WHATSAPP_HEARTBEAT_MS (%ld) must be smaller than WHATSAPP_LEASE_TTL_MS (%ld)",
                 c->wa_heartbeat_ms, c->wa_ttl_ms);
        return -1;
    }
    if (!strcmp(c->role, "whatsapp") && c->whatsapp_enabled &&
        (env_required("WHATSAPP_PHONE_NUMBER_ID", c->role, &c->wa_phone_id, why, n) < 0 ||
         env_required("WHATSAPP_ACCESS_TOKEN", c->role, &c->wa_token, why, n) < 0))
        return -1;
    if (!strcmp(c->role, "telegram") &&
        env_required("TELEGRAM_BOT_TOKEN", c->role, &c->tg_token, why, n) < 0)
        return -1;
    return 0;
}

/* ---- Telegram text splitting ------------------------------------------------ */

size_t
agent_utf8_chars(const char *s, size_t len)
{
    size_t chars = 0;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            chars++;
    return chars;
}

size_t
agent_split_next(const char *s, size_t max_chars)
{
    size_t len = strlen(s), i = 0, chars = 0, brk = 0;

    if (!max_chars)
        return 0;
    while (i < len && chars < max_chars) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        chars++;
        if (chars >= max_chars - max_chars / 4 && (s[i - 1] == '\n' || s[i - 1] == ' '))
            brk = i;
    }
    if (i >= len)
        return len;
    return brk ? brk : i;
}

/* ---- channel API answers ------------------------------------------------------ */

enum agent_send
agent_wa_classify(long status, json_t *body, char *reason, size_t rn, char *message, size_t mn)
{
    json_t *e = json_object_get(body, "error");
    json_int_t code = json_integer_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));

    snprintf(message, mn, "%s", msg ? msg : "");
    if (!status) {
        snprintf(reason, rn, "transport");
        return SEND_RETRY;
    }
    if (status >= 200 && status < 300 && !e) {
        json_t *id = json_object_get(json_array_get(json_object_get(body, "messages"), 0), "id");
        if (json_is_string(id))
            return SEND_OK;
        snprintf(reason, rn, "bad_response");
        snprintf(message, mn, "the answer has no messages[0].id");
        return SEND_RETRY;
    }
    if (code) {
        snprintf(reason, rn, "%lld", (long long)code);
        switch (code) {
        case 130429:        /* throughput rate limit */
        case 131056:        /* pair rate limit */
        case 131000:        /* something went wrong (transient) */
        case 1:
        case 2:             /* API unknown / service temporarily unavailable */
            return SEND_RETRY;
        case 131047:        /* re-engagement window closed */
        case 100:           /* invalid parameter */
        case 190:           /* access token expired or invalid */
            return SEND_PERMANENT;
        }
    } else
        snprintf(reason, rn, "http_%ld", status);
    if (status >= 500 || status == 429 || status == 408)
        return SEND_RETRY;
    return SEND_PERMANENT;
}

enum agent_send
agent_tg_classify(long status, json_t *body, char *reason, size_t rn, char *message, size_t mn,
                  long *retry_after_ms, long long *migrate_to)
{
    json_t *params = json_object_get(body, "parameters");
    json_int_t code = json_integer_value(json_object_get(body, "error_code"));
    const char *desc = json_string_value(json_object_get(body, "description"));

    *retry_after_ms = 0;
    *migrate_to = 0;
    snprintf(message, mn, "%s", desc ? desc : "");
    if (!status) {
        snprintf(reason, rn, "transport");
        return SEND_RETRY;
    }
    if (status >= 200 && status < 300 && json_is_true(json_object_get(body, "ok"))) {
        if (json_is_integer(json_object_get(json_object_get(body, "result"), "message_id")))
            return SEND_OK;
        snprintf(reason, rn, "bad_response");
        snprintf(message, mn, "the answer has no result.message_id");
        return SEND_RETRY;
    }
    if (!code)
        code = status;
    snprintf(reason, rn, "%lld", (long long)code);
    if (json_is_integer(json_object_get(params, "migrate_to_chat_id"))) {
        *migrate_to = json_integer_value(json_object_get(params, "migrate_to_chat_id"));
        return SEND_MIGRATE;
    }
    if (code == 429) {
        json_int_t ra = json_integer_value(json_object_get(params, "retry_after"));
        *retry_after_ms = (ra > 0 ? (long)ra : 1) * 1000L;
        return SEND_RETRY;
    }
    if (code >= 500 || status >= 500)
        return SEND_RETRY;
    return SEND_PERMANENT;          /* 403 blocked, 400 chat not found, 401 ... */
}
