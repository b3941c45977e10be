/* fakehttp.c -- a scripted HTTP server for client tests (see fakehttp.h). */
#define _GNU_SOURCE             /* strcasestr, asprintf */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "fakehttp.h"

/* Wait up to 100 ms for fd to be readable; 1 ready, 0 not yet, -1 stop. */
static int
ready(struct fake *f, int fd)
{
    struct pollfd p = {fd, POLLIN, 0};

    if (f->stop)
        return -1;
    return poll(&p, 1, 100) > 0 ? 1 : 0;
}

/* Read one request (head and Content-Length body) into buf. Returns its
 * length, 0 when the client closed, -1 on stop or error. */
static int
read_request(struct fake *f, int fd, char *buf, size_t cap)
{
    size_t n = 0;
    char *end = NULL;
    long body = 0;

    for (;;) {
        int r = ready(f, fd);
        ssize_t got;
        if (r < 0)
            return -1;
        if (!r)
            continue;
        got = read(fd, buf + n, cap - 1 - n);
        if (got <= 0)
            return n ? -1 : 0;
        n += (size_t)got;
        buf[n] = 0;
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            if (cl && cl < end)
                body = atol(cl + 17);
        }
        if (end && n >= (size_t)(end + 4 - buf) + (size_t)body)
            return (int)n;
        if (n >= cap - 1)
            return (int)n;
    }
}

static void *
serve(void *arg)
{
    struct fake *f = arg;
    char buf[2048];

    while (!f->stop) {
        int fd, len;
        if (ready(f, f->lfd) <= 0)
            continue;
        if ((fd = accept(f->lfd, NULL, NULL)) < 0)
            continue;
        f->connections++;
        while ((len = read_request(f, fd, buf, sizeof buf)) > 0) {
            int i = f->requests < FAKE_MAX ? f->requests : FAKE_MAX - 1;
            const char *a;
            int k = i;
            while (k > 0 && !f->answers[k])
                k--;
            a = f->answers[k];
            snprintf(f->request[i], sizeof f->request[i], "%s", buf);
            f->requests++;
            if (!a || write(fd, a, strlen(a)) < 0 || strstr(a, "Connection: close"))
                break;
        }
        close(fd);
    }
    return NULL;
}

/* A listening socket on 127.0.0.1 with a free port; url gets its base. */
static int
listen_loopback(int *port, char *url, size_t n)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 64), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    snprintf(url, n, "http://127.0.0.1:%d", *port);
    return fd;
}

void
fake_start(struct fake *f)
{

    f->lfd = listen_loopback(&f->port, f->url, sizeof f->url);
    f->stop = false;
    ck_assert_int_eq(pthread_create(&f->thread, NULL, serve, f), 0);
}

void
fake_stop(struct fake *f)
{
    f->stop = true;
    pthread_join(f->thread, NULL);
    close(f->lfd);
}

/* ---- fakeapi: a callback-driven fake with concurrent connections ----------- */

struct conn {
    struct fakeapi *f;
    int fd;
};

static long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read one request into a growing buffer; returns its length, 0 when the
 * client closed, -1 on stop or error. */
static long
api_read(struct fakeapi *f, int fd, char **bufp, size_t *capp)
{
    size_t n = 0;
    long body = -1, head = 0;

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t got;
        if (f->stop)
            return -1;
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (n + 4096 >= *capp) {
            char *nb = realloc(*bufp, *capp * 2);
            if (!nb)
                return -1;
            *bufp = nb;
            *capp *= 2;
        }
        got = read(fd, *bufp + n, *capp - 1 - n);
        if (got <= 0)
            return n ? -1 : 0;
        n += (size_t)got;
        (*bufp)[n] = 0;
        if (body < 0) {
            char *end = strstr(*bufp, "\r\n\r\n");
            if (end) {
                char *cl = strcasestr(*bufp, "\r\nContent-Length:");
                head = end + 4 - *bufp;
                body = cl && cl < end ? atol(cl + 17) : 0;
            }
        }
        if (body >= 0 && (long)n >= head + body)
            return (long)n;
    }
}

