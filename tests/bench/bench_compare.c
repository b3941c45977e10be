/* bench_compare.c -- a load generator for batond and its peers, and the
 * scale figures. Called from bench_jobs.c's main after the jobs figures.
 *
 * Every client is one thread with one keep-alive TCP connection speaking
 * the server's protocol directly (HTTP/1.1, beanstalkd's text protocol,
 * RESP), blocking request/answer -- so the client side costs the same for
 * every system. Workloads (8 clients, a fixed duration each):
 *   dedupe     baton POST /v1/dedupe          | redis SET k 1 NX EX 86400
 *   job cycle  baton enqueue + claim + complete
 *              | beanstalkd put + reserve + delete
 *              | redis LPUSH + BLMOVE + LREM (a reliable list queue)
 *   best API   jobs/s, half the clients producing and half consuming, 8
 *              and 64 clients: baton batch enqueue + complete-and-next
 *              | beanstalkd put + reserve + delete | redis LPUSH of 16
 *              values + BLMOVE + LREM (see run_flow)
 *   heartbeat  baton lease heartbeat          (no peer equivalent measured)
 *   dispatch   one producer, 8 parked consumers: time from the producer's
 *              send to a consumer holding the job (baton long-poll claim,
 *              beanstalkd reserve, redis BLMOVE)
 * Peers run on loopback ports from a temporary directory: beanstalkd with
 * -f0 (fsync every write) and without binlog, redis with appendfsync always
 * and without persistence. Missing packages are installed with apt-get
 * when running as root; otherwise that peer is skipped.
 *
 * PostgreSQL (part "pg"): a throwaway PostgreSQL (initdb in a temporary
 * directory, fsync and synchronous_commit on: its defaults), batond on it
 * with one replica and with three (clients spread over the replicas; the
 * dispatch producer on the first, so most wake-ups cross replicas), and
 * graphile-worker on the same server (npm package installed by the bench
 * into BENCH_CACHE, default build/bench-cache; driven from Node by
 * graphile_bench.js), each on a database of its own: the job cycle and
 * the dispatch latency.
 *
 * Part "node" (bench_node.c): batond, BullMQ and graphile-worker from Node.
 *
 * BENCH_QUICK=1 shortens every phase and stops the scale runs at 10^5;
 * BENCH_ONLY=baton,peers,pg,node,scale picks parts of this comparison
 * (flow: batond's best-API flows alone, for profiling). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define CLIENTS 8

static bool quick;
static double duration_s;
static int dispatch_rounds;

static double
now_ms_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* the wall clock in ms: batond's clock, for lock expiry times */
static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- processes ------------------------------------------------------------ */

int
free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        port = -1;
    else
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int
tcp_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int
wait_port(int port)
{
    for (int i = 0; i < 1000; i++) {
        int fd = tcp_connect(port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(10000);
    }
    return -1;
}

bool
have(const char *bin, const char *pkg)
{
    char cmd[256];

    if (access(bin, X_OK) == 0)
        return true;
    if (geteuid() != 0)
        return false;
    printf("  (installing %s with apt-get)\n", pkg);
    fflush(stdout);
    snprintf(cmd, sizeof cmd, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q %s >/dev/null 2>&1", pkg);
    if (system(cmd) != 0)
        return false;
    return access(bin, X_OK) == 0;
}

/* Start argv (argv[0] a path) in p->dir with stdout/stderr to a log; wait
 * until p->port accepts. */
static int
proc_start(struct proc *p, char *const argv[])
{
    char log[128];

    snprintf(log, sizeof log, "%s/server.log", p->dir);
    p->pid = fork();
    if (p->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        if (chdir(p->dir) != 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    if (wait_port(p->port) < 0) {
        fprintf(stderr, "bench: %s did not start (see %s)\n", p->name, log);
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
        return -1;
    }
    return 0;
}

void
proc_stop(struct proc *p)
{
    int status = 0;

    if (p->pid > 0) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid)
            printf("  !! %s had exited by itself (status %d, signal %d), see %s\n", p->name,
                   WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0, p->dir);
        else {
            kill(p->pid, SIGTERM);
            waitpid(p->pid, NULL, 0);
        }
    }
    p->pid = 0;
}

void
rmdir_all(const char *dir)
{
    char cmd[128];

    if (getenv("BATON_KEEP_BENCH_DIR"))
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int
mkdir_tmp(struct proc *p)
{
    snprintf(p->dir, sizeof p->dir, "/tmp/baton-bench-XXXXXX");
    return mkdtemp(p->dir) ? 0 : -1;
}

/* batond on p->dir/baton.db; extra: "K=V" settings, NULL-terminated */
int
batond_start(struct proc *p, const char *const *extra)
{
    const char *bin = getenv("BATOND") ? getenv("BATOND") : "build/batond";
    char log[128];

    p->name = "batond";
    p->port = free_port();
    snprintf(log, sizeof log, "%s/batond.log", p->dir);
    p->pid = fork();
    if (p->pid == 0) {
        char db[128], listen[64];
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        snprintf(db, sizeof db, "%s/baton.db", p->dir);
        snprintf(listen, sizeof listen, "127.0.0.1:%d", p->port);
        setenv("BATON_DB", db, 1);
        setenv("BATON_LISTEN", listen, 1);
        setenv("AGENT_SECRET", SECRET, 1);
        setenv("BATON_SYNC", "full", 0);
        for (int i = 0; extra && extra[i]; i++)
            putenv(strdup(extra[i]));
        execl(bin, "batond", (char *)NULL);
        _exit(127);
    }
    if (wait_port(p->port) < 0) {
        fprintf(stderr, "bench: batond did not start (see %s)\n", log);
        proc_stop(p);
        return -1;
    }
    return 0;
}

static long
rss_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, strlen(field)))
            v = atol(line + strlen(field) + 1);
    fclose(f);
    return v;
}

/* ---- one connection --------------------------------------------------------- */

struct conn {
    int fd;
    char buf[1 << 16];
    size_t len, off;
};

static int
conn_fill(struct conn *c)
{
    ssize_t n;

    if (c->off == c->len)
        c->off = c->len = 0;
    if (c->len == sizeof c->buf) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    do
        n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    return 0;
}

