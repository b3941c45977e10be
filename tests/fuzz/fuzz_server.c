/* fuzz_server.c -- batond inside the fuzzer's process and a small HTTP/1.1
 * client that keeps one loopback connection to it and checks each answer.
 *
 * DESIGN
 * The server runs on its own threads exactly as batond does (same config,
 * database, writer and libmicrohttpd daemon); a target only builds request
 * bytes. Answers are read by hand (status line, headers, Content-Length or
 * chunked body) so that nothing of libcurl's leniency hides a malformed
 * answer. Every violation ends in abort() with the request and the answer
 * printed, so libFuzzer saves the input that caused it.
 */
#define _GNU_SOURCE             /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "batond.h"
#include "fuzz_server.h"

#define ANSWER_TIMEOUT_MS 20000     /* a well-formed request unanswered this long: a hang */
#define WAIT_TIMEOUT_MS 300         /* a long poll or a stream: give up and move on */
#define RAW_GRACE_MS 25             /* raw mode: silence after whole answers ends the read */

static char dir[256];
static int port;
static int fd = -1;

static void
remove_dir(void)
{
    char cmd[300];

    if (dir[0] && !getenv("BATON_FUZZ_KEEP_DIR")) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "fuzz: could not remove %s\n", dir);
    }
}

void
fuzz_server_start(void)
{
    char why[512], db[300], listen[] = "127.0.0.1:0";
    const char *tmp = getenv("TMPDIR");
    char *argv[] = {"batond", "--listen", listen, "--db", db, NULL};
    struct rlimit rl;

    if (port)
        return;
    snprintf(dir, sizeof dir, "%s/baton-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(remove_dir);
    snprintf(db, sizeof db, "%s/baton.db", dir);
    setenv("AGENT_SECRET", FUZZ_SECRET, 1);
    setenv("TELEGRAM_WEBHOOK_SECRET", FUZZ_TELEGRAM_SECRET, 1);
    setenv("WHATSAPP_APP_SECRET", FUZZ_WHATSAPP_APP_SECRET, 1);
    setenv("WHATSAPP_VERIFY_TOKEN", FUZZ_WHATSAPP_VERIFY, 1);
    setenv("BATON_SESSION_KEY", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 1);
    setenv("BATON_SYNC", "normal", 1);              /* fsync is not what is fuzzed */
    setenv("BATON_SWEEP_INTERVAL_MS", "100", 1);    /* the sweep runs among the requests */
    setenv("BATON_MAX_CONNECTIONS", "65536", 1);    /* abandoned long polls wait out their time */
    setenv("BATON_IDLE_TIMEOUT_MS", "1000", 1);     /* half-sent raw requests end soon */
    if (!getenv("BATON_LOG_LEVEL"))
        setenv("BATON_LOG_LEVEL", "info", 1);
    /* parked long polls keep their sockets until their deadline */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    if (config_load(&cfg, 5, argv, why, sizeof why) != 0) {
        fprintf(stderr, "fuzz: config: %s\n", why);
        abort();
    }
    if (sodium_init() < 0)
        abort();
    if (!getenv("BATON_FUZZ_LOG"))
        log_stream = fopen("/dev/null", "w");
    if (modules_init(why, sizeof why) < 0) {
        fprintf(stderr, "fuzz: modules: %s\n", why);
        abort();
    }
    if (serve_start(why, sizeof why) < 0 || http_start() < 0) {
        fprintf(stderr, "fuzz: batond did not start\n");
        abort();
    }
    port = http_port();
}

/* ---- byte strings --------------------------------------------------------- */

void
fbuf_add(struct fbuf *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
}

void
fbuf_str(struct fbuf *b, const char *s)
{
    fbuf_add(b, s, strlen(s));
}

void
fbuf_fmt(struct fbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        fbuf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void
fbuf_url(struct fbuf *b, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] == 0x7f || s[i] == '#')
            fbuf_fmt(b, "%%%02X", s[i]);
        else
            fbuf_add(b, &s[i], 1);
    }
}

