/* agent_whatsapp.c -- the whatsapp role: holds the lease whatsapp/<account>
 * and delivers outbound.whatsapp.<account> jobs through the Cloud API.
 *
 * DESIGN
 * The main thread owns the lease: acquire (contended: log the holder, try
 * again every 3 s), then heartbeat every WHATSAPP_HEARTBEAT_MS while a
 * second thread runs the outbound loop with the lease token. The lease is
 * judged lost when a heartbeat answers 409 lease_lost, when batond refuses
 * the token on a claim or completion (lease_not_held), or when no
 * heartbeat succeeded for the ttl by this process's own monotonic clock
 * (counted from the start of the last successful heartbeat, less a
 * margin) -- which also covers a process that was stopped (SIGSTOP) and
 * resumed. From that instant no send starts: the outbound loop's cancel
 * hook aborts its parked claim and its check before each send fails. The
 * main thread waits for the loop to end, logs the loss, reports it when
 * batond cannot have seen it, and goes back to acquiring.
 * On SIGTERM the loop finishes the send in progress (the lease is still
 * heartbeated meanwhile), then the lease is released and the process exits.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"

struct wa {
    struct agent_api api;
    char url[1024];
    char auth[1200];                /* "Authorization: Bearer <token>": never logged */
    long long token;
    atomic_bool lost;               /* stop sending now */
    atomic_bool refused;            /* batond refused the token on a job call */
    atomic_bool done;               /* the outbound loop has ended */
    atomic_long valid_until;        /* monotonic ms: the lease is surely ours before */
    struct agent_health health;     /* of the lease calls (main thread) */
};

static int
wa_may_send(void *arg)
{
    struct wa *w = arg;

    return !atomic_load(&w->lost) && agent_now_ms() < atomic_load(&w->valid_until);
}

static void
wa_lease_lost(void *arg)
{
    struct wa *w = arg;

    atomic_store(&w->refused, true);
    atomic_store(&w->lost, true);
}

static enum agent_send
wa_send(void *arg, json_t *payload, json_t **result, char *reason, size_t rn, char *message,
        size_t mn, long *retry_after_ms)
{
    struct wa *w = arg;
    const char *text = json_string_value(json_object_get(payload, "text"));
    const char *to = json_string_value(json_object_get(payload, "to"));
    json_t *body, *ans = NULL;
    long status;
    enum agent_send s;

    *retry_after_ms = 0;
    if (!text || !to || !*to) {
        snprintf(reason, rn, "bad_payload");
        snprintf(message, mn, "the outbound job has no 'to' or 'text'");
        return SEND_PERMANENT;
    }
    body = json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}", "messaging_product", "whatsapp",
                     "recipient_type", "individual", "to", to, "type", "text", "text", "body", text);
    status = agent_api_post(&w->api, w->url, w->auth, body, acfg.wa_send_timeout_ms, &ans);
    json_decref(body);
    s = agent_wa_classify(status, ans, reason, rn, message, mn);
    if (!status)
        snprintf(message, mn, "%s", w->api.err);
    if (s == SEND_OK)
        *result = json_pack("{s:O}", "channelMessageId",
                            json_object_get(json_array_get(json_object_get(ans, "messages"), 0), "id"));
    json_decref(ans);
    return s;
}

static void *
outbound_thread(void *arg)
{
    struct wa *w = arg;
    struct agent_health health = {.channel = "whatsapp", .account = acfg.wa_account};
    struct agent_outbound o = {
        .channel = "whatsapp",
        .account = acfg.wa_account,
        .lease_token = w->token,
        .lock_ms = acfg.wa_send_timeout_ms + 5000,
        .may_send = wa_may_send,
        .lease_lost = wa_lease_lost,
        .send = wa_send,
        .arg = w,
        .health = &health,
    };

    agent_outbound_loop(&o);
    atomic_store(&w->done, true);
    return NULL;
}

static void
pause_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000};

    nanosleep(&ts, NULL);
}

/* Hold the lease acquired at t0 (monotonic ms) until it is lost or the
 * agent stops. */
