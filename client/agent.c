/* agent.c -- baton-agent: start-up, signals, logging, and what the roles
 * share (batond clients, channel API calls, reported events, the outbound
 * delivery loop).
 *
 * DESIGN
 * One process runs one role. Shutdown is a flag set by SIGTERM/SIGINT;
 * every wait in the agent is a short sleep loop or a libbaton call whose
 * cancel hook reads that flag, so a parked long-poll claim ends within
 * about a second. Sends to a channel API are never aborted half-way: a
 * send that started is finished and completed (or failed) before exit.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"

#define AGENT_VERSION "0.1.0"

struct agent_cfg acfg;
atomic_bool agent_stopping;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void
agent_log(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&log_mu);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&log_mu);
}

long
agent_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
agent_sleep(long ms, int (*stop)(void *), void *arg)
{
    long end = agent_now_ms() + ms;

    for (;;) {
        long left = end - agent_now_ms();
        struct timespec ts;
        if (atomic_load(&agent_stopping) || (stop && stop(arg)))
            return false;
        if (left <= 0)
            return true;
        if (left > 50)
            left = 50;
        ts.tv_sec = 0;
        ts.tv_nsec = left * 1000000;
        nanosleep(&ts, NULL);
    }
}

baton_client *
agent_client(void)
{
    baton_client *b = baton_new(acfg.baton_url, acfg.secret);

    if (!b)
        agent_log("[main] cannot create a client for %s", acfg.baton_url);
    return b;
}

int
agent_report(baton_client *b, const char *event, const char *level, json_t *fields)
{
    baton_error e;
    int rc;

    if (!fields)
        fields = json_object();
    json_object_set_new(fields, "workerId", json_string(acfg.worker_id));
    rc = baton_report_event(b, event, level, fields, &e);
    if (rc < 0)
        agent_log("[main] could not report %s: %s", event, baton_strerror(&e));
    json_decref(fields);
    return rc < 0 ? -1 : 0;
}

/* ---- channel APIs -------------------------------------------------------------- */

struct buf {
    char *p;
    size_t n;
};

static size_t
collect(char *data, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t len = size * nmemb;
    char *p;

    if (b->n + len > (4u << 20))
        return 0;
    if (!(p = realloc(b->p, b->n + len + 1)))
        return 0;
    memcpy(p + b->n, data, len);
    b->p = p;
    b->n += len;
    b->p[b->n] = 0;
    return len;
}

long
agent_api_post(struct agent_api *a, const char *url, const char *auth, json_t *body,
               long timeout_ms, json_t **out)
{
    struct curl_slist *h = NULL;
    struct buf resp = {NULL, 0};
    char *text = json_dumps(body, JSON_COMPACT);
    long status = 0;
    CURLcode rc;

    *out = NULL;
    a->err[0] = 0;
    if (!a->curl && !(a->curl = curl_easy_init())) {
        snprintf(a->err, sizeof a->err, "cannot initialise libcurl");
        free(text);
        return 0;
    }
    curl_easy_reset(a->curl);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    if (auth)
        h = curl_slist_append(h, auth);
    curl_easy_setopt(a->curl, CURLOPT_URL, url);
    curl_easy_setopt(a->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, text ? text : "");
    curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000L);
    curl_easy_setopt(a->curl, CURLOPT_ERRORBUFFER, a->err);
    curl_easy_setopt(a->curl, CURLOPT_USERAGENT, "baton-agent/" AGENT_VERSION);
    curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, &resp);
    rc = text && h ? curl_easy_perform(a->curl) : CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
        if (resp.n)
            *out = json_loadb(resp.p, resp.n, 0, NULL);
    } else if (!a->err[0])
        snprintf(a->err, sizeof a->err, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(h);
    free(resp.p);
    free(text);
    return status;
}

void
agent_api_close(struct agent_api *a)
{
    if (a->curl)
        curl_easy_cleanup(a->curl);
    a->curl = NULL;
}

/* ---- reported health --------------------------------------------------------------- */

static const char *const targets[] = {"batond", "api"};

void
agent_health_fail(baton_client *b, struct agent_health *h, int target, const char *error)
{
    char name[96];

    if (h->down[target])
        return;
    h->down[target] = true;
    h->since[target] = agent_now_ms();
    agent_log("[%s] outbound loop error (%s): %s", h->channel, targets[target], error);
    snprintf(name, sizeof name, "%s.outbound.loop.error", h->channel);
    if (agent_report(b, name, "error",
                     json_pack("{s:s, s:s, s:s}", "accountId", h->account, "target",
                               targets[target], "error", error)) < 0)
        snprintf(h->pending, sizeof h->pending, "%s: %s", targets[target], error);
}

void
agent_health_ok(baton_client *b, struct agent_health *h, int target)
{
    char name[96];
    long down_ms;

    if (!h->down[target])
        return;
    h->down[target] = false;
    down_ms = agent_now_ms() - h->since[target];
    agent_log("[%s] connection to %s re-established after %ld ms", h->channel, targets[target],
              down_ms);
    if (h->pending[0]) {
        snprintf(name, sizeof name, "%s.outbound.loop.error", h->channel);
        if (agent_report(b, name, "error",
                         json_pack("{s:s, s:s}", "accountId", h->account, "error", h->pending)) == 0)
            h->pending[0] = 0;
    }
    snprintf(name, sizeof name, "%s.socket.reconnect", h->channel);
    agent_report(b, name, "warn",
                 json_pack("{s:s, s:s, s:I}", "accountId", h->account, "target", targets[target],
                           "downMs", (json_int_t)down_ms));
}

