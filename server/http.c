/* http.c -- libmicrohttpd glue: request state, limits, auth, body parsing,
 * dispatch through the route table, and the one place errors become HTTP.
 *
 * DESIGN
 * Each request gets a struct req in MHD's req_cls. The first call (headers
 * only) matches the route and rejects what can be rejected without a body:
 * unknown routes, bad credentials, a Content-Length over BATON_MAX_BODY, a
 * body that is not JSON. Body chunks are appended up to the limit and
 * dropped beyond it (answered 413, never buffered). The last call parses
 * JSON and runs the handler. A handler that submitted a write has had its
 * connection suspended by req_submit; the writer resumes it and MHD calls us
 * once more to send the answer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "batond.h"

enum { S_NEW, S_QUEUED, S_DONE };      /* struct req state */

static struct MHD_Daemon *daemon_;
static atomic_int active;
static atomic_bool shutting;
static int bound_port;

/* The single map from an error code to an HTTP status. */
static const struct {
    const char *code;
    int status;
} statuses[] = {
    {"bad_request", 400},
    {"unauthorized", 401},
    {"forbidden", 403},
    {"not_found", 404},
    {"method_not_allowed", 405},
    {"claim_lost", 409},
    {"lease_held", 409},
    {"lease_lost", 409},
    {"lease_not_held", 409},
    {"conflict", 409},
    {"undecryptable", 409},
    {"request_timeout", 408},
    {"payload_too_large", 413},
    {"unsupported_media_type", 415},
    {"unprocessable", 422},
    {"rate_limited", 429},
    {"unavailable", 503},
    {"not_configured", 503},
    {"internal", 500},
    {NULL, 500},
};

static void auth_failed(struct req *r);
static void addr_text(const struct sockaddr *sa, char *buf, size_t n);

static int
status_of(const char *code)
{
    int i;

    for (i = 0; statuses[i].code; i++)
        if (!strcmp(statuses[i].code, code))
            break;
    return statuses[i].status;
}

int
req_ok(struct req *r, int status, json_t *body)
{
    json_decref(r->out);
    r->out = body;
    r->status = status;
    r->err_code = NULL;
    return 0;
}

int
req_fail(struct req *r, const char *code, json_t *details, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    json_t *err;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_sanitize(msg);     /* a cut buffer must not cost the whole body */
    err = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (!err)
        err = json_pack("{s:s, s:s}", "code", code, "message", code);
    if (details) {
        json_object_update_missing(err, details);
        json_decref(details);
    }
    json_decref(r->out);
    r->out = json_pack("{s:o}", "error", err);
    r->status = status_of(code);
    r->err_code = code;
    /* a failed authentication counts at once, before the answer is out: a
     * client's next attempt (on another connection) must see it */
    if (r->conn && (r->status == 401 || (r->status == 403 && r->route && r->route->auth == AUTH_OWN)))
        auth_failed(r);
    free(r->text);
    r->text = NULL;
    return -1;
}

const char *
req_param(struct req *r, int i)
{
    return (i >= 0 && i < MAX_PARAMS) ? r->params[i] : NULL;
}

const char *
req_query(struct req *r, const char *name)
{
    if (r->query)
        return json_string_value(json_object_get(r->query, name));
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
}

const char *
req_header(struct req *r, const char *name)
{
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name) : NULL;
}

const char *
req_cookie(struct req *r, const char *name)
{
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name) : NULL;
}

static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    json_object_set_new(cls, key, json_string(value ? value : ""));
    return MHD_YES;
}

json_t *
req_query_all(struct req *r)
{
    json_t *all = json_object();

    if (r->query)
        json_object_update(all, r->query);
    else if (r->conn)
        MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_arg, all);
    return all;
}

int
req_fields(struct req *r, const struct field *spec)
{
    char why[256];

    if (fields_parse(r->json, spec, why, sizeof why) < 0)
        return req_fail(r, "bad_request", NULL, "%s", why);
    return 0;
}