static int
conn_send(struct conn *c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(c->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One line without its CRLF into out. */
static int
conn_line(struct conn *c, char *out, size_t n)
{
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
        if (nl) {
            size_t len = (size_t)(nl - (c->buf + c->off));
            size_t k = len && nl[-1] == '\r' ? len - 1 : len;
            if (k >= n)
                k = n - 1;
            memcpy(out, c->buf + c->off, k);
            out[k] = 0;
            c->off += len + 1;
            return 0;
        }
        if (conn_fill(c) < 0)
            return -1;
    }
}

/* Exactly n bytes; out (size cap) gets the first cap-1 of them. */
static int
conn_bytes(struct conn *c, size_t n, char *out, size_t cap)
{
    size_t got = 0;

    while (got < n) {
        size_t k;
        if (c->off == c->len && conn_fill(c) < 0)
            return -1;
        k = c->len - c->off;
        if (k > n - got)
            k = n - got;
        if (out && got < cap - 1)
            memcpy(out + got, c->buf + c->off, got + k < cap - 1 ? k : cap - 1 - got);
        got += k;
        c->off += k;
    }
    if (out)
        out[n < cap - 1 ? n : cap - 1] = 0;
    return 0;
}

static int
conn_open(struct conn *c, int port)
{
    c->len = c->off = 0;
    c->fd = tcp_connect(port);
    return c->fd < 0 ? -1 : 0;
}

/* ---- HTTP/1.1 ------------------------------------------------------------- */

/* One request; returns the status (0 on error), body into out. */
static int
http(struct conn *c, const char *method, const char *path, const char *body, char *out, size_t cap)
{
    char req[2048], line[1024];
    size_t blen = body ? strlen(body) : 0;
    long clen = 0;
    bool chunked = false;
    int n, status;

    n = snprintf(req, sizeof req,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " SECRET "\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                 method, path, blen, body ? body : "");
    if (n < 0 || (size_t)n >= sizeof req || conn_send(c, req, (size_t)n) < 0 || conn_line(c, line, sizeof line) < 0)
        return 0;
    status = atoi(line + 9);
    for (;;) {
        if (conn_line(c, line, sizeof line) < 0)
            return 0;
        if (!line[0])
            break;
        if (!strncasecmp(line, "Content-Length:", 15))
            clen = atol(line + 15);
        else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strstr(line, "chunked"))
            chunked = true;
    }
    if (out)
        out[0] = 0;
    if (chunked) {
        for (;;) {
            long k;
            if (conn_line(c, line, sizeof line) < 0)
                return 0;
            k = strtol(line, NULL, 16);
            if (k == 0) {
                conn_line(c, line, sizeof line);
                break;
            }
            if (conn_bytes(c, (size_t)k, out, cap) < 0 || conn_line(c, line, sizeof line) < 0)
                return 0;
        }
    } else if (clen > 0 && conn_bytes(c, (size_t)clen, out, cap) < 0)
        return 0;
    return status;
}

static bool
json_str(const char *body, const char *key, char *out, size_t n)
{
    char pat[64];
    const char *p, *e;

    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    if (!(p = strstr(body, pat)))
        return false;
    p += strlen(pat);
    if (!(e = strchr(p, '"')) || (size_t)(e - p) >= n)
        return false;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return true;
}

/* ---- RESP ------------------------------------------------------------------ */