/* ---- the outbound delivery loop ------------------------------------------------------ */

static int
claim_cancel(void *arg)
{
    struct agent_outbound *o = arg;

    return atomic_load(&agent_stopping) || (o->may_send && !o->may_send(o->arg));
}

static bool
is_lease_refusal(const baton_error *e)
{
    return e->status == 409 && !strcmp(e->code, "lease_not_held");
}

/* Send one claimed job and complete or fail it; while sending may go on,
 * the same request claims the next job of the queue, without waiting,
 * into *next (complete-and-next). */
static void
deliver(baton_client *b, struct agent_outbound *o, json_t *job, json_t **next)
{
    const baton_next after = {NULL, o->lock_ms, 0};
    const baton_next *ask = claim_cancel(o) ? NULL : &after;
    const char *id = json_string_value(json_object_get(job, "id"));
    const char *tok = json_string_value(json_object_get(job, "claimToken"));
    char reason[200] = "", message[1000] = "";
    long retry_after = 0;
    json_t *result = NULL;
    enum agent_send s;
    baton_error e;
    int rc;

    if (!id || !tok)
        return;
    if (o->may_send && !o->may_send(o->arg)) {
        agent_log("[%s] not sending job %s: the lease is no longer ours", o->channel, id);
        return;     /* its lock expires and the next holder sends it */
    }
    agent_log("[%s] sending job %s (attempt %lld)", o->channel, id,
              (long long)json_integer_value(json_object_get(job, "attempts")));
    s = o->send(o->arg, json_object_get(job, "payload"), &result, reason, sizeof reason, message,
                sizeof message, &retry_after);
    if (s != SEND_OK && !strcmp(reason, "transport"))
        agent_health_fail(b, o->health, 1, message);
    else
        agent_health_ok(b, o->health, 1);
    if (s == SEND_OK) {
        rc = baton_complete_next(b, id, acfg.worker_id, tok, result, NULL, o->lease_token, ask, next, &e);
        json_decref(result);
    } else {
        bool retryable = s == SEND_RETRY;
        agent_log("[%s] send of job %s failed (%s, %s): %s", o->channel, id, reason,
                  retryable ? "will retry" : "permanent", message);
        rc = baton_fail_next(b, id, acfg.worker_id, tok, reason, message[0] ? message : NULL, retryable,
                             retry_after, o->lease_token, ask, next, &e);
    }
    if (rc >= 0) {
        agent_health_ok(b, o->health, 0);
        return;
    }
    if (is_lease_refusal(&e)) {
        if (o->lease_lost)
            o->lease_lost(o->arg);
    } else if (e.status == 409)
        agent_log("[%s] job %s was taken back meanwhile: %s", o->channel, id, baton_strerror(&e));
    else
        agent_health_fail(b, o->health, 0, baton_strerror(&e));
}

void
agent_outbound_loop(struct agent_outbound *o)
{
    baton_client *b = agent_client();
    char queue[256];
    long delay = 500;

    if (!b)
        return;
    snprintf(queue, sizeof queue, "outbound.%s.%s", o->channel, o->account);
    agent_log("[%s] Starting outbound delivery loop...", o->channel);
    while (!claim_cancel(o)) {
        json_t *job = NULL;
        baton_error e;
        int rc;

        baton_set_cancel(b, claim_cancel, o);
        rc = baton_claim(b, queue, acfg.worker_id, o->lock_ms, AGENT_CLAIM_WAIT_MS, o->lease_token,
                         &job, &e);
        baton_set_cancel(b, NULL, NULL);
        if (rc == 200) {
            agent_health_ok(b, o->health, 0);
            delay = 500;
            while (job) {
                json_t *next = NULL;
                deliver(b, o, job, &next);
                json_decref(job);
                job = next;
            }
        } else if (rc == 204)
            agent_health_ok(b, o->health, 0);
        else if (!strcmp(e.code, "cancelled"))
            ;
        else if (is_lease_refusal(&e)) {
            if (o->lease_lost)
                o->lease_lost(o->arg);
        } else {
            agent_health_fail(b, o->health, 0, baton_strerror(&e));
            agent_sleep(delay, claim_cancel, o);
            delay = delay * 2 > 10000 ? 10000 : delay * 2;
        }
        json_decref(job);
    }
    baton_free(b);
}

/* ---- start-up ------------------------------------------------------------------------- */

static void
on_signal(int sig)
{
    (void)sig;
    atomic_store(&agent_stopping, true);
}

int
main(int argc, char **argv)
{
    struct sigaction sa;
    char why[300];
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            agent_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            puts("baton-agent " AGENT_VERSION);
            return 0;
        }
        fprintf(stderr, "baton-agent: unknown argument '%s' (see --help)\n", argv[i]);
        return AGENT_EXIT_CONFIG;
    }
    if (agent_config(&acfg, why, sizeof why) < 0) {
        fprintf(stderr, "baton-agent: %s\n", why);
        return AGENT_EXIT_CONFIG;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "baton-agent: cannot initialise libcurl\n");
        return 1;
    }
    agent_log("[main] Agent is running (role: %s)", acfg.role);
    agent_log("[main] worker '%s', batond at %s", acfg.worker_id, acfg.baton_url);
    if (!strcmp(acfg.role, "whatsapp"))
        rc = agent_run_whatsapp();
    else if (!strcmp(acfg.role, "telegram"))
        rc = agent_run_telegram();
    else
        rc = agent_run_core();
    agent_log("[main] Agent stopped (role: %s)", acfg.role);
    return rc;
}
