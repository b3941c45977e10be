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

/* Listen on 127.0.0.1 on a free port and serve f's script in a thread. */
void fake_start(struct fake *f);
/* Stop serving and join the thread. */
void fake_stop(struct fake *f);

#endif