void
fbuf_free(struct fbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void
fanswer_free(struct fanswer *a)
{
    free(a->body);
    memset(a, 0, sizeof *a);
}

/* ---- the connection ----------------------------------------------------------- */

static int
connect_server(void)
{
    struct sockaddr_in sa = {0};
    int s, one = 1, tries = 0;

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (;;) {
        s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
            perror("fuzz: socket");
            abort();
        }
        if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
            break;
        /* libFuzzer's timer signal can interrupt connect: start over */
        if (errno != EINTR || ++tries > 100) {
            perror("fuzz: connect to batond");
            abort();
        }
        close(s);
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

static int
send_all(int s, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(s, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read more bytes into b: 1 got some, 0 EOF, -1 timeout or error. */
static int
read_more(int s, struct fbuf *b, int64_t until)
{
    char tmp[16384];
    struct pollfd p = {s, POLLIN, 0};
    ssize_t n;

    for (;;) {
        int64_t left = until - (int64_t)mono_ms();
        if (left <= 0)
            return -1;
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
            return -1;
        if (!p.revents)
            continue;
        n = recv(s, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ECONNRESET ? 0 : -1;
        if (n == 0)
            return 0;
        fbuf_add(b, tmp, (size_t)n);
        return 1;
    }
}

static const char *
find(const char *p, size_t n, const char *needle)
{
    return memmem(p, n, needle, strlen(needle));
}

/* Parse one answer at p[0..n). 1 complete (*used bytes), 0 incomplete, -1
 * malformed. eof: the server has closed, so an answer without a length
 * ends here. head: the request was HEAD (no body). */
static int
parse_answer(const char *p, size_t n, bool eof, bool head, struct fanswer *a, size_t *used)
{
    const char *end = find(p, n, "\r\n\r\n"), *line, *body;
    int64_t clen = -1;
    bool chunked = false;

    memset(a, 0, sizeof *a);
    if (!end)
        return eof ? -1 : 0;
    if (n < 12 || strncmp(p, "HTTP/1.", 7) || p[8] != ' ')
        return -1;
    a->status = atoi(p + 9);
    if (a->status < 100 || a->status > 999)
        return -1;
    /* header lines: from after the status line up to the empty line */
    for (line = find(p, (size_t)(end - p) + 2, "\r\n") + 2; line < end + 2;) {
        const char *h = line, *eol = find(h, (size_t)(end + 2 - h), "\r\n");
        size_t len;
        if (!eol)
            break;
        len = (size_t)(eol - h);
        line = eol + 2;
        if (len > 15 && !strncasecmp(h, "Content-Length:", 15))
            clen = strtoll(h + 15, NULL, 10);
        else if (len > 18 && !strncasecmp(h, "Transfer-Encoding:", 18) && find(h, len, "chunked"))
            chunked = true;
        else if (len > 13 && !strncasecmp(h, "Content-Type:", 13)) {
            const char *v = h + 13;
            while (*v == ' ')
                v++;
            snprintf(a->content_type, sizeof a->content_type, "%.*s", (int)(h + len - v), v);
        } else if (len > 11 && !strncasecmp(h, "Connection:", 11) && find(h, len, "close"))
            a->close = true;
    }
    body = end + 4;
    if (head || a->status < 200 || a->status == 204 || a->status == 304) {
        a->body = strdup("");
        *used = (size_t)(body - p);
        return 1;
    }
    if (chunked) {
        struct fbuf out = {0};
        const char *q = body;
        for (;;) {
            const char *eol = find(q, (size_t)(p + n - q), "\r\n");
            char *e;
            unsigned long size;
            if (!eol) {
                fbuf_free(&out);
                return eof ? -1 : 0;
            }
            size = strtoul(q, &e, 16);
            if (e == q) {
                fbuf_free(&out);
                return -1;
            }
            if ((size_t)(p + n - (eol + 2)) < size + 2) {
                fbuf_free(&out);
                return eof ? -1 : 0;
            }
            if (!size) {
                /* trailers end with an empty line */
                const char *t = find(eol + 2 - 2, (size_t)(p + n - eol), "\r\n\r\n");
                if (!t) {
                    fbuf_free(&out);
                    return eof ? -1 : 0;
                }
                *used = (size_t)(t + 4 - p);
                break;
            }
            fbuf_add(&out, eol + 2, size);
            q = eol + 2 + size + 2;
        }
        fbuf_add(&out, "", 0);
        a->body = out.p;
        a->body_len = out.n;
        return 1;
    }
    if (clen >= 0) {
        if ((size_t)(p + n - body) < (size_t)clen)
            return eof ? -1 : 0;
        a->body = strndup(body, (size_t)clen);
        a->body_len = (size_t)clen;
        *used = (size_t)(body - p) + (size_t)clen;
        return 1;
    }
    if (!eof)
        return 0;                   /* the body ends when the server closes */
    a->body = strndup(body, (size_t)(p + n - body));
    a->body_len = (size_t)(p + n - body);
    *used = n;
    return 1;
}

static void
show(const char *what, const char *req, size_t n, const char *ans, size_t an)
{
    fprintf(stderr, "fuzz: %s\n--- request (%zu bytes) ---\n%.*s\n--- answer ---\n%.*s\n---\n", what, n,
            (int)(n > 4000 ? 4000 : n), req, (int)(an > 4000 ? 4000 : an), ans ? ans : "");
}

int
fuzz_exchange(const char *req, size_t n, bool may_wait, struct fanswer *a)
{
    memset(a, 0, sizeof *a);
    for (int attempt = 0; attempt < 2; attempt++) {
        struct fbuf b = {0};
        int64_t until = (int64_t)mono_ms() + (may_wait ? WAIT_TIMEOUT_MS : ANSWER_TIMEOUT_MS);
        size_t used;
        int rc = 0, got;

        if (fd < 0)
            fd = connect_server();
        if (send_all(fd, req, n) < 0) {
            close(fd);
            fd = -1;
            continue;               /* it had closed the kept connection: once more */
        }
        for (;;) {
            got = read_more(fd, &b, until);
            if (got < 0)
                break;
            rc = parse_answer(b.p ? b.p : "", b.n, got == 0, false, a, &used);
            if (rc != 0 || got == 0)
                break;
            if (may_wait && !strncasecmp(a->content_type, "text/event-stream", 17)) {
                close(fd);          /* a stream that began well: leave it */
                fd = -1;
                fbuf_free(&b);
                fanswer_free(a);
                return 0;
            }
        }
        if (rc == 1) {
            if (a->close || got == 0) {
                close(fd);
                fd = -1;
            }
            fbuf_free(&b);
            return 0;
        }
        close(fd);
        fd = -1;
        if (got == 0 && b.n == 0 && attempt == 0) {
            fbuf_free(&b);
            continue;               /* closed while idle: reconnect and send again */
        }
        if (got < 0 && may_wait) {
            fanswer_free(a);
            fbuf_free(&b);
            return 0;               /* still waiting: drop it */
        }
        show(got < 0 ? "no answer in time" : rc < 0 ? "malformed answer" : "connection closed without an answer",
             req, n, b.p, b.n);
        abort();
    }
    show("connection closed without an answer, twice", req, n, NULL, 0);
    abort();
}

/* true when b holds one or more whole answers and nothing else */
static bool
all_complete(const struct fbuf *b, bool head)
{
    size_t off = 0;

    while (b->p && off < b->n) {
        struct fanswer a;
        size_t used = 0;
        int rc = parse_answer(b->p + off, b->n - off, false, head, &a, &used);
        fanswer_free(&a);
        if (rc != 1)
            return false;
        off += used;
    }
    return off > 0;
}

void
fuzz_raw(const uint8_t *data, size_t n)
{
    struct fbuf b = {0};
    int s = connect_server(), got;
    int64_t until = (int64_t)mono_ms() + ANSWER_TIMEOUT_MS;
    bool may_wait = find((const char *)data, n, "wait") || find((const char *)data, n, "stream");
    /* a HEAD request anywhere (pipelined too): its answer has a length but
     * no body, so only the first answer's status can be trusted */
    bool head = (n >= 4 && !memcmp(data, "HEAD", 4)) || find((const char *)data, n, "\nHEAD");
    size_t off = 0;

    send_all(s, (const char *)data, n);     /* it may close early: fine */
    /* Let the server take the bytes before our FIN arrives: with both in
     * one segment libmicrohttpd may not see the end of a half-sent request
     * and waits for its idle timeout instead (1-2 s per input). */
    {
        struct pollfd p = {s, POLLIN, 0};
        poll(&p, 1, 5);
    }
    shutdown(s, SHUT_WR);
    /* Read until the server closes. libmicrohttpd does not always notice
     * our half-close once it has answered, so whole answers followed by a
     * short silence end the read too; a silence before any whole answer
     * ends at the server's idle timeout, which the server start sets low. */
    for (;;) {
        int64_t grace = all_complete(&b, head) ? (int64_t)mono_ms() + RAW_GRACE_MS : until;
        got = read_more(s, &b, grace < until ? grace : until);
        if (got <= 0)
            break;
    }
    close(s);
    if (got < 0 && (int64_t)mono_ms() < until)
        got = 0;                            /* whole answers, then silence */
    if (got < 0 && !may_wait) {
        show("no answer or close in time after the request ended", (const char *)data, n, b.p, b.n);
        abort();
    }
    while (b.p && off < b.n) {
        struct fanswer a;
        size_t used = 0;
        int rc = parse_answer(b.p + off, b.n - off, got == 0, head, &a, &used);
        if (rc == 0 && got < 0)
            break;                          /* a stream cut short by us */
        if (rc != 1) {
            show("malformed answer", (const char *)data, n, b.p + off, b.n - off);
            abort();
        }
        if (head) {
            if (a.status == 500) {
                show("500 answer", (const char *)data, n, b.p, b.n);
                abort();
            }
            fanswer_free(&a);
            break;
        }
        fuzz_check(&a, (const char *)data, n, false);
        off += used;
        if (a.close || strncasecmp(a.content_type, "application/json", 16)) {
            /* the last answer on this connection, or libmicrohttpd's own
             * error page (which for a bad Content-Length it sends with its
             * header block twice): nothing after it is batond's */
            fanswer_free(&a);
            break;
        }
        fanswer_free(&a);
    }
    fbuf_free(&b);
}

/* a non-empty string: an error always says something */
static bool
is_str(json_t *o, const char *k)
{
    return json_string_length(json_object_get(o, k)) > 0;
}

void
fuzz_check(const struct fanswer *a, const char *req, size_t n, bool json_only)
{
    bool is_json = !strncasecmp(a->content_type, "application/json", 16);
    json_t *j = NULL, *e;
    const char *what = NULL;

    if (a->status == 500)
        what = "500 answer";
    else if (is_json && !(j = json_loadb(a->body, a->body_len, JSON_DECODE_ANY, NULL)))
        what = "application/json answer that does not parse";
    else if (a->status >= 400 && !is_json) {
        if (json_only)
            what = "error answer that is not JSON";
    } else if (a->status == 560) {
        e = json_object_get(j, "errorData");
        if (!json_is_object(j) || strcmp(json_string_value(json_object_get(j, "status")) ?: "", "error") ||
            !is_str(j, "errorMessage") || !json_is_object(e) || !is_str(e, "code"))
            what = "560 answer that is not Convex's error envelope";
    } else if (a->status >= 400) {
        e = json_object_get(j, "error");
        if (!json_is_object(j) || !json_is_object(e) || !is_str(e, "code") || !is_str(e, "message"))
            what = "error answer without {\"error\":{\"code\",\"message\"}}";
    }
    json_decref(j);
    if (what) {
        char head[64];
        snprintf(head, sizeof head, "status %d, %s", a->status, a->content_type);
        show(what, req, n, head, strlen(head));
        fprintf(stderr, "body: %.*s\n", (int)(a->body_len > 2000 ? 2000 : a->body_len), a->body ? a->body : "");
        abort();
    }
}
