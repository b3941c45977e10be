/* main.c -- batond: read the settings, open the database, serve, and on
 * SIGTERM/SIGINT stop accepting, finish in-flight requests, checkpoint and
 * exit 0. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "batond.h"

struct server_event {
    const char *level, *name;
    json_t *fields;
};

static int
server_event_tx(struct tx *t, struct req *r)
{
    struct server_event *e = r->ctx;

    event_emit(t, e->level, e->name, json_incref(e->fields));
    return req_ok(r, 204, NULL);
}

/* A server.* state change: a row in events (through the writer, like every
 * other state change) and its log line once committed. When the write
 * fails the line is still logged. fields are stolen. */
static void
server_event(const char *level, const char *name, json_t *fields)
{
    struct server_event e = {level, name, fields ? fields : json_object()};
    struct req *r = req_new_internal();

    if (r)
        r->ctx = &e;
    if (!r || req_write(r, server_event_tx) < 0)
        log_event(level, name, json_incref(e.fields));
    if (r)
        req_free(r);
    json_decref(e.fields);
}

int
main(int argc, char **argv)
{
    char why[512], db[1024];
    sigset_t sigs;
    int sig, rc;
    int64_t until;

    rc = config_load(&cfg, argc, argv, why, sizeof why);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "batond: %s\n", why);
        return EX_CONFIG;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "batond: libsodium cannot initialise\n");
        return 1;
    }
    if (modules_init(why, sizeof why) < 0) {
        fprintf(stderr, "batond: %s\n", why);
        return EX_CONFIG;
    }

    /* Signals are taken by sigwait below; every thread inherits the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((rc = serve_start(why, sizeof why)) < 0) {
        fprintf(stderr, "batond: %s\n", why);
        return rc == -2 ? EX_INUSE : rc == -3 ? EX_CONFIG : 1;
    }
    if ((rc = http_start()) < 0) {
        serve_stop();
        return rc == -2 ? EX_INUSE : 1;
    }
    if (!cfg.secret)
        log_event("warn", "server.insecure",
                  json_pack("{s:s}", "message", "AGENT_SECRET is not set: /v1 and /api are open "
                                                "(development only)"));
    store_describe(db, sizeof db);
    server_event("info", "server.started",
              json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "version", BATON_VERSION,
                        "host", cfg.listen_host, "port", http_port(), "db", db,
                        "sync", cfg.sync_full ? "full" : "normal",
                        "env", cfg.production ? "production" : "development"));

    sigwait(&sigs, &sig);
    server_event("info", "server.stopping", json_pack("{s:s}", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));

    http_quiesce();
    http_shutting_down();
    serve_release_waiters();
    stream_close();
    until = now_ms() + cfg.shutdown_grace_ms;
    while (http_active() > 0 && now_ms() < until)
        sleep_ms(10);
    /* recorded while the writer still runs: every request has been
     * answered, only the checkpoint is left */
    server_event("info", "server.stopped", NULL);
    serve_stop();
    http_stop();
    modules_free();
    config_free(&cfg);
    return 0;
}
