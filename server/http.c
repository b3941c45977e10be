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
 * connection suspended by db_submit; the writer resumes it and MHD calls us
 * once more to send the answer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "batond.h"

enum { S_NEW, S_QUEUED, S_DONE };      /* must match db.c */

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
    {"payload_too_large", 413},
    {"unsupported_media_type", 415},
    {"unprocessable", 422},
    {"rate_limited", 429},
    {"unavailable", 503},
    {"not_configured", 503},
    {"internal", 500},
    {NULL, 500},
};

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
    err = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (!err) {
        /* msg echoes input that is not UTF-8 (a path, a name): mask the
         * bytes JSON cannot carry rather than send an empty body */
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        err = json_pack("{s:s, s:s}", "code", code, "message", msg);
    }
    if (details) {
        json_object_update_missing(err, details);
        json_decref(details);
    }
    json_decref(r->out);
    r->out = json_pack("{s:o}", "error", err);
    r->status = status_of(code);
    r->err_code = code;
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
    free(r->topic);
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

    if (!cfg.secret)
        return true;        /* development without a secret: warned at start */
    h = req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h)
        return false;
    if (!strncasecmp(h, "Bearer ", 7))
        tok = h + 7;
    else if (r->route->auth == AUTH_CONVEX && !strncasecmp(h, "Convex ", 7))
        tok = h + 7;
    return tok && secret_equal(tok, strlen(tok), cfg.secret, strlen(cfg.secret));
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

static enum MHD_Result
first_call(struct req *r, struct MHD_Connection *c, const char *url, const char *method)
{
    bool known = false;
    const char *cl;
    size_t len = strlen(url);

    r->conn = c;
    r->method = method;
    r->started = now_ms();
    while (len > 1 && url[len - 1] == '/')
        len--;
    r->url = strndup(url, len);
    if (!r->url)
        return MHD_NO;
    if (atomic_load(&shutting))
        return fail_now(r, "unavailable", NULL, "server is shutting down");

    r->route = routes_match(method, r->url, r, &known);
    if (!r->route) {
        if (known)
            return fail_now(r, "method_not_allowed", NULL, "method %s is not allowed here", method);
        return fail_now(r, "not_found", NULL, "no route for %s", r->url);
    }
    if (r->route->auth != AUTH_NONE && r->route->auth != AUTH_OWN && !authorized(r))
        return fail_now(r, "unauthorized", NULL, "missing or wrong Authorization: Bearer secret");

    cl = req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        int64_t n;
        if (parse_int64(cl, &n) == 0 && n > cfg.max_body)
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

    (void)cls, (void)c;
    if (!r)
        return;
    if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->lost && r->status >= 200 && r->status < 300)
        r->lost(r);
    metrics_http(r->method ? r->method : "?", r->route ? r->route->pattern : "unmatched", r->status,
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
                     MHD_USE_ERROR_LOG;
    unsigned timeout = (unsigned)((cfg.idle_timeout_ms + 999) / 1000);

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
    daemon_ = MHD_start_daemon(flags, (uint16_t)cfg.listen_port, NULL, NULL, on_request, NULL,
                               MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                               MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                               MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg.threads,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg.max_connections,
                               MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                               MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!daemon_) {
        fprintf(stderr, "batond: cannot listen on %s:%d: %s\n", cfg.listen_host, cfg.listen_port,
                strerror(errno));
        return -1;
    }
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
}
