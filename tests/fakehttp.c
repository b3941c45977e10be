/* fakehttp.c -- a scripted HTTP server for client tests (see fakehttp.h). */
#define _GNU_SOURCE             /* strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
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

void
fake_start(struct fake *f)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    int one = 1;

    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(f->lfd, 0);
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(f->lfd, 16), 0);
    getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
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
