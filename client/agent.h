/* agent.h -- baton-agent, the workers (core, whatsapp, telegram): what the
 * role files share. Internal to the agent; not installed. */
#ifndef AGENT_H
#define AGENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

#include "baton.h"

#define AGENT_EXIT_CONFIG 78            /* EX_CONFIG: bad or missing setting */
#define AGENT_CLAIM_WAIT_MS 25000L      /* long-poll of every claim */
#define AGENT_CONTENDED_RETRY_MS 3000L  /* lease held by another: try again */
#define AGENT_TG_MAX_CHARS 4096         /* Telegram's limit per message */

/* The settings, from the environment (see agent_config / --help). */
struct agent_cfg {
    const char *role;                   /* core | whatsapp | telegram */
    char worker_id[256];
    const char *baton_url, *secret;
    const char *handler;                /* AGENT_HANDLER; "echo" is built in */
    long handler_timeout_ms;
    bool whatsapp_enabled;
    const char *wa_account, *wa_api_base, *wa_phone_id, *wa_token;
    long wa_ttl_ms, wa_heartbeat_ms, wa_send_timeout_ms;
    const char *tg_account, *tg_token, *tg_api_base;
    long tg_send_timeout_ms;
};

extern struct agent_cfg acfg;
extern atomic_bool agent_stopping;      /* SIGTERM/SIGINT received */

/* ---- agent_util.c: pure helpers (also used by the tests) ---------------- */

/* Read the configuration from getenv. Returns 0, or -1 with a one-line
 * reason in why. */
int agent_config(struct agent_cfg *c, char *why, size_t n);
/* Print every variable with its default. */
void agent_usage(FILE *f);

/* Byte length of the next part of s (NUL-terminated UTF-8) holding at most
 * max_chars characters: never inside a UTF-8 sequence, at the last space or
 * newline of the part's final quarter when there is one. strlen(s) when
 * the rest fits. */
size_t agent_split_next(const char *s, size_t max_chars);
/* Number of characters (UTF-8 code points) in the first len bytes of s. */
size_t agent_utf8_chars(const char *s, size_t len);

enum agent_send {
    SEND_OK,
    SEND_RETRY,             /* retryable failure (*retry_after_ms may be set) */
    SEND_PERMANENT,         /* never retry; reason names the API's code */
    SEND_MIGRATE,           /* Telegram: the chat moved (*migrate_to set) */
};

/* WhatsApp Cloud API answer -> outcome. status 0: transport failure.
 * reason: the error code ("131047"), "http_<status>" or "transport";
 * message: the API's error message. */
enum agent_send agent_wa_classify(long status, json_t *body, char *reason, size_t rn, char *message,
                                  size_t mn);
/* Telegram Bot API answer -> outcome, with retry_after (ms) for 429 and
 * the new chat id of parameters.migrate_to_chat_id. */
enum agent_send agent_tg_classify(long status, json_t *body, char *reason, size_t rn, char *message,
                                  size_t mn, long *retry_after_ms, long long *migrate_to);

/* ---- agent.c: runtime ---------------------------------------------------- */

void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long agent_now_ms(void);                /* monotonic clock */
/* Sleep ms, waking early when stopping (or when stop(arg) says so; stop
 * may be NULL). Returns false when woken early. */
bool agent_sleep(long ms, int (*stop)(void *), void *arg);
/* A client of batond with the agent's URL and secret, or NULL. */
baton_client *agent_client(void);
/* POST /v1/events; fields stolen. Failures are logged, not returned. */
int agent_report(baton_client *b, const char *event, const char *level, json_t *fields);

/* One HTTP connection to a channel API. */
struct agent_api {
    CURL *curl;
    char err[CURL_ERROR_SIZE];
};
/* POST body (JSON) to url with the extra header auth (may be NULL).
 * Returns the HTTP status, 0 on a transport failure (err says why); *out
 * gets the parsed answer or NULL. */
long agent_api_post(struct agent_api *a, const char *url, const char *auth, json_t *body,
                    long timeout_ms, json_t **out);
void agent_api_close(struct agent_api *a);

/* Connection health of a loop, for the events workers report: the first
 * failure of a streak is reported as <channel>.outbound.loop.error, the
 * first success after one as <channel>.socket.reconnect. */
struct agent_health {
    const char *channel, *account;
    bool down[2];                   /* [0] batond, [1] the channel API */
    long since[2];
    char pending[300];              /* a loop error not reported yet */
};
void agent_health_fail(baton_client *b, struct agent_health *h, int target, const char *error);
void agent_health_ok(baton_client *b, struct agent_health *h, int target);

/* One outbound delivery loop: claims outbound.<channel>.<account>, sends
 * each job with send(), completes or fails it. */
struct agent_outbound {
    const char *channel, *account;
    long long lease_token;              /* 0: the queue is not leased */
    long lock_ms;
    /* may a send start now? NULL: always (until stopping) */
    int (*may_send)(void *arg);
    /* the lease was refused (lease_not_held) */
    void (*lease_lost)(void *arg);
    /* send payload; on SEND_OK *result is {channelMessageId,...} */
    enum agent_send (*send)(void *arg, json_t *payload, json_t **result, char *reason, size_t rn,
                            char *message, size_t mn, long *retry_after_ms);
    void *arg;
    struct agent_health *health;
};
void agent_outbound_loop(struct agent_outbound *o);

/* ---- roles --------------------------------------------------------------- */
int agent_run_core(void);
int agent_run_whatsapp(void);
int agent_run_telegram(void);

#endif
