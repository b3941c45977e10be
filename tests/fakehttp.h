/* fakehttp.h -- a scripted HTTP server for client tests: answers requests
 * with canned responses in order, and records what it was sent. */
#ifndef FAKEHTTP_H
#define FAKEHTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define FAKE_MAX 32

struct fake {
    /* script: raw HTTP responses, one per request; the last one repeats.
     * A response containing "Connection: close" closes the connection
     * after it is written. */
    const char *answers[FAKE_MAX];
    int port;
    char url[64];
    /* what happened (read after fake_stop) */
    int requests, connections;
    char request[FAKE_MAX][2048];      /* head + body of each request */
    /* internal */
    int lfd;
    atomic_bool stop;
    pthread_t thread;
};

/* A fake channel API (WhatsApp Cloud, Telegram Bot API) for scenario
 * tests: many keep-alive connections at once (a thread each), every
 * request recorded, the answer chosen by a callback. */
struct fakeapi_req {
    char method[8];
    char path[512];
    char auth[512];             /* the Authorization header's value, or "" */
    char *body;                 /* malloc'ed, NUL-terminated */
    long at_ms;                 /* CLOCK_MONOTONIC ms when it arrived */
};

struct fakeapi;
/* Choose the answer to rq (the n-th request, from 0): set *status and
 * *body (malloc'ed JSON text). Called with the fake's lock held. */
typedef void (*fakeapi_fn)(struct fakeapi *f, const struct fakeapi_req *rq, int n, int *status,
                           char **body);

struct fakeapi {
    fakeapi_fn fn;
    void *arg;
    int delay_ms;               /* answer this long after each request */
    int port;
    char url[64];
    /* what happened: read under mu (fakeapi_lock/unlock) */
    pthread_mutex_t mu;
    struct fakeapi_req *reqs;
    int n, cap;
    /* internal */
    int lfd;
    atomic_bool stop;
    pthread_t thread;
    pthread_t conns[64];
    int nconns;
};

void fakeapi_start(struct fakeapi *f);
void fakeapi_stop(struct fakeapi *f);     /* stops, joins, frees the records */
int fakeapi_count(struct fakeapi *f);     /* requests so far */
void fakeapi_lock(struct fakeapi *f);
void fakeapi_unlock(struct fakeapi *f);

/* Listen on 127.0.0.1 on a free port and serve f's script in a thread. */
void fake_start(struct fake *f);
/* Stop serving and join the thread. */
void fake_stop(struct fake *f);

#endif