static int
redis_cmd(struct conn *c, int argc, const char *const *argv)
{
    char req[1024];
    int n = snprintf(req, sizeof req, "*%d\r\n", argc);

    for (int i = 0; i < argc; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    return conn_send(c, req, (size_t)n);
}

/* One reply: its type character, the simple/bulk/integer text into out
 * (nil bulk: "" and type '_'). */
static int
redis_reply(struct conn *c, char *out, size_t n)
{
    char line[256];

    if (conn_line(c, line, sizeof line) < 0)
        return -1;
    out[0] = 0;
    switch (line[0]) {
    case '+': case ':': case '-':
        snprintf(out, n, "%s", line + 1);
        return line[0];
    case '$': {
        long k = atol(line + 1);
        if (k < 0)
            return '_';
        if (conn_bytes(c, (size_t)k, out, n) < 0 || conn_line(c, line, sizeof line) < 0)
            return -1;
        return '$';
    }
    case '*': {
        long k = atol(line + 1);
        for (long i = 0; i < k; i++)
            if (redis_reply(c, out, n) < 0)
                return -1;
        return '*';
    }
    }
    return -1;
}

static int
redis(struct conn *c, char *out, size_t n, int argc, const char *const *argv)
{
    if (redis_cmd(c, argc, argv) < 0)
        return -1;
    return redis_reply(c, out, n);
}

/* ---- beanstalkd --------------------------------------------------------------- */

static int
bs_put(struct conn *c, const char *data)
{
    char req[256], line[128];
    int n = snprintf(req, sizeof req, "put 0 0 60 %zu\r\n%s\r\n", strlen(data), data);

    if (conn_send(c, req, (size_t)n) < 0 || conn_line(c, line, sizeof line) < 0)
        return -1;
    return strncmp(line, "INSERTED", 8) ? -1 : 0;
}

/* reserve (blocking); job id and data */
static int
bs_reserve(struct conn *c, long *id, char *data, size_t n)
{
    char line[128];
    long bytes;

    if (conn_send(c, "reserve\r\n", 9) < 0 || conn_line(c, line, sizeof line) < 0)
        return -1;
    if (sscanf(line, "RESERVED %ld %ld", id, &bytes) != 2)
        return -1;
    if (conn_bytes(c, (size_t)bytes, data, n) < 0 || conn_line(c, line, sizeof line) < 0)
        return -1;
    return 0;
}

static int
bs_delete(struct conn *c, long id)
{
    char req[64], line[128];
    int n = snprintf(req, sizeof req, "delete %ld\r\n", id);

    if (conn_send(c, req, (size_t)n) < 0 || conn_line(c, line, sizeof line) < 0)
        return -1;
    return strcmp(line, "DELETED") ? -1 : 0;
}

/* ---- workloads ------------------------------------------------------------ */

enum sys { BATON, BS_F0, BS_NONE, REDIS_ALWAYS, REDIS_NONE, BATON_PG1, BATON_PG3, GRAPHILE, NSYS };
static const char *const sys_name[NSYS] = {
    "baton (synchronous=FULL)", "beanstalkd -f0 (fsync each)", "beanstalkd (no binlog)",
    "redis appendfsync always", "redis (no persistence)", "baton on PostgreSQL, 1 replica",
    "baton on PostgreSQL, 3 replicas", "graphile-worker (Node)",
};

/* batond speaks the same protocol on either store */
static bool
is_baton(enum sys s)
{
    return s == BATON || s == BATON_PG1 || s == BATON_PG3;
}

/* the replicas of BATON_PG3: client i talks to replica i % 3 */
static int replica_ports[3];

static int
client_port(enum sys s, int i, int port)
{
    return s == BATON_PG3 ? replica_ports[i % 3] : port;
}

enum wl { W_DEDUPE, W_CYCLE, W_FLOW8, W_FLOW64, W_HEARTBEAT, W_DISPATCH, NWL };
static const char *const wl_name[NWL] = {"dedupe check-and-register", "job cycle (enq+claim+done)",
                                         "jobs/s, best API, 4 prod + 4 cons", "jobs/s, best API, 32 prod + 32 cons",
                                         "lease heartbeat", "dispatch latency (1 prod, 8 parked)"};

struct result {
    bool ran;
    double ops;                 /* per second (dispatch: rounds) */
    double p50, p99, p999;      /* ms */
    int errors;
};

static struct result results[NWL][NSYS];

struct client {
    enum sys sys;
    enum wl wl;
    int port, id;
    struct conn c;
    double *lat;
    size_t n, cap;
    int errors;
    unsigned seq;
    int64_t token;
    volatile bool *stop;
};

static void
rec(struct client *cl, double ms)
{
    if (cl->n == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 4096;
        double *p = realloc(cl->lat, cap * sizeof *p);
        if (!p)
            return;
        cl->lat = p;
        cl->cap = cap;
    }
    cl->lat[cl->n++] = ms;
}

static int
client_setup(struct client *cl)
{
    char body[256], out[4096];

    if (conn_open(&cl->c, cl->port) < 0)
        return -1;
    if (is_baton(cl->sys) && cl->wl == W_HEARTBEAT) {
        snprintf(body, sizeof body, "{\"ownerId\":\"bench-%d\",\"ttlMs\":600000}", cl->id);
        snprintf(out, sizeof out, "/v1/leases/whatsapp/bench-%d/acquire", cl->id);
        if (http(&cl->c, "POST", out, body, out, sizeof out) != 200)
            return -1;
        {
            const char *t = strstr(out, "\"token\":");
            cl->token = t ? atoll(t + 8) : 0;
        }
    }
    return 0;
}

/* One operation of the workload; 0 ok, -1 error. */
static int
client_op(struct client *cl)
{
    char body[256], out[8192], path[128], id[64], tok[128];

    cl->seq++;
    switch (cl->sys) {
    case BATON: case BATON_PG1: case BATON_PG3:
        switch (cl->wl) {
        case W_DEDUPE:
            snprintf(body, sizeof body, "{\"channel\":\"whatsapp\",\"channelMessageId\":\"b%d-%u\"}", cl->id, cl->seq);
            return http(&cl->c, "POST", "/v1/dedupe", body, out, sizeof out) == 200 &&
                   strstr(out, "\"duplicate\":false") ? 0 : -1;
        case W_HEARTBEAT:
            snprintf(body, sizeof body, "{\"ownerId\":\"bench-%d\",\"token\":%lld}", cl->id, (long long)cl->token);
            snprintf(path, sizeof path, "/v1/leases/whatsapp/bench-%d/heartbeat", cl->id);
            return http(&cl->c, "POST", path, body, out, sizeof out) == 200 ? 0 : -1;
        case W_CYCLE:
            if (http(&cl->c, "POST", "/v1/jobs", "{\"queue\":\"cycle\",\"payload\":{\"n\":1}}", out, sizeof out) != 201)
                return -1;
            snprintf(body, sizeof body, "{\"queue\":\"cycle\",\"workerId\":\"w%d\"}", cl->id);
            if (http(&cl->c, "POST", "/v1/jobs/claim", body, out, sizeof out) != 200 ||
                !json_str(out, "id", id, sizeof id) || !json_str(out, "claimToken", tok, sizeof tok))
                return -1;
            snprintf(path, sizeof path, "/v1/jobs/%s/complete", id);
            snprintf(body, sizeof body, "{\"workerId\":\"w%d\",\"claimToken\":\"%s\"}", cl->id, tok);
            return http(&cl->c, "POST", path, body, out, sizeof out) == 200 ? 0 : -1;
        default:
            return -1;
        }
    case BS_F0: case BS_NONE: {
        long jid;
        if (cl->wl != W_CYCLE)
            return -1;
        if (bs_put(&cl->c, "{\"n\":1}") < 0 || bs_reserve(&cl->c, &jid, out, sizeof out) < 0)
            return -1;
        return bs_delete(&cl->c, jid);
    }
    case REDIS_ALWAYS: case REDIS_NONE:
        if (cl->wl == W_DEDUPE) {
            snprintf(id, sizeof id, "d:%d:%u", cl->id, cl->seq);
            const char *a[] = {"SET", id, "1", "NX", "EX", "86400"};
            return redis(&cl->c, out, sizeof out, 6, a) == '+' ? 0 : -1;
        }
        if (cl->wl == W_CYCLE) {
            snprintf(id, sizeof id, "{\"n\":1,\"c\":%d,\"s\":%u}", cl->id, cl->seq);
            const char *push[] = {"LPUSH", "q", id};
            const char *move[] = {"BLMOVE", "q", "q:processing", "RIGHT", "LEFT", "0"};
            if (redis(&cl->c, out, sizeof out, 3, push) != ':' || redis(&cl->c, out, sizeof out, 6, move) != '$')
                return -1;
            snprintf(tok, sizeof tok, "%.120s", out);
            const char *rem[] = {"LREM", "q:processing", "1", tok};
            return redis(&cl->c, out, sizeof out, 4, rem) == ':' ? 0 : -1;
        }
        return -1;
    default:
        return -1;
    }
}

static void *
client_main(void *arg)
{
    struct client *cl = arg;

    while (!*cl->stop) {
        double t0 = now_ms_mono();
        if (client_op(cl) < 0) {
            if (++cl->errors > 100)
                break;
            continue;
        }
        rec(cl, now_ms_mono() - t0);
    }
    return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void
summarize(struct result *res, double *lat, size_t n, double secs, int errors)
{
    res->ran = true;
    res->errors = errors;
    res->ops = (double)n / secs;
    if (!n)
        return;
    qsort(lat, n, sizeof *lat, cmp_double);
    res->p50 = lat[n / 2];
    res->p99 = lat[(size_t)((double)n * 0.99)];
    res->p999 = lat[(size_t)((double)n * 0.999)];
}

/* N clients for duration_s after a short warm-up; fills results[wl][sys]. */
static void
run_clients(enum sys sys, enum wl wl, int port)
{
    struct client cl[CLIENTS];
    pthread_t th[CLIENTS];
    volatile bool stop = false;
    double *all, t0, t1;
    size_t total = 0;
    int errors = 0;

    memset(cl, 0, sizeof cl);
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (struct client){.sys = sys, .wl = wl, .port = client_port(sys, i, port), .id = i, .stop = &stop};
        if (client_setup(&cl[i]) < 0) {
            fprintf(stderr, "bench: %s / %s: client setup failed\n", sys_name[sys], wl_name[wl]);
            return;
        }
    }
    for (int i = 0; i < CLIENTS; i++)
        for (int k = 0; k < 20; k++)        /* warm-up: caches, connections */
            client_op(&cl[i]);
    t0 = now_ms_mono();
    for (int i = 0; i < CLIENTS; i++)
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    usleep((useconds_t)(duration_s * 1e6));
    stop = true;
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    t1 = now_ms_mono();
    for (int i = 0; i < CLIENTS; i++)
        total += cl[i].n;
    all = malloc((total + 1) * sizeof *all);
    total = 0;
    for (int i = 0; i < CLIENTS; i++) {
        memcpy(all + total, cl[i].lat, cl[i].n * sizeof *all);
        total += cl[i].n;
        errors += cl[i].errors;
        free(cl[i].lat);
        close(cl[i].c.fd);
    }
    summarize(&results[wl][sys], all, total, (t1 - t0) / 1000.0, errors);
    free(all);
}

/* ---- job throughput with each system's best API ------------------------------
 *
 * Half the clients produce, half consume, for duration_s; the figure is
 * jobs completed per second (consumers' completions counted after a
 * warm-up). Producers: batond POST /v1/jobs/batch of FLOW_BATCH jobs |
 * beanstalkd put (it has no batch) | redis LPUSH of FLOW_BATCH values.
 * Consumers: batond complete-and-next (one request per job; a long-poll
 * claim only when none came) | beanstalkd reserve-with-timeout + delete |
 * redis BLMOVE + LREM. Producers hold back while FLOW_BACKLOG jobs wait,
 * so every system works off a queue of the same depth. Latency: one
 * consumer's step (complete-and-next | reserve + delete | BLMOVE + LREM). */
#define FLOW_BATCH 16
#define FLOW_BACKLOG 2000

struct flow {
    struct client cl;
    bool producer;
    _Atomic long *produced, *consumed;
};

static int
flow_produce(struct flow *f, char *out, size_t cap)
{
    struct client *cl = &f->cl;
    char body[1024], vals[FLOW_BATCH][32];
    const char *argv[FLOW_BATCH + 2] = {"LPUSH", "fq"};
    size_t n = 0;
    int k = FLOW_BATCH;

    switch (cl->sys) {
    case BATON: case BATON_PG1: case BATON_PG3:
        n = (size_t)snprintf(body, sizeof body, "{\"jobs\":[");
        for (int i = 0; i < FLOW_BATCH; i++)
            n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"queue\":\"flow\",\"payload\":{\"n\":%d}}",
                                  i ? "," : "", i);
        snprintf(body + n, sizeof body - n, "]}");
        if (http(&cl->c, "POST", "/v1/jobs/batch", body, out, cap) != 201)
            return -1;
        break;
    case BS_F0: case BS_NONE:
        k = 1;
        if (bs_put(&cl->c, "{\"n\":1}") < 0)
            return -1;
        break;
    default:
        for (int i = 0; i < FLOW_BATCH; i++) {
            snprintf(vals[i], sizeof vals[i], "{\"n\":1,\"c\":%d,\"s\":%u}", cl->id, cl->seq++);
            argv[i + 2] = vals[i];
        }
        if (redis(&cl->c, out, cap, FLOW_BATCH + 2, argv) != ':')
            return -1;
        break;
    }
    atomic_fetch_add(f->produced, k);
    return 0;
}