int
req_query_int(struct req *r, const char *name, int64_t dflt, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v = req_query(r, name);
    int64_t x;

    if (!v || !*v) {
        *out = dflt;
        return 0;
    }
    if (parse_int64(v, &x) < 0 || x < lo || x > hi)
        return req_fail(r, "bad_request", NULL, "query parameter '%s' must be an integer between %lld and %lld",
                        name, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

void
req_set_header(struct req *r, const char *name, const char *value)
{
    if (!r->headers)
        r->headers = json_object();
    json_object_set_new(r->headers, name, json_string(value));
}

const char *
req_client_addr(struct req *r, char *buf, size_t n)
{
    const union MHD_ConnectionInfo *ci;
    const char *xff;

    snprintf(buf, n, "internal");
    if (!r->conn)
        return buf;
    /* behind a proxy batond trusts, the client is the first hop it names */
    if (cfg.trust_proxy && (xff = req_header(r, "X-Forwarded-For")) && *xff) {
        size_t len = strcspn(xff, ", ");
        snprintf(buf, n, "%.*s", (int)(len < 64 ? len : 64), xff);
        utf8_sanitize(buf);
        return buf;
    }
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return buf;
    addr_text(ci->client_addr, buf, n);
    return buf;
}

int
req_limited(struct req *r, int64_t wait_ms, const char *what)
{
    char s[32];
    int64_t secs = (wait_ms + 999) / 1000;

    if (secs < 1)
        secs = 1;
    snprintf(s, sizeof s, "%lld", (long long)secs);
    req_fail(r, "rate_limited", json_pack("{s:I}", "retryAfterMs", (json_int_t)wait_ms),
             "too many %s; retry after %lld s", what, (long long)secs);
    req_set_header(r, "Retry-After", s);
    return -1;
}

bool
req_alive(struct req *r)
{
    const union MHD_ConnectionInfo *ci;
    char b;
    ssize_t n;

    if (!r->conn)
        return true;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return true;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

struct req *
req_new_internal(void)
{
    struct req *r = calloc(1, sizeof *r);

    if (r) {
        r->method = "POST";
        r->started = now_ms();
    }
    return r;
}

void
req_free(struct req *r)
{
    if (!r)
        return;
    if (r->ctx_free)
        r->ctx_free(r->ctx);
    free(r->url);
    for (int i = 0; i < MAX_PARAMS; i++)
        free(r->params[i]);
    free(r->body);
    json_decref(r->json);
    json_decref(r->out);
    json_decref(r->query);
    if (r->raw)
        MHD_destroy_response(r->raw);
    free(r->text);
    free(r->w.topic);
    json_decref(r->w.err.details);
    json_decref(r->headers);
    free(r);
}

void
http_suspend(struct req *r)
{
    r->state = S_QUEUED;
    MHD_suspend_connection(r->conn);
}

void
http_resume(struct req *r)
{
    r->state = S_DONE;
    MHD_resume_connection(r->conn);
}

/* ---- writes: struct req on the writer's struct wreq ---------------------- */

#define REQ_OF(w) ((struct req *)((char *)(w) - offsetof(struct req, w)))

static int
write_fn(struct tx *t, struct wreq *w)
{
    struct req *r = REQ_OF(w);
    int rc = r->wfn(t, r);

    /* a failure of the rules or the store below, not answered by the
     * write itself: its fault is the answer */
    if (rc < 0 && t->err.code && !r->err_code)
        req_fail_tx(r, t);
    return rc;
}

static bool
write_alive(struct wreq *w)
{
    return req_alive(REQ_OF(w));
}

/* The batch is over: a failed commit overrides the write's own answer. */
static void
write_done(struct wreq *w)
{
    struct req *r = REQ_OF(w);

    if (w->failed)
        req_fail(r, w->err.code ? w->err.code : "unavailable", NULL, "%s", w->err.msg);
    if (r->conn)
        http_resume(r);
    else if (!r->w.sync)
        req_free(r);        /* fire-and-forget internal write */
}

static void
write_queued(struct wreq *w)
{
    http_suspend(REQ_OF(w));
}

static void
write_prepare(struct req *r, int (*fn)(struct tx *, struct req *))
{
    r->wfn = fn;
    r->w.fn = write_fn;
    r->w.done = write_done;
    r->w.alive = write_alive;
    r->w.failed = false;
}

int
req_submit(struct req *r, int (*fn)(struct tx *, struct req *))
{
    write_prepare(r, fn);
    r->w.queued = r->conn ? write_queued : NULL;
    if (writer_submit(&r->w) < 0)
        return req_fail(r, "unavailable", NULL, "server is shutting down");
    return 0;
}

int
req_write(struct req *r, int (*fn)(struct tx *, struct req *))
{
    write_prepare(r, fn);
    r->w.queued = NULL;
    if (writer_run(&r->w) < 0) {
        if (r->w.failed)
            req_fail(r, r->w.err.code ? r->w.err.code : "unavailable", NULL, "%s", r->w.err.msg);
        return -1;
    }
    return 0;
}

void
req_park(struct tx *t, struct req *r, const char *topic, int64_t deadline, int64_t due)
{
    tx_park(t, &r->w, topic, deadline, due);
}

int
req_fail_tx(struct req *r, struct tx *t)
{
    struct fault *f = &t->err;
    json_t *d = f->details;

    f->details = NULL;
    req_fail(r, f->code ? f->code : "internal", d, "%s", f->code ? f->msg : "the write failed");
    tx_clear_fault(t);
    return -1;
}

int
http_active(void)
{
    return atomic_load(&active);
}

void
http_shutting_down(void)
{
    atomic_store(&shutting, true);
}


/* ---- connections: deadlines and caps ------------------------------------
 *
 * libmicrohttpd closes a connection only when it has been idle for the
 * whole idle timeout, so a client that sends one byte just before each
 * timeout would hold it forever. Every connection is tracked from accept
 * to close with the phase its current request is in; a reaper thread
 * closes those past their phase's deadline (a 408 is written first, best
 * effort). Caps are judged at accept: the connection over the global cap,
 * or over the cap of its client address, is still accepted (libmicrohttpd's
 * own limit has headroom above ours) and its first request is answered
 * 503/429 with Connection: close, so a client over the cap hears at once
 * instead of waiting in the kernel's backlog. */

enum { P_HEADERS, P_BODY, P_BUSY, P_IDLE, P_REAPED };

struct track {
    MHD_socket fd;
    int phase;
    int64_t since;              /* ms: accept, request start, or last answer */
    bool over_total, over_address;
    char addr[INET6_ADDRSTRLEN];
    struct track *prev, *next;
};

static pthread_mutex_t track_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t track_cond = PTHREAD_COND_INITIALIZER;
static struct track *tracks;
static size_t ntracks;
static bool reaper_stop, reaper_running;
static pthread_t reaper;
static atomic_ullong closed_header_timeout, closed_body_timeout, refused_total, refused_address;

static struct ratelimit auth_failures;  /* failed authentications per address */
static struct ratelimit webhook_flood;  /* webhook requests per address */

static void
addr_text(const struct sockaddr *sa, char *buf, size_t n)
{
    snprintf(buf, n, "?");
    if (!sa)
        return;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf, (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf, (socklen_t)n);
}

static struct track *
track_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? ci->socket_context : NULL;
}

static void
track_phase(struct MHD_Connection *c, int phase)
{
    struct track *t = c ? track_of(c) : NULL;

    if (!t)
        return;
    pthread_mutex_lock(&track_lock);
    if (t->phase != P_REAPED) {
        if (phase == P_IDLE || (phase == P_HEADERS && t->phase == P_IDLE))
            t->since = now_ms();
        t->phase = phase;
    }
    pthread_mutex_unlock(&track_lock);
}

/* Loopback clients are exempt from the per-address limits unless
 * BATON_LIMIT_LOOPBACK=1: workers on batond's own host share 127.0.0.1,
 * and one of them with a stale secret must not lock the others out. */
static bool
limits_apply(const char *addr)
{
    if (cfg.limit_loopback)
        return true;
    return strncmp(addr, "127.", 4) && strcmp(addr, "::1") && strncmp(addr, "::ffff:127.", 11);
}

int
req_auth_limited(struct req *r)
{
    char addr[INET6_ADDRSTRLEN + 16];
    int64_t wait;

    if (limits_apply(req_client_addr(r, addr, sizeof addr)) &&
        (wait = ratelimit_peek(&auth_failures, addr, now_ms())) > 0)
        return req_limited(r, wait, "failed authentications from your address");
    return 0;
}

/* Count a failed authentication against the client's address. */
static void
auth_failed(struct req *r)
{
    char addr[INET6_ADDRSTRLEN + 16];

    if (limits_apply(req_client_addr(r, addr, sizeof addr)))
        ratelimit_take(&auth_failures, addr, now_ms());
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
              enum MHD_ConnectionNotificationCode code)
{
    struct track *t;

    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ad = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        size_t same = 0;

        t = calloc(1, sizeof *t);
        if (!t)
            return;     /* untracked: no deadline, counted nowhere */
        t->fd = fd ? fd->connect_fd : MHD_INVALID_SOCKET;
        t->since = now_ms();
        t->phase = P_HEADERS;
        addr_text(ad ? ad->client_addr : NULL, t->addr, sizeof t->addr);
        pthread_mutex_lock(&track_lock);
        for (struct track *o = tracks; o; o = o->next)
            if (!o->over_total && !o->over_address && !strcmp(o->addr, t->addr))
                same++;
        t->over_total = ntracks >= (size_t)cfg.max_connections;
        t->over_address = !t->over_total && same >= (size_t)cfg.max_connections_per_address &&
                          limits_apply(t->addr);
        if (!t->over_total && !t->over_address)
            ntracks++;
        t->next = tracks;
        if (tracks)
            tracks->prev = t;
        tracks = t;
        pthread_mutex_unlock(&track_lock);
        *socket_context = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && (t = *socket_context)) {
        pthread_mutex_lock(&track_lock);
        if (t->prev)
            t->prev->next = t->next;
        else
            tracks = t->next;
        if (t->next)
            t->next->prev = t->prev;
        if (!t->over_total && !t->over_address)
            ntracks--;
        pthread_mutex_unlock(&track_lock);
        free(t);
        *socket_context = NULL;
    }
}

/* The request line of a request on this connection has arrived. */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls, (void)uri;
    track_phase(c, P_HEADERS);
    return NULL;
}