static void
hold(baton_client *lb, struct wa *w, long t0)
{
    long ttl = acfg.wa_ttl_ms, hb = acfg.wa_heartbeat_ms;
    long margin = ttl / 10 < 500 ? ttl / 10 : 500, next = t0 + hb;
    const char *why = NULL;
    bool seen_by_server = false;
    pthread_t th;

    atomic_store(&w->lost, false);
    atomic_store(&w->refused, false);
    atomic_store(&w->done, false);
    atomic_store(&w->valid_until, t0 + ttl - margin);
    if (pthread_create(&th, NULL, outbound_thread, w) != 0) {
        agent_log("[whatsapp] cannot start the outbound loop");
        atomic_store(&agent_stopping, true);
        return;
    }
    while (!atomic_load(&w->done)) {
        long now = agent_now_ms();
        baton_error e;
        long t1;

        if (atomic_load(&w->lost) || now < next) {
            if (!why && atomic_load(&w->refused))
                why = "lease_not_held";
            pause_ms(20);
            continue;
        }
        if (now >= atomic_load(&w->valid_until)) {
            atomic_store(&w->lost, true);
            why = "expired";
            continue;
        }
        t1 = now;
        if (baton_lease_heartbeat(lb, "whatsapp", acfg.wa_account, acfg.worker_id, w->token, ttl,
                                  NULL, &e) >= 0) {
            atomic_store(&w->valid_until, t1 + ttl - margin);
            next = t1 + hb;
            agent_health_ok(lb, &w->health, 0);
        } else if (e.status == 409) {
            atomic_store(&w->lost, true);
            why = e.code;
            seen_by_server = true;          /* batond recorded heartbeat.lost */
        } else {
            agent_log("[whatsapp] lease heartbeat failed: %s", baton_strerror(&e));
            agent_health_fail(lb, &w->health, 0, baton_strerror(&e));
            next = agent_now_ms() + (hb / 2 < 500 ? hb / 2 : 500);
        }
    }
    pthread_join(th, NULL);
    /* the loop also ends by itself when the lease ran out by our clock */
    if (!atomic_load(&w->lost) &&
        (!atomic_load(&agent_stopping) || agent_now_ms() >= atomic_load(&w->valid_until))) {
        atomic_store(&w->lost, true);
        why = "expired";
    }
    if (!atomic_load(&w->lost)) {
        baton_error e;
        /* stopping with the lease: hand it over now rather than at expiry */
        if (baton_lease_release(lb, "whatsapp", acfg.wa_account, acfg.worker_id, w->token, &e) >= 0)
            agent_log("[whatsapp] Lease released for account '%s' by '%s'", acfg.wa_account,
                      acfg.worker_id);
        else
            agent_log("[whatsapp] could not release the lease: %s", baton_strerror(&e));
        return;
    }
    if (!why)
        why = atomic_load(&w->refused) ? "lease_not_held" : "expired";
    agent_log("[whatsapp] Lease heartbeat lost for account '%s' (owner '%s')", acfg.wa_account,
              acfg.worker_id);
    if (!seen_by_server)
        agent_report(lb, "whatsapp.lease.heartbeat.lost", "warn",
                     json_pack("{s:s, s:s, s:I, s:s}", "accountId", acfg.wa_account, "ownerId",
                               acfg.worker_id, "token", (json_int_t)w->token, "reason", why));
}

int
agent_run_whatsapp(void)
{
    struct wa *w;
    baton_client *lb;

    if (!acfg.whatsapp_enabled) {
        agent_log("[whatsapp] WhatsApp is disabled (ENABLE_WHATSAPP); idle until stopped");
        while (agent_sleep(1000, NULL, NULL))
            ;
        return 0;
    }
    if (!(w = calloc(1, sizeof *w)) || !(lb = agent_client())) {
        free(w);
        return 1;
    }
    w->health.channel = "whatsapp";
    w->health.account = acfg.wa_account;
    snprintf(w->url, sizeof w->url, "%s/%s/messages", acfg.wa_api_base, acfg.wa_phone_id);
    snprintf(w->auth, sizeof w->auth, "Authorization: Bearer %s", acfg.wa_token);
    /* lease calls: bounded by the heartbeat interval, retried by us */
    baton_set_timeout_ms(lb, acfg.wa_heartbeat_ms > 1000 ? acfg.wa_heartbeat_ms : 1000);
    baton_set_retry(lb, 100, 100, 0);
    while (!atomic_load(&agent_stopping)) {
        json_t *lease = NULL;
        baton_error e;
        long t0 = agent_now_ms();
        int rc = baton_lease_acquire(lb, "whatsapp", acfg.wa_account, acfg.worker_id,
                                     acfg.wa_ttl_ms, &lease, &e);

        if (rc >= 0) {
            w->token = (long long)json_integer_value(json_object_get(lease, "token"));
            json_decref(lease);
            agent_health_ok(lb, &w->health, 0);
            agent_log("[whatsapp] Lease acquired for account '%s' by '%s'", acfg.wa_account,
                      acfg.worker_id);
            hold(lb, w, t0);
            continue;
        }
        if (!strcmp(e.code, "lease_held"))
            agent_log("[whatsapp] Lease held by '%s' for account '%s', retrying...",
                      json_string_value(json_object_get(lease, "currentOwnerId")) ?: "?",
                      acfg.wa_account);
        else {
            agent_log("[whatsapp] cannot acquire the lease for account '%s': %s", acfg.wa_account,
                      baton_strerror(&e));
            agent_health_fail(lb, &w->health, 0, baton_strerror(&e));
        }
        json_decref(lease);
        agent_sleep(AGENT_CONTENDED_RETRY_MS, NULL, NULL);
    }
    agent_api_close(&w->api);
    baton_free(lb);
    free(w);
    return 0;
}