/* One consumer step: 1 when a job was completed, 0 when none came, -1. */
static int
flow_consume(struct flow *f, char *job, size_t jn, char *tok, size_t tn, char *out, size_t cap)
{
    struct client *cl = &f->cl;
    char body[512], path[128];
    long jid;
    int st;

    switch (cl->sys) {
    case BATON: case BATON_PG1: case BATON_PG3: {
        const char *next;
        if (!job[0]) {      /* holding nothing: a long-poll claim */
            snprintf(body, sizeof body, "{\"queue\":\"flow\",\"workerId\":\"f%d\",\"waitMs\":500}", cl->id);
            st = http(&cl->c, "POST", "/v1/jobs/claim", body, out, cap);
            if (st == 204)
                return 0;
            if (st != 200 || !json_str(out, "id", job, jn) || !json_str(out, "claimToken", tok, tn))
                return -1;
        }
        snprintf(path, sizeof path, "/v1/jobs/%s/complete", job);
        snprintf(body, sizeof body, "{\"workerId\":\"f%d\",\"claimToken\":\"%s\",\"next\":{\"waitMs\":500}}",
                 cl->id, tok);
        job[0] = 0;
        if (http(&cl->c, "POST", path, body, out, cap) != 200 || !(next = strstr(out, "\"next\":")))
            return -1;
        if (strncmp(next + 7, "null", 4) &&
            (!json_str(next, "id", job, jn) || !json_str(next, "claimToken", tok, tn)))
            return -1;
        return 1;
    }
    case BS_F0: case BS_NONE: {
        char line[128];
        long bytes;
        if (conn_send(&cl->c, "reserve-with-timeout 1\r\n", 24) < 0 || conn_line(&cl->c, line, sizeof line) < 0)
            return -1;
        if (!strncmp(line, "TIMED_OUT", 9))
            return 0;
        if (sscanf(line, "RESERVED %ld %ld", &jid, &bytes) != 2 ||
            conn_bytes(&cl->c, (size_t)bytes, out, cap) < 0 || conn_line(&cl->c, line, sizeof line) < 0)
            return -1;
        return bs_delete(&cl->c, jid) < 0 ? -1 : 1;
    }
    default: {
        const char *move[] = {"BLMOVE", "fq", "fq:processing", "RIGHT", "LEFT", "1"};
        st = redis(&cl->c, out, cap, 6, move);
        if (st == '_' || st == '*')
            return 0;       /* timed out */
        if (st != '$')
            return -1;
        snprintf(tok, tn, "%.120s", out);
        const char *rem[] = {"LREM", "fq:processing", "1", tok};
        return redis(&cl->c, out, cap, 4, rem) == ':' ? 1 : -1;
    }
    }
}

static void *
flow_main(void *arg)
{
    struct flow *f = arg;
    struct client *cl = &f->cl;
    char job[64] = "", tok[128] = "";
    char *out = malloc(65536);

    while (out && !*cl->stop) {
        double t0 = now_ms_mono();
        int rc;
        if (f->producer) {
            if (atomic_load(f->produced) - atomic_load(f->consumed) > FLOW_BACKLOG) {
                usleep(500);
                continue;
            }
            rc = flow_produce(f, out, 65536);
        } else if ((rc = flow_consume(f, job, sizeof job, tok, sizeof tok, out, 65536)) == 1) {
            atomic_fetch_add(f->consumed, 1);
            rec(cl, now_ms_mono() - t0);
        }
        if (rc < 0 && ++cl->errors > 100)
            break;
    }
    free(out);
    return NULL;
}

/* n clients (n/2 producers, n/2 consumers) on sys; fills results[wl][sys]. */
static void
run_flow(enum sys sys, enum wl wl, int port)
{
    int n = wl == W_FLOW64 ? 64 : 8;
    struct flow *f = calloc((size_t)n, sizeof *f);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    volatile bool stop = false;
    _Atomic long produced = 0, consumed = 0;
    long c0;
    double t0, t1, *all;
    size_t total = 0;
    int errors = 0;

    if (!f || !th) {
        free(f);
        free(th);
        return;
    }
    for (int i = 0; i < n; i++) {
        f[i].cl = (struct client){.sys = sys, .wl = wl, .port = client_port(sys, i, port), .id = i, .stop = &stop};
        f[i].producer = i % 2 == 0;
        f[i].produced = &produced;
        f[i].consumed = &consumed;
        if (client_setup(&f[i].cl) < 0) {
            fprintf(stderr, "bench: %s / %s: client setup failed\n", sys_name[sys], wl_name[wl]);
            for (int k = 0; k < i; k++)
                close(f[k].cl.c.fd);
            free(f);
            free(th);
            return;
        }
    }
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, flow_main, &f[i]);
    usleep(quick ? 300000 : 1000000);   /* warm-up */
    c0 = atomic_load(&consumed);
    t0 = now_ms_mono();
    usleep((useconds_t)(duration_s * 1e6));
    t1 = now_ms_mono();
    c0 = atomic_load(&consumed) - c0;
    stop = true;
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++)
        total += f[i].cl.n;
    all = malloc((total + 1) * sizeof *all);
    total = 0;
    for (int i = 0; i < n; i++) {
        memcpy(all + total, f[i].cl.lat, f[i].cl.n * sizeof *all);
        total += f[i].cl.n;
        errors += f[i].cl.errors;
        free(f[i].cl.lat);
        close(f[i].cl.c.fd);
    }
    summarize(&results[wl][sys], all, total, 1, errors);
    results[wl][sys].ops = (double)c0 / ((t1 - t0) / 1000.0);
    free(all);
    free(f);
    free(th);
}

/* ---- dispatch latency ------------------------------------------------------ */

struct disp {
    enum sys sys;
    int port, id;
    pthread_mutex_t *m;
    double *lat;
    size_t *n;
    int *errors;
};