static int64_t
deadline_of(const struct track *t)
{
    switch (t->phase) {
    case P_HEADERS:
        return t->since + cfg.header_timeout_ms;
    case P_BODY:
        return t->since + cfg.body_timeout_ms;
    case P_IDLE:
        /* waiting for the next request: libmicrohttpd's idle timeout closes a
         * silent one; a dribbling one gets the header deadline on top */
        return t->since + cfg.idle_timeout_ms + cfg.header_timeout_ms;
    default:
        return INT64_MAX;
    }
}

static void *
reaper_main(void *arg)
{
    static const char body[] =
        "{\"error\":{\"code\":\"request_timeout\",\"message\":\"the request did not arrive in time\"}}";
    char timeout[256];
    int tlen = snprintf(timeout, sizeof timeout,
                        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                        "Connection: close\r\nContent-Length: %zu\r\n\r\n%s", sizeof body - 1, body);
    int64_t step = cfg.header_timeout_ms / 4;

    (void)arg;
    if (step > 250)
        step = 250;
    if (step < 20)
        step = 20;
    pthread_mutex_lock(&track_lock);
    while (!reaper_stop) {
        struct timespec ts;
        int64_t now = now_ms(), at = now + step;

        for (struct track *t = tracks; t; t = t->next) {
            if (t->phase == P_REAPED || t->fd == MHD_INVALID_SOCKET || now < deadline_of(t))
                continue;
            if (t->phase == P_HEADERS || t->phase == P_BODY) {
                (void)!send(t->fd, timeout, (size_t)tlen, MSG_DONTWAIT | MSG_NOSIGNAL);
                atomic_fetch_add(t->phase == P_HEADERS ? &closed_header_timeout : &closed_body_timeout, 1);
            }
            shutdown(t->fd, SHUT_RDWR);     /* libmicrohttpd sees the end and closes */
            t->phase = P_REAPED;
        }
        ts = ms_timespec(at);
        pthread_cond_timedwait(&track_cond, &track_lock, &ts);
    }
    pthread_mutex_unlock(&track_lock);
    return NULL;
}