static void *
api_conn(void *arg)
{
    struct conn *c = arg;
    struct fakeapi *f = c->f;
    size_t cap = 65536;
    char *buf = malloc(cap);
    long len;

    while (buf && (len = api_read(f, c->fd, &buf, &cap)) > 0) {
        struct fakeapi_req rq = {0};
        char *end = strstr(buf, "\r\n\r\n"), *a, *out = NULL, *resp = NULL;
        int status = 200, idx, rn;

        rq.at_ms = mono_ms();
        sscanf(buf, "%7s %511s", rq.method, rq.path);
        if ((a = strcasestr(buf, "\r\nAuthorization:")) && a < end) {
            a += 16;
            while (*a == ' ')
                a++;
            snprintf(rq.auth, sizeof rq.auth, "%.*s", (int)strcspn(a, "\r\n"), a);
        }
        rq.body = strdup(end ? end + 4 : "");
        pthread_mutex_lock(&f->mu);
        if (f->n == f->cap) {
            f->cap = f->cap ? f->cap * 2 : 64;
            f->reqs = realloc(f->reqs, (size_t)f->cap * sizeof *f->reqs);
        }
        idx = f->n++;
        f->reqs[idx] = rq;
        f->fn(f, &f->reqs[idx], idx, &status, &out);
        pthread_mutex_unlock(&f->mu);
        if (f->delay_ms) {
            struct timespec ts = {f->delay_ms / 1000, (long)(f->delay_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
        rn = asprintf(&resp, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\n\r\n%s",
                      status, out ? strlen(out) : 0, out ? out : "");
        free(out);
        if (rn < 0 || write(c->fd, resp, (size_t)rn) != rn) {
            free(resp);
            break;
        }
        free(resp);
    }
    free(buf);
    close(c->fd);
    free(c);
    return NULL;
}

static void *
api_serve(void *arg)
{
    struct fakeapi *f = arg;

    while (!f->stop) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        struct conn *c;
        int fd;
        if (poll(&p, 1, 100) <= 0)
            continue;
        if ((fd = accept(f->lfd, NULL, NULL)) < 0)
            continue;
        if (f->nconns >= 64 || !(c = malloc(sizeof *c))) {
            close(fd);
            continue;
        }
        c->f = f;
        c->fd = fd;
        if (pthread_create(&f->conns[f->nconns], NULL, api_conn, c) == 0)
            f->nconns++;
        else {
            close(fd);
            free(c);
        }
    }
    for (int i = 0; i < f->nconns; i++)
        pthread_join(f->conns[i], NULL);
    return NULL;
}

void
fakeapi_start(struct fakeapi *f)
{

    pthread_mutex_init(&f->mu, NULL);
    f->lfd = listen_loopback(&f->port, f->url, sizeof f->url);
    f->stop = false;
    ck_assert_int_eq(pthread_create(&f->thread, NULL, api_serve, f), 0);
}

void
fakeapi_stop(struct fakeapi *f)
{
    f->stop = true;
    pthread_join(f->thread, NULL);
    close(f->lfd);
    for (int i = 0; i < f->n; i++)
        free(f->reqs[i].body);
    free(f->reqs);
    f->reqs = NULL;
    f->n = f->cap = 0;
}

int
fakeapi_count(struct fakeapi *f)
{
    int n;

    pthread_mutex_lock(&f->mu);
    n = f->n;
    pthread_mutex_unlock(&f->mu);
    return n;
}

void
fakeapi_lock(struct fakeapi *f)
{
    pthread_mutex_lock(&f->mu);
}

void
fakeapi_unlock(struct fakeapi *f)
{
    pthread_mutex_unlock(&f->mu);
}