static void *
consumer(void *arg)
{
    struct disp *d = arg;
    struct conn *c = malloc(sizeof *c);
    char body[256], out[8192], path[128], id[64], tok[128];

    if (!c || conn_open(c, d->port) < 0) {
        free(c);
        return NULL;
    }
    for (;;) {
        double sent, got;
        long jid;
        if (is_baton(d->sys)) {
            const char *t;
            snprintf(body, sizeof body, "{\"queue\":\"dispatch\",\"workerId\":\"d%d\",\"waitMs\":60000}", d->id);
            if (http(c, "POST", "/v1/jobs/claim", body, out, sizeof out) != 200)
                break;
            got = now_ms_mono();
            t = strstr(out, "\"t\":");
            sent = t ? atof(t + 4) : 0;
            if (json_str(out, "id", id, sizeof id) && json_str(out, "claimToken", tok, sizeof tok)) {
                snprintf(path, sizeof path, "/v1/jobs/%s/complete", id);
                snprintf(body, sizeof body, "{\"workerId\":\"d%d\",\"claimToken\":\"%s\"}", d->id, tok);
                http(c, "POST", path, body, out, sizeof out);
            }
        } else if (d->sys == BS_F0 || d->sys == BS_NONE) {
            if (bs_reserve(c, &jid, out, sizeof out) < 0)
                break;
            got = now_ms_mono();
            sent = atof(out);
            bs_delete(c, jid);
        } else {
            const char *move[] = {"BLMOVE", "dq", "dq:processing", "RIGHT", "LEFT", "0"};
            if (redis(c, out, sizeof out, 6, move) != '$')
                break;
            got = now_ms_mono();
            sent = atof(out);
            snprintf(tok, sizeof tok, "%.120s", out);
            const char *rem[] = {"LREM", "dq:processing", "1", tok};
            redis(c, out, sizeof out, 4, rem);
        }
        if (sent <= 0)
            break;              /* the stop marker */
        pthread_mutex_lock(d->m);
        d->lat[(*d->n)++] = got - sent;
        pthread_mutex_unlock(d->m);
    }
    close(c->fd);
    free(c);
    return NULL;
}

static int
produce(enum sys sys, struct conn *c, double t)
{
    char body[128], out[4096], v[64];

    snprintf(v, sizeof v, "%.4f", t);
    if (is_baton(sys)) {
        snprintf(body, sizeof body, "{\"queue\":\"dispatch\",\"payload\":{\"t\":%s}}", v);
        return http(c, "POST", "/v1/jobs", body, out, sizeof out) == 201 ? 0 : -1;
    }
    if (sys == BS_F0 || sys == BS_NONE)
        return bs_put(c, v);
    const char *push[] = {"LPUSH", "dq", v};
    return redis(c, out, sizeof out, 3, push) == ':' ? 0 : -1;
}

static void
run_dispatch(enum sys sys, int port)
{
    struct disp d[CLIENTS];
    pthread_t th[CLIENTS];
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    double *lat = calloc((size_t)dispatch_rounds + CLIENTS, sizeof *lat), t0;
    size_t n = 0;
    int errors = 0;
    struct conn *c = malloc(sizeof *c);

    if (!c || conn_open(c, port) < 0) {
        free(c);
        free(lat);
        return;
    }
    for (int i = 0; i < CLIENTS; i++) {
        d[i] = (struct disp){sys, client_port(sys, i, port), i, &m, lat, &n, &errors};
        pthread_create(&th[i], NULL, consumer, &d[i]);
    }
    usleep(200000);         /* let every consumer park */
    t0 = now_ms_mono();
    for (int r = 0; r < dispatch_rounds; r++) {
        if (produce(sys, c, now_ms_mono()) < 0)
            errors++;
        usleep(3000);       /* one job at a time: a consumer is parked again */
    }
    usleep(100000);
    for (int i = 0; i < CLIENTS; i++)
        produce(sys, c, 0);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    summarize(&results[W_DISPATCH][sys], lat, n, (now_ms_mono() - t0) / 1000.0, errors + dispatch_rounds - (int)n);
    close(c->fd);
    free(c);
    free(lat);
}

/* ---- the comparison --------------------------------------------------------- */

static long baton_idle_kib, baton_load_kib;

static void
bench_baton(void)
{
    struct proc p = {0};

    if (mkdir_tmp(&p) < 0 || batond_start(&p, NULL) < 0)
        return;
    usleep(300000);
    baton_idle_kib = rss_kib(p.pid, "VmRSS:");
    printf("  batond ...\n");
    fflush(stdout);
    run_clients(BATON, W_DEDUPE, p.port);
    run_clients(BATON, W_CYCLE, p.port);
    run_flow(BATON, W_FLOW8, p.port);
    run_flow(BATON, W_FLOW64, p.port);
    run_clients(BATON, W_HEARTBEAT, p.port);
    run_dispatch(BATON, p.port);
    baton_load_kib = rss_kib(p.pid, "VmHWM:");
    proc_stop(&p);
    rmdir_all(p.dir);
}

/* BENCH_ONLY=flow: batond's best-API flows alone, longer, for profiling
 * (its pid is printed for perf record -p). */
static void
bench_baton_flow(void)
{
    struct proc p = {0};

    if (mkdir_tmp(&p) < 0 || batond_start(&p, NULL) < 0)
        return;
    printf("  batond (pid %d) ...\n", (int)p.pid);
    fflush(stdout);
    run_flow(BATON, W_FLOW8, p.port);
    run_flow(BATON, W_FLOW64, p.port);
    proc_stop(&p);
    rmdir_all(p.dir);
}

static void
bench_beanstalkd(bool fsync)
{
    struct proc p = {0};
    char port[16];

    if (!have("/usr/bin/beanstalkd", "beanstalkd")) {
        printf("  beanstalkd not available: skipped\n");
        return;
    }
    if (mkdir_tmp(&p) < 0)
        return;
    p.name = "beanstalkd";
    p.port = free_port();
    snprintf(port, sizeof port, "%d", p.port);
    {
        char *const with[] = {"/usr/bin/beanstalkd", "-l", "127.0.0.1", "-p", port, "-b", p.dir, "-f0", NULL};
        char *const without[] = {"/usr/bin/beanstalkd", "-l", "127.0.0.1", "-p", port, NULL};
        printf("  %s ...\n", sys_name[fsync ? BS_F0 : BS_NONE]);
        fflush(stdout);
        if (proc_start(&p, fsync ? with : without) < 0)
            return;
    }
    run_clients(fsync ? BS_F0 : BS_NONE, W_CYCLE, p.port);
    run_dispatch(fsync ? BS_F0 : BS_NONE, p.port);
    /* last: a flow leaves up to FLOW_BACKLOG jobs in the one tube */
    run_flow(fsync ? BS_F0 : BS_NONE, W_FLOW8, p.port);
    run_flow(fsync ? BS_F0 : BS_NONE, W_FLOW64, p.port);
    proc_stop(&p);
    rmdir_all(p.dir);
}

int
redis_start(struct proc *p, bool fsync)
{
    char port[16];
    char *const with[] = {"/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", p->dir,
                          "--save", "", "--appendonly", "yes", "--appendfsync", "always", NULL};
    char *const without[] = {"/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", p->dir,
                             "--save", "", "--appendonly", "no", NULL};

    p->name = "redis-server";
    p->port = free_port();
    snprintf(port, sizeof port, "%d", p->port);
    return proc_start(p, fsync ? with : without);
}

static void
bench_redis(bool fsync)
{
    struct proc p = {0};
    enum sys s = fsync ? REDIS_ALWAYS : REDIS_NONE;

    if (!have("/usr/bin/redis-server", "redis-server")) {
        printf("  redis-server not available: skipped\n");
        return;
    }
    if (mkdir_tmp(&p) < 0)
        return;
    printf("  %s ...\n", sys_name[s]);
    fflush(stdout);
    if (redis_start(&p, fsync) < 0)
        return;
    run_clients(s, W_DEDUPE, p.port);
    run_clients(s, W_CYCLE, p.port);
    run_flow(s, W_FLOW8, p.port);
    run_flow(s, W_FLOW64, p.port);
    run_dispatch(s, p.port);
    proc_stop(&p);
    rmdir_all(p.dir);
}