void
http_metrics(void (*fn)(const char *name, const char *reason, uint64_t n, void *arg), void *arg)
{
    size_t open;

    pthread_mutex_lock(&track_lock);
    open = ntracks;
    pthread_mutex_unlock(&track_lock);
    fn("baton_http_connections", NULL, open, arg);
    fn("baton_http_connections_closed_total", "header_timeout", atomic_load(&closed_header_timeout), arg);
    fn("baton_http_connections_closed_total", "body_timeout", atomic_load(&closed_body_timeout), arg);
    fn("baton_http_connections_closed_total", "over_connection_cap", atomic_load(&refused_total), arg);
    fn("baton_http_connections_closed_total", "over_address_cap", atomic_load(&refused_address), arg);
}

/* libmicrohttpd's own messages, as JSON log lines like every other. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    utf8_sanitize(msg);
    log_event("warn", "http.library", json_pack("{s:s}", "message", msg));
}

/* URLs and query values reach batond exactly as sent ('+' in a query is
 * already a space): first_call decodes them itself, so that a NUL, invalid
 * UTF-8 or a %2F inside a parameter is seen rather than silently cut or
 * split. */
static size_t
unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls, (void)c;
    return strlen(s);
}

/* ---- answering ---------------------------------------------------------- */

static enum MHD_Result
send_answer(struct req *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char *text = NULL;
    const char *type = "application/json";

    if (r->raw) {
        ret = MHD_queue_response(r->conn, (unsigned)r->status, r->raw);
        MHD_destroy_response(r->raw);
        r->raw = NULL;
        return ret;
    }
    if (r->finish) {
        void (*f)(struct req *) = r->finish;
        r->finish = NULL;
        f(r);
    }
    if (!r->out && !r->text && r->status != 204) {
        /* a handler's answer could not be built (json_pack refuses text
         * that is not UTF-8): say so rather than send an empty body */
        req_fail(r, "internal", NULL, "the answer could not be encoded");
    }
    if (r->text) {
        text = strdup(r->text);
        type = r->text_type ? r->text_type : "text/plain; charset=utf-8";
    } else if (r->out && r->status != 204) {
        text = json_dumps(r->out, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    if (!text && r->status != 204 && (r->out || r->text)) {
        /* out of memory while rendering: say so without allocating */
        static const char oom[] = "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\"}}";
        resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        r->status = 503;
    } else
        resp = MHD_create_response_from_buffer(text ? strlen(text) : 0, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    if (r->status != 204)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (atomic_load(&shutting))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (r->headers) {
        const char *k;
        json_t *v;
        json_object_foreach(r->headers, k, v)
            MHD_add_response_header(resp, k, json_string_value(v));
    }
    ret = MHD_queue_response(r->conn, (unsigned)(r->status ? r->status : 500), resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Answer at once, before (or instead of) reading the body. */
#define fail_now(r, ...) (req_fail((r), __VA_ARGS__), send_answer(r))

static bool
authorized(struct req *r)
{
    const char *h, *tok = NULL;

    if (r->route->auth == AUTH_VISITOR)
        return web_authorized(r);   /* console.c: a web chat visitor token */
    if (!cfg.secret)
        return true;        /* development without a secret: warned at start */
    h = req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h && !strncasecmp(h, "Bearer ", 7))
        tok = h + 7;
    else if (h && r->route->auth == AUTH_CONVEX && !strncasecmp(h, "Convex ", 7))
        tok = h + 7;
    if (tok && secret_equal(tok, strlen(tok), cfg.secret, strlen(cfg.secret)))
        return true;
    return web_authorized(r);       /* console.c: a console session cookie + CSRF */
}

/* A body is acceptable when it says it is JSON, or says nothing, or carries
 * the form type curl sends by default with -d. */
static bool
json_content_type(const char *ct)
{
    if (!ct || !*ct)
        return true;
    return !strncasecmp(ct, "application/json", 16) ||
           !strncasecmp(ct, "application/x-www-form-urlencoded", 33) ||
           !strncasecmp(ct, "text/plain", 10) ||
           (strstr(ct, "+json") != NULL);
}

int
req_parse_json(struct req *r)
{
    json_error_t e;

    json_decref(r->json);
    r->json = NULL;
    if (!r->body_len)
        return 0;
    r->json = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &e);
    if (!r->json)
        return req_fail(r, "bad_request", NULL, "invalid JSON at line %d column %d: %s",
                        e.line, e.column, e.text);
    if (!json_is_object(r->json)) {
        json_decref(r->json);
        r->json = NULL;
        return req_fail(r, "bad_request", NULL, "request body must be a JSON object");
    }
    return 0;
}

/* Decode every query argument into r->query, refusing what cannot be
 * text (NUL, invalid UTF-8, bad escapes) and arguments given twice: a
 * filter batond cannot apply must never become "no filter". */
struct qargs {
    json_t *q;
    const char *bad;            /* static reason */
    char name[72];              /* the offending argument, when printable */
};

static enum MHD_Result
decode_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct qargs *qa = cls;
    char *k = NULL, *v = NULL;
    const char *why;

    (void)kind;
    if (url_decode(key, strlen(key), &k, &why) < 0) {
        qa->bad = why;
        snprintf(qa->name, sizeof qa->name, "(a name)");
        return MHD_NO;
    }
    snprintf(qa->name, sizeof qa->name, "%s", k);
    utf8_sanitize(qa->name);
    if (url_decode(value ? value : "", value ? strlen(value) : 0, &v, &why) < 0) {
        free(k);
        qa->bad = why;
        return MHD_NO;
    }
    if (json_object_get(qa->q, k)) {
        free(k);
        free(v);
        qa->bad = "is given more than once";
        return MHD_NO;
    }
    json_object_set_new(qa->q, k, json_string(v));
    free(k);
    free(v);
    return MHD_YES;
}

/* Routes a lease holder or a worker finishing a job may still call while
 * batond drains on SIGTERM: releasing lets a standby take over at once,
 * completing keeps the job from running twice. */
static bool
allowed_while_stopping(const struct route *rt)
{
    return rt->handler == leases_release || rt->handler == jobs_complete || rt->handler == jobs_fail;
}

static enum MHD_Result
first_call(struct req *r, struct MHD_Connection *c, const char *url, const char *method)
{
    bool known = false;
    const char *cl, *why;
    size_t len = strlen(url);
    struct track *t = track_of(c);
    struct qargs qa = {0};
    char addr[INET6_ADDRSTRLEN];
    int64_t wait;

    r->conn = c;
    r->method = method;
    r->started = now_ms();
    track_phase(c, P_BODY);
    if (t && (t->over_total || t->over_address)) {
        req_set_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        atomic_fetch_add(t->over_total ? &refused_total : &refused_address, 1);
        if (t->over_total) {
            req_set_header(r, "Retry-After", "1");
            return fail_now(r, "unavailable", NULL, "too many connections (BATON_MAX_CONNECTIONS)");
        }
        req_set_header(r, "Retry-After", "1");
        return fail_now(r, "rate_limited", NULL,
                        "too many connections from your address (BATON_MAX_CONNECTIONS_PER_ADDRESS)");
    }
    while (len > 1 && url[len - 1] == '/')
        len--;
    if (url_decode(url, len, &r->url, &why) < 0) {
        r->url = strdup("?");
        return fail_now(r, "bad_request", NULL, "the request path %s", why);
    }
    qa.q = json_object();
    if (!qa.q)
        return fail_now(r, "unavailable", NULL, "out of memory");
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, decode_arg, &qa);
    r->query = qa.q;
    if (qa.bad)
        return fail_now(r, "bad_request", json_pack("{s:s}", "parameter", qa.name),
                        "query parameter '%s' %s", qa.name, qa.bad);

    r->route = routes_match(method, url, len, r, &known);
    if (!r->route) {
        if (known)
            return fail_now(r, "method_not_allowed", NULL, "method %s is not allowed here", method);
        return fail_now(r, "not_found", NULL, "no route for %s", r->url);
    }
    if (atomic_load(&shutting) && !allowed_while_stopping(r->route))
        return fail_now(r, "unavailable", NULL, "server is shutting down");
    if (r->route->auth != AUTH_NONE && req_auth_limited(r) < 0)
        return send_answer(r);
    if (r->route->auth == AUTH_OWN && limits_apply(req_client_addr(r, addr, sizeof addr)) &&
        (wait = ratelimit_take(&webhook_flood, addr, r->started)) > 0)
        return req_limited(r, wait, "webhook requests from your address"), send_answer(r);
    if (r->route->auth != AUTH_NONE && r->route->auth != AUTH_OWN && !authorized(r))
        return fail_now(r, "unauthorized", NULL, "missing or wrong Authorization: Bearer secret");

    cl = req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        int64_t n;
        /* all digits but beyond int64 is larger than any limit, not junk */
        bool digits = *cl && strspn(cl, "0123456789") == strlen(cl);
        if (parse_int64(cl, &n) < 0 && !digits)
            return fail_now(r, "bad_request", NULL, "Content-Length is not a number");
        if (digits && (parse_int64(cl, &n) < 0 || n > cfg.max_body))
            return fail_now(r, "payload_too_large", NULL, "request body is larger than %lld bytes",
                            (long long)cfg.max_body);
    }
    if (r->route->auth != AUTH_OWN && !json_content_type(req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return fail_now(r, "unsupported_media_type", NULL, "request body must be JSON, not %s",
                        req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE));
    return MHD_YES;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
    struct req *r = *req_cls;

    (void)cls, (void)version;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *req_cls = r;
        atomic_fetch_add(&active, 1);
        return first_call(r, c, url, method);
    }
    if (r->state == S_DONE)
        return send_answer(r);
    if (r->state == S_QUEUED)
        return MHD_YES;     /* spurious call while suspended */

    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->body_len + n > (size_t)cfg.max_body) {
            r->body_len = (size_t)cfg.max_body + 1;     /* remember, drop */
            return MHD_YES;
        }
        char *b = realloc(r->body, r->body_len + n + 1);
        if (!b)
            return MHD_NO;
        memcpy(b + r->body_len, upload, n);
        r->body = b;
        r->body_len += n;
        r->body[r->body_len] = 0;
        return MHD_YES;
    }

    /* the whole request is here */
    track_phase(c, P_BUSY);
    if (r->body_len > (size_t)cfg.max_body)
        return fail_now(r, "payload_too_large", NULL, "request body is larger than %lld bytes",
                        (long long)cfg.max_body);
    if (r->route->auth != AUTH_OWN && req_parse_json(r) < 0)
        return send_answer(r);
    r->route->handler(r);
    if (r->state == S_QUEUED)
        return MHD_YES;
    if (!r->status)
        req_fail(r, "internal", NULL, "handler gave no answer");
    return send_answer(r);
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
             enum MHD_RequestTerminationCode why)
{
    struct req *r = *req_cls;