static void
print_table(void)
{
    printf("\n  %-36s %-28s %9s %8s %8s %8s %8s %s\n", "workload", "system", "ops/s", "p50 ms", "p99 ms",
           "p99.9 ms", "errors", "baton/peer");
    for (int w = 0; w < NWL; w++)
        for (int s = 0; s < NSYS; s++) {
            struct result *r = &results[w][s], *b = &results[w][BATON];
            char ratio[64] = "";
            if (!r->ran || s >= BATON_PG1)
                continue;       /* PostgreSQL: print_pg_table */
            if (s != BATON && b->ran) {
                if (w == W_DISPATCH)
                    snprintf(ratio, sizeof ratio, "p99 x%.2f", r->p99 > 0 ? b->p99 / r->p99 : 0);
                else
                    snprintf(ratio, sizeof ratio, "ops x%.2f", r->ops > 0 ? b->ops / r->ops : 0);
            }
            printf("  %-36s %-28s %9.0f %8.3f %8.3f %8.3f %8d %s\n", s == BATON ? wl_name[w] : "", sys_name[s],
                   w == W_DISPATCH ? 0.0 : r->ops, r->p50, r->p99, r->p999, r->errors, ratio);
        }
    printf("  (dispatch: ops/s not meaningful, one job every 3 ms; latency = producer send -> consumer holds it)\n");
}

/* ---- PostgreSQL: batond's second store beside graphile-worker ------------------- */

static struct {
    char dir[64];           /* holds data/, the socket, the log */
    char bin[200];          /* the server's bin directory */
    char as[32];            /* "runuser -u postgres -- " when root (initdb refuses root) */
    int port;
    bool up;
} pgsrv;

/* Run a shell command quietly; its exit status. */
int
sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* initdb and start a PostgreSQL of the bench's own on a free port; its
 * settings are the defaults (fsync, synchronous_commit on) but for the
 * connection limit (three replicas and their pools). */
int
pg_up(void)
{
    FILE *f;

    if (sh("ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1") != 0 && geteuid() == 0) {
        printf("  (installing postgresql with apt-get)\n");
        fflush(stdout);
        sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1");
    }
    if (!(f = popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1", "r")))
        return -1;
    if (!fgets(pgsrv.bin, sizeof pgsrv.bin, f))
        pgsrv.bin[0] = 0;
    pclose(f);
    pgsrv.bin[strcspn(pgsrv.bin, "\n")] = 0;
    if (!pgsrv.bin[0]) {
        printf("  PostgreSQL server not installed: skipped\n");
        return -1;
    }
    snprintf(pgsrv.dir, sizeof pgsrv.dir, "/tmp/baton-bench-pg-XXXXXX");
    if (!mkdtemp(pgsrv.dir))
        return -1;
    pgsrv.as[0] = 0;
    if (geteuid() == 0) {
        snprintf(pgsrv.as, sizeof pgsrv.as, "runuser -u postgres -- ");
        sh("chown postgres '%s'", pgsrv.dir);
    }
    pgsrv.port = free_port();
    if (sh("%s%s/initdb -D %s/data -A trust -U baton >%s/initdb.log 2>&1", pgsrv.as, pgsrv.bin, pgsrv.dir,
           pgsrv.dir) != 0 ||
        sh("%s%s/pg_ctl -D %s/data -l %s/server.log -w -o \"-p %d -k %s -c listen_addresses=127.0.0.1"
           " -c max_connections=300\" start >/dev/null 2>&1",
           pgsrv.as, pgsrv.bin, pgsrv.dir, pgsrv.dir, pgsrv.port, pgsrv.dir) != 0) {
        fprintf(stderr, "bench: PostgreSQL did not start (see %s)\n", pgsrv.dir);
        return -1;
    }
    pgsrv.up = true;
    return 0;
}

void
pg_down(void)
{
    if (pgsrv.up)
        sh("%s%s/pg_ctl -D %s/data -m fast -w stop >/dev/null 2>&1", pgsrv.as, pgsrv.bin, pgsrv.dir);
    pgsrv.up = false;
    rmdir_all(pgsrv.dir);
}

/* The bench's PostgreSQL server process (postmaster.pid), 0 when down. */
pid_t
pg_pid(void)
{
    char path[128];
    long pid = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/data/postmaster.pid", pgsrv.dir);
    if (pgsrv.up && (f = fopen(path, "r"))) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

/* A new database on the bench's server; its URL into url. */
int
pg_db(const char *name, char *url, size_t n)
{
    snprintf(url, n, "postgresql://baton@127.0.0.1:%d/%s", pgsrv.port, name);
    return sh("psql -X -q -d 'postgresql://baton@127.0.0.1:%d/postgres' -c 'CREATE DATABASE \"%s\"' >/dev/null 2>&1",
              pgsrv.port, name);
}

/* batond on the PostgreSQL database url: n replicas into reps */
static int
pg_replicas(struct proc *reps, int n, const char *url)
{
    char env[300];
    const char *extra[] = {env, NULL};

    snprintf(env, sizeof env, "BATON_DB=%s", url);
    for (int i = 0; i < n; i++) {
        memset(&reps[i], 0, sizeof reps[i]);
        if (mkdir_tmp(&reps[i]) < 0 || batond_start(&reps[i], extra) < 0) {
            printf("  batond did not start on PostgreSQL (see %s/batond.log)\n", reps[i].dir);
            for (int k = 0; k < i; k++)
                proc_stop(&reps[k]);
            return -1;
        }
        if (i < 3)
            replica_ports[i] = reps[i].port;
    }
    return 0;
}

static void
pg_replicas_stop(struct proc *reps, int n)
{
    for (int i = 0; i < n; i++) {
        proc_stop(&reps[i]);
        rmdir_all(reps[i].dir);
    }
}

/* One number of a JSON line: "key":value */
double
json_num(const char *line, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof pat, "\"%s\":", key);
    return (p = strstr(line, pat)) ? atof(p + strlen(pat)) : 0;
}

/* graphile-worker: installed with npm into the cache once, then
 * graphile_bench.js on a database of its own. */
static void
bench_graphile(void)
{
    const char *cache = getenv("BENCH_CACHE") ? getenv("BENCH_CACHE") : "build/bench-cache";
    char dir[300], url[200], cmd[1024], line[1024];
    FILE *f;

    snprintf(dir, sizeof dir, "%s/graphile-worker", cache);
    if (sh("command -v node >/dev/null && command -v npm >/dev/null") != 0) {
        printf("  node/npm not installed: graphile-worker skipped\n");
        return;
    }
    snprintf(cmd, sizeof cmd, "%s/node_modules/graphile-worker/package.json", dir);
    if (access(cmd, R_OK) != 0) {
        printf("  (installing graphile-worker with npm into %s)\n", dir);
        fflush(stdout);
        if (sh("mkdir -p '%s' && cd '%s' && npm install --no-audit --no-fund --silent graphile-worker@0.16 pg@8"
               " >npm.log 2>&1", dir, dir) != 0) {
            printf("  npm install failed (see %s/npm.log): graphile-worker skipped\n", dir);
            return;
        }
    }
    if (pg_db("graphile", url, sizeof url) != 0)
        return;
    printf("  %s ...\n", sys_name[GRAPHILE]);
    fflush(stdout);
    snprintf(cmd, sizeof cmd, "NODE_PATH='%s/node_modules' node tests/bench/graphile_bench.js '%s' %.1f %d",
             dir, url, duration_s, dispatch_rounds);
    if (!(f = popen(cmd, "r")))
        return;
    while (fgets(line, sizeof line, f)) {
        enum wl w = strstr(line, "\"cycle\"") ? W_CYCLE : strstr(line, "\"dispatch\"") ? W_DISPATCH : NWL;
        struct result *r;
        if (w == NWL)
            continue;
        r = &results[w][GRAPHILE];
        *r = (struct result){.ran = true, .ops = json_num(line, "ops"), .p50 = json_num(line, "p50"),
                             .p99 = json_num(line, "p99"), .p999 = json_num(line, "p999"),
                             .errors = (int)json_num(line, "errors")};
    }
    if (pclose(f) != 0)
        printf("  graphile_bench.js failed\n");
}

static void
print_pg_table(void)
{
    printf("\n  %-36s %-32s %9s %8s %8s %8s %8s %s\n", "workload (PostgreSQL)", "system", "ops/s", "p50 ms",
           "p99 ms", "p99.9 ms", "errors", "vs graphile");
    for (int w = 0; w < NWL; w++)
        for (int s = BATON_PG1; s <= GRAPHILE; s++) {
            struct result *r = &results[w][s], *g = &results[w][GRAPHILE];
            char ratio[64] = "";
            if (!r->ran)
                continue;
            if (s != GRAPHILE && g->ran) {
                if (w == W_DISPATCH)
                    snprintf(ratio, sizeof ratio, "p99 x%.2f", r->p99 > 0 ? g->p99 / r->p99 : 0);
                else
                    snprintf(ratio, sizeof ratio, "ops x%.2f", g->ops > 0 ? r->ops / g->ops : 0);
            }
            printf("  %-36s %-32s %9.0f %8.3f %8.3f %8.3f %8d %s\n", wl_name[w], sys_name[s],
                   w == W_DISPATCH ? 0.0 : r->ops, r->p50, r->p99, r->p999, r->errors, ratio);
        }
    printf("  (vs graphile: ops = baton/graphile, p99 = graphile/baton: above 1 means baton is ahead)\n");
}

static void
bench_pg(void)
{
    struct proc reps[3];
    char url[200];

    printf("\n  PostgreSQL (%s):\n", quick ? "BENCH_QUICK" : "full");
    fflush(stdout);
    if (pg_up() < 0)
        return;
    if (pg_db("baton1", url, sizeof url) == 0 && pg_replicas(reps, 1, url) == 0) {
        printf("  %s ...\n", sys_name[BATON_PG1]);
        fflush(stdout);
        run_clients(BATON_PG1, W_CYCLE, reps[0].port);
        run_dispatch(BATON_PG1, reps[0].port);
        pg_replicas_stop(reps, 1);
    }
    if (pg_db("baton3", url, sizeof url) == 0 && pg_replicas(reps, 3, url) == 0) {
        printf("  %s ...\n", sys_name[BATON_PG3]);
        fflush(stdout);
        run_clients(BATON_PG3, W_CYCLE, reps[0].port);
        run_dispatch(BATON_PG3, reps[0].port);
        pg_replicas_stop(reps, 3);
    }
    bench_graphile();
    pg_down();
    print_pg_table();
}

/* ---- scale ------------------------------------------------------------------- */

/* Bulk-load count jobs of one status into the stopped server's database
 * with SQL. The one place outside the migration tests that writes the file
 * directly, on purpose: the scale runs need 10^5..10^6 rows, which the
 * routes would take minutes to make, and what is measured is batond on
 * those rows, not the loading. */
static int
sql_fill(const char *dir, const char *status, int64_t count, int64_t locked_until, int64_t completed_at)
{
    char path[128];
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t now = (int64_t)time(NULL) * 1000;
    int rc;

    snprintf(path, sizeof path, "%s/baton.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; BEGIN", NULL, NULL, NULL);
    rc = sqlite3_prepare_v2(db, "INSERT INTO jobs(queue, status, payload, priority, run_at, attempts, max_attempts,"
                                " locked_by, locked_until, claim_token, started_at, completed_at, created_at, updated_at)"
                                " VALUES ('scale', ?1, '{\"n\":1}', 0, 0, ?2, 5, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "bench: %s\n", sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    for (int64_t i = 0; i < count; i++) {
        bool proc = !strcmp(status, "processing");
        sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, proc || completed_at ? 1 : 0);
        if (proc) {
            sqlite3_bind_text(st, 3, "gone", -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, locked_until);
            sqlite3_bind_text(st, 5, "c_00", -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 6, now - 600000);
        } else {
            sqlite3_bind_null(st, 3);
            sqlite3_bind_null(st, 4);
            sqlite3_bind_null(st, 5);
            sqlite3_bind_null(st, 6);
        }
        if (completed_at)
            sqlite3_bind_int64(st, 7, completed_at);
        else
            sqlite3_bind_null(st, 7);
        sqlite3_bind_int64(st, 8, now - 600000);
        if (sqlite3_step(st) != SQLITE_DONE) {
            fprintf(stderr, "bench: insert: %s\n", sqlite3_errmsg(db));
            break;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    rc = sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int64_t
sql_count(const char *dir, const char *sql)
{
    char path[128];
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;

    snprintf(path, sizeof path, "%s/baton.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static long
file_kib(const char *dir, const char *name)
{
    char p[160];
    struct stat st;

    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 ? (long)(st.st_size / 1024) : 0;
}

static double claim_p50[3], claim_p99[3];

static void
measure_claims(int port, int slot)
{
    struct conn *c = malloc(sizeof *c);
    char out[8192];
    enum { N = 300 };
    double lat[N];
    int n = 0;

    if (!c || conn_open(c, port) < 0) {
        free(c);
        return;
    }
    for (int i = 0; i < 20; i++)
        http(c, "POST", "/v1/jobs/claim", "{\"queue\":\"scale\",\"workerId\":\"s\"}", out, sizeof out);
    for (int i = 0; i < N; i++) {
        double t0 = now_ms_mono();
        if (http(c, "POST", "/v1/jobs/claim", "{\"queue\":\"scale\",\"workerId\":\"s\"}", out, sizeof out) == 200)
            lat[n++] = now_ms_mono() - t0;
    }
    close(c->fd);
    free(c);
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    claim_p50[slot] = n ? lat[n / 2] : -1;
    claim_p99[slot] = n ? lat[n * 99 / 100] : -1;
}

static void
bench_scale(void)
{
    static const int64_t sizes[3] = {1000, 100000, 1000000};
    struct proc p = {0};
    int64_t have_jobs = 0;
    double t0, t1;
    char out[1 << 16];
    struct conn *c;

    printf("\n  scale (batond, synchronous=FULL):\n");
    fflush(stdout);
    /* claim latency by pending depth */
    if (mkdir_tmp(&p) < 0 || batond_start(&p, NULL) < 0)
        return;
    proc_stop(&p);
    for (int i = 0; i < 3; i++) {
        if (quick && sizes[i] > 100000)
            break;
        t0 = now_ms_mono();
        if (sql_fill(p.dir, "pending", sizes[i] - have_jobs, 0, 0) < 0)
            break;
        t1 = now_ms_mono();
        have_jobs = sizes[i];
        if (batond_start(&p, NULL) < 0)
            break;
        measure_claims(p.port, i);
        printf("    claim with %7lld pending: p50 %.3f ms  p99 %.3f ms   (inserted in %.1f s)\n",
               (long long)sizes[i], claim_p50[i], claim_p99[i], (t1 - t0) / 1000.0);
        fflush(stdout);
        have_jobs -= 320;
        proc_stop(&p);
    }
    rmdir_all(p.dir);

    /* the stale sweep over 10^5 expired locks */
    memset(&p, 0, sizeof p);
    if (mkdir_tmp(&p) < 0 || batond_start(&p, NULL) < 0)
        return;
    proc_stop(&p);
    /* locks that expire only after batond has started and run its first
     * sweep (which would otherwise take them back before the request) */
    {
        static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};
        int64_t expiry = wall_ms() + 4000;
        sql_fill(p.dir, "processing", 100000, expiry, 0);
        if (batond_start(&p, env) < 0)
            return;
        while (wall_ms() <= expiry + 50)
            usleep(10000);
    }
    c = malloc(sizeof *c);
    if (c && conn_open(c, p.port) == 0) {
        int st;
        t0 = now_ms_mono();
        st = http(c, "POST", "/v1/jobs/requeue-stale", "{}", out, sizeof out);
        t1 = now_ms_mono();
        printf("    stale sweep of 100000 expired locks: %.0f ms (status %d, %lld still processing)\n", t1 - t0, st,
               (long long)sql_count(p.dir, "SELECT count(*) FROM jobs WHERE status = 'processing'"));
        close(c->fd);
    }
    free(c);
    proc_stop(&p);

    /* the same by the periodic sweep, in chunks (one write each), and how
     * long another write waits meanwhile: a heartbeat with a wrong token,
     * a writer round trip that changes nothing (409) */
    {
        static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=100", NULL};
        int64_t expiry = wall_ms() + 4000, left = -1;
        double lat[4096], worst = 0;
        int nlat = 0;

        sql_fill(p.dir, "processing", 100000, expiry, 0);
        if (batond_start(&p, env) < 0)
            return;
        c = malloc(sizeof *c);
        if (!c || conn_open(c, p.port) < 0) {
            free(c);
            proc_stop(&p);
            return;
        }
        while (wall_ms() <= expiry)
            usleep(1000);
        t0 = now_ms_mono();
        while (now_ms_mono() - t0 < 60000) {
            double w0 = now_ms_mono();
            http(c, "POST", "/v1/jobs/1/heartbeat", "{\"workerId\":\"x\",\"claimToken\":\"c_no\"}", out,
                 sizeof out);
            if (nlat < 4096) {
                lat[nlat] = now_ms_mono() - w0;
                worst = lat[nlat] > worst ? lat[nlat] : worst;
                nlat++;
            }
            if ((left = sql_count(p.dir, "SELECT count(*) FROM jobs WHERE status = 'processing'")) == 0)
                break;
            usleep(10000);
        }
        t1 = now_ms_mono();
        qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
        printf("    periodic sweep of the same: %.0f ms from expiry to none left (%lld left); a write meanwhile"
               " (%d): p50 %.1f ms  p99 %.1f ms  max %.1f ms\n", t1 - t0, (long long)left, nlat,
               nlat ? lat[nlat / 2] : -1.0, nlat ? lat[nlat * 99 / 100] : -1.0, worst);
        close(c->fd);
        free(c);
        proc_stop(&p);
    }
    rmdir_all(p.dir);

    /* completed jobs pruned by retention: file size and memory after, the
     * file against an empty database's (batond gives the space back with
     * incremental vacuum in its sweep), and how long a write waits
     * meanwhile (requeue-stale with nothing stale: one writer round trip) */
    memset(&p, 0, sizeof p);
    if (mkdir_tmp(&p) < 0 || batond_start(&p, NULL) < 0)
        return;
    proc_stop(&p);
    {
        int64_t n = quick ? 100000 : 1000000;
        static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=20", "BATON_RETENTION_MS=1000", NULL};
        long empty = file_kib(p.dir, "baton.db"), db;
        double t2, lat[4096], worst = 0;
        int nlat = 0;

        sql_fill(p.dir, "completed", n, 0, 1000);
        printf("    %lld completed jobs: db %ld KiB before retention (empty database %ld KiB)\n", (long long)n,
               file_kib(p.dir, "baton.db"), empty);
        if (batond_start(&p, env) < 0)
            return;
        c = malloc(sizeof *c);
        if (!c || conn_open(c, p.port) < 0) {
            free(c);
            c = NULL;
        }
        t0 = now_ms_mono();
        t1 = 0;
        for (;;) {
            if (c) {
                double w0 = now_ms_mono();
                if (http(c, "POST", "/v1/jobs/requeue-stale", "{}", out, sizeof out) == 200 && nlat < 4096) {
                    lat[nlat] = now_ms_mono() - w0;
                    worst = lat[nlat] > worst ? lat[nlat] : worst;
                    nlat++;
                }
            }
            usleep(50000);
            if (!t1 && sql_count(p.dir, "SELECT count(*) FROM jobs") == 0)
                t1 = now_ms_mono();
            db = file_kib(p.dir, "baton.db");
            if ((t1 && db < 2 * empty) || (t1 && now_ms_mono() - t1 > 30000) || now_ms_mono() - t0 > 300000)
                break;
        }
        t2 = now_ms_mono();
        if (c) {
            close(c->fd);
            free(c);
        }
        qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
        printf("    pruned by retention in %.1f s, then %.1f s: db %ld KiB + wal %ld KiB = %.2fx the"
               " empty database, batond RSS %ld KiB (peak %ld KiB)\n",
               t1 ? (t1 - t0) / 1000.0 : -1.0, t1 ? (t2 - t1) / 1000.0 : -1.0, db, file_kib(p.dir, "baton.db-wal"),
               empty ? (double)db / (double)empty : 0.0, rss_kib(p.pid, "VmRSS:"), rss_kib(p.pid, "VmHWM:"));
        if (nlat)
            printf("    a write meanwhile (%d): p50 %.1f ms  p99 %.1f ms  max %.1f ms\n", nlat, lat[nlat / 2],
                   lat[nlat * 99 / 100], worst);
        proc_stop(&p);
    }
    rmdir_all(p.dir);
}

int
bench_compare(void)
{
    const char *only = getenv("BENCH_ONLY");  /* e.g. "baton,scale" */

    quick = getenv("BENCH_QUICK") && strcmp(getenv("BENCH_QUICK"), "0");
    duration_s = quick ? 1.5 : 5.0;
    dispatch_rounds = quick ? 200 : 1000;
    signal(SIGPIPE, SIG_IGN);

    printf("\ncomparison: %d clients, %.1f s per workload%s\n", CLIENTS, duration_s, quick ? " (BENCH_QUICK)" : "");
    fflush(stdout);
    if (!only || strstr(only, "baton"))
        bench_baton();
    else if (strstr(only, "flow"))
        bench_baton_flow();
    if (!only || strstr(only, "peers")) {
        bench_beanstalkd(true);
        bench_beanstalkd(false);
        bench_redis(true);
        bench_redis(false);
    }
    if (!only || strstr(only, "baton") || strstr(only, "peers") || strstr(only, "flow")) {
        print_table();
        printf("\n  batond RSS: idle %ld KiB, peak under the load above %ld KiB\n", baton_idle_kib, baton_load_kib);
    }
    if (!only || strstr(only, "pg"))
        bench_pg();
    if (!only || strstr(only, "node"))
        bench_node();
    if (!only || strstr(only, "scale"))
        bench_scale();
    return 0;
}