    (void)cls;
    if (!r)
        return;
    if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->lost && r->status >= 200 && r->status < 300)
        r->lost(r);
    track_phase(c, P_IDLE);
    metrics_http(r->route, r->method ? r->method : "?", r->status,
                 now_ms() - r->started);
    if (cfg.debug)
        log_event("debug", "http.request",
                  json_pack("{s:s, s:s, s:i, s:I}", "method", r->method ? r->method : "?",
                            "route", r->route ? r->route->pattern : (r->url ? r->url : "?"),
                            "status", r->status, "ms", (json_int_t)(now_ms() - r->started)));
    req_free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&active, 1);
}

int
http_start(void)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char port[16];
    const union MHD_DaemonInfo *di;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;     /* convex_sync.c */
    unsigned timeout = (unsigned)((cfg.idle_timeout_ms + 999) / 1000), limit;

    snprintf(port, sizeof port, "%d", cfg.listen_port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(cfg.listen_host, port, &hints, &ai) || !ai) {
        fprintf(stderr, "batond: cannot resolve listen address %s\n", cfg.listen_host);
        return -1;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (ratelimit_init(&auth_failures, "auth_failures", (double)cfg.auth_failures_per_min / 60.0,
                       (double)cfg.auth_failure_burst) < 0 ||
        ratelimit_init(&webhook_flood, "webhooks", (double)cfg.webhook_rate, 2.0 * (double)cfg.webhook_rate) < 0) {
        freeaddrinfo(ai);
        fprintf(stderr, "batond: out of memory\n");
        return -1;
    }
    if (cfg.auth_failures_per_min == 0)
        auth_failures.rate = 0;     /* no limit */
    /* headroom above our cap: connections over it are answered, not left in
     * the kernel's backlog (see on_connection) */
    limit = (unsigned)(cfg.max_connections + (cfg.max_connections / 4 > 64 ? cfg.max_connections / 4 : 64));
    daemon_ = MHD_start_daemon(flags, (uint16_t)cfg.listen_port, NULL, NULL, on_request, NULL,
                               MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                               MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg.threads,
                               MHD_OPTION_CONNECTION_LIMIT, limit,
                               MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                               MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
                               MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
                               MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
                               MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                               MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!daemon_) {
        fprintf(stderr, "batond: cannot listen on %s:%d: %s\n", cfg.listen_host, cfg.listen_port,
                errno == EADDRINUSE ? "address already in use (is another batond running?)" : strerror(errno));
        return errno == EADDRINUSE ? -2 : -1;
    }
    reaper_stop = false;
    if (pthread_create(&reaper, NULL, reaper_main, NULL) == 0)
        reaper_running = true;
    di = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    bound_port = di ? di->port : cfg.listen_port;
    return 0;
}

int
http_port(void)
{
    return bound_port;
}

void
http_quiesce(void)
{
    if (daemon_) {
        MHD_socket s = MHD_quiesce_daemon(daemon_);
        if (s != MHD_INVALID_SOCKET)
            close(s);
    }
}

void
http_stop(void)
{
    if (daemon_)
        MHD_stop_daemon(daemon_);
    daemon_ = NULL;
    pthread_mutex_lock(&track_lock);
    reaper_stop = true;
    pthread_cond_signal(&track_cond);
    pthread_mutex_unlock(&track_lock);
    if (reaper_running)
        pthread_join(reaper, NULL);
    reaper_running = false;
    ratelimit_free(&auth_failures);
    ratelimit_free(&webhook_flood);
}
