/* convex.c -- Convex's HTTP function protocol on top of the REST routes, so
 * the unmodified convex CLI and ConvexHttpClient work against batond.
 *
 * DESIGN
 * A function name resolves, through the table below, to one REST route of
 * routes.c (method + pattern). The request is rewritten in place -- path
 * parameters and query from the function's args, the args as the body --
 * and handed to that route's handler, so every function runs exactly the
 * code its REST route runs. r->finish then reshapes the REST answer into
 * Convex's envelope: 200 {"status":"success","value":...} or 560
 * {"status":"error","errorMessage","errorData":{"code",...}}. Server-side
 * trouble (5xx) keeps its status so clients retry it.
 *
 * `convex logs` polls GET /api/stream_function_logs?cursor=N; batond
 * answers with its events as Convex log entries, long-polling when there is
 * nothing new (stream_park). The cursor is the next event id to show; 0
 * asks for the history. The CLI gives up only on a 403, so a wrong key
 * there is 403, not 401, and errors carry Convex's top-level code and
 * message beside SPEC's error object.
 */
#include <float.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "batond.h"

#define UDF_FAILED 560

struct function {
    const char *name;           /* module:function */
    const char *method, *pattern;
    const char *unwrap;         /* key of the REST answer that is the value */
    const char *query;          /* fixed query of list routes, "k=v&k=v" */
};

static const struct function functions[] = {
    {"agent:getPendingJobs", "GET", "/v1/jobs/pending", "jobs", NULL},
    {"agent:retryJob", "POST", "/v1/jobs/{jobId}/retry", "job", NULL},
    {"agent:failJob", "POST", "/v1/jobs/{jobId}/fail-now", "job", NULL},
    {"agent:cancelJob", "POST", "/v1/jobs/{jobId}/cancel", "job", NULL},
    {"agent:requeueStaleJobs", "POST", "/v1/jobs/requeue-stale", NULL, NULL},
    {"agent:enqueue", "POST", "/v1/jobs", "job", NULL},
    {"agent:enqueueBatch", "POST", "/v1/jobs/batch", "jobs", NULL},
    {"agent:claimJob", "POST", "/v1/jobs/claim", "job", NULL},
    {"agent:heartbeatJob", "POST", "/v1/jobs/{jobId}/heartbeat", "job", NULL},
    {"agent:completeJob", "POST", "/v1/jobs/{jobId}/complete", "job", NULL},
    {"agent:failJobAttempt", "POST", "/v1/jobs/{jobId}/fail", "job", NULL},
    {"agent:getJob", "GET", "/v1/jobs/{jobId}", "job", NULL},
    {"agent:getQueues", "GET", "/v1/queues", "queues", NULL},
    {"agent:pauseQueue", "POST", "/v1/queues/{queue}/pause", NULL, NULL},
    {"agent:resumeQueue", "POST", "/v1/queues/{queue}/resume", NULL, NULL},
    {"agent:getQueueLimits", "GET", "/v1/queues/{queue}/limits", NULL, NULL},
    {"agent:setQueueLimits", "PUT", "/v1/queues/{queue}/limits", NULL, NULL},
    {"whatsappLeases:getLease", "GET", "/v1/leases/{channel}/{accountId}", NULL, NULL},
    {"whatsappLeases:acquireLease", "POST", "/v1/leases/{channel}/{accountId}/acquire", "lease", NULL},
    {"whatsappLeases:heartbeat", "POST", "/v1/leases/{channel}/{accountId}/heartbeat", "lease", NULL},
    {"whatsappLeases:releaseLease", "POST", "/v1/leases/{channel}/{accountId}/release", NULL, NULL},
    {"whatsappLeases:forceRelease", "POST", "/v1/leases/{channel}/{accountId}/force-release", NULL, NULL},
    {"whatsappLeases:listOwnedAccounts", "GET", "/v1/leases", "leases", "channel=whatsapp"},
    {"whatsappLeases:listEnabledAccounts", "GET", "/v1/accounts", "accounts", "channel=whatsapp&enabled=true"},
    {"whatsappLeases:setAccount", "PUT", "/v1/accounts/{channel}/{accountId}", "account", NULL},
    {"inboundDedupe:checkAndRegister", "POST", "/v1/dedupe", NULL, NULL},
    {"whatsappSession:getAll", "GET", "/v1/sessions/{channel}/{accountId}", "entries", NULL},
    {"whatsappSession:keys", "GET", "/v1/sessions/{channel}/{accountId}/keys", "keys", NULL},
    {"whatsappSession:get", "GET", "/v1/sessions/{channel}/{accountId}/keys/{key}", "value", NULL},
    {"whatsappSession:set", "PUT", "/v1/sessions/{channel}/{accountId}/keys/{key}", NULL, NULL},
    {"whatsappSession:remove", "DELETE", "/v1/sessions/{channel}/{accountId}/keys/{key}", NULL, NULL},
    {"whatsappSession:clearAll", "DELETE", "/v1/sessions/{channel}/{accountId}", NULL, NULL},
    {"whatsappSession:batch", "POST", "/v1/sessions/{channel}/{accountId}/batch", NULL, NULL},
    {"messages:inbound", "POST", "/v1/inbound", NULL, NULL},
    {"messages:list", "GET", "/v1/conversations/{conversationId}/messages", "messages", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Normalise what clients send: "agent:getPendingJobs",
 * "agent.getPendingJobs:default" (the CLI's form of a dotted name),
 * "agent.getPendingJobs", "agent.js:getPendingJobs", "api.agent.x". */
static void
normalise(const char *in, char *out, size_t n)
{
    char buf[256], *colon, *dot;

    snprintf(buf, sizeof buf, "%s", in);
    if (!strncmp(buf, "api.", 4))
        memmove(buf, buf + 4, strlen(buf + 4) + 1);
    colon = strrchr(buf, ':');
    if (colon && !strcmp(colon, ":default") && strchr(buf, '.') && strchr(buf, '.') < colon)
        *colon = 0, colon = NULL;
    if (colon) {
        char *ext = strstr(buf, ".js:");
        if (!ext)
            ext = strstr(buf, ".ts:");
        if (ext)
            memmove(ext, ext + 3, strlen(ext + 3) + 1);
    } else if ((dot = strrchr(buf, '.')))
        *dot = ':';
    snprintf(out, n, "%s", buf);
}

static const struct function *
lookup(const char *name)
{
    char norm[256];

    normalise(name, norm, sizeof norm);
    for (const struct function *f = functions; f->name; f++)
        if (!strcmp(f->name, norm))
            return f;
    return NULL;
}

/* ---- convex_encoded_json -------------------------------------------------- */

/* A new value, or NULL with why saying that memory ran out. */
static json_t *
made(json_t *v, char *why, size_t n)
{
    if (!v)
        snprintf(why, n, "out of memory while decoding the arguments");
    return v;
}

/* Decode $integer / $float / $bytes in place; other values pass through.
 * Returns a new reference, or NULL with why set (on every failure path). */
static json_t *
decode(json_t *v, char *why, size_t n)
{
    if (json_is_array(v)) {
        json_t *out = made(json_array(), why, n), *e;
        size_t i;
        if (!out)
            return NULL;
        json_array_foreach(v, i, e) {
            json_t *d = decode(e, why, n);
            if (!d || json_array_append_new(out, d) < 0) {
                if (d)
                    made(NULL, why, n);
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *e, *out;

        if (json_object_size(v) == 1 && (json_object_get(v, "$integer") || json_object_get(v, "$float") ||
                                         json_object_get(v, "$bytes"))) {
            const char *b64;
            unsigned char raw[8];
            size_t len;

            if ((b64 = json_string_value(json_object_get(v, "$bytes"))))
                return made(json_string(b64), why, n);  /* bytes stay base64 text */
            b64 = json_string_value(json_object_get(v, "$integer"));
            if (!b64)
                b64 = json_string_value(json_object_get(v, "$float"));
            if (!b64 || sodium_base642bin(raw, sizeof raw, b64, strlen(b64), NULL, &len, NULL,
                                          sodium_base64_VARIANT_ORIGINAL) || len != 8) {
                snprintf(why, n, "malformed convex_encoded_json number");
                return NULL;
            }
            if (json_object_get(v, "$integer")) {
                uint64_t x = 0;
                for (int i = 7; i >= 0; i--)
                    x = x << 8 | raw[i];
                int64_t i64;
                memcpy(&i64, &x, sizeof i64);   /* two's complement, as sent */
                return made(json_integer((json_int_t)i64), why, n);
            } else {
                uint64_t x = 0;
                double d;
                for (int i = 7; i >= 0; i--)
                    x = x << 8 | raw[i];
                memcpy(&d, &x, sizeof d);
                if (d != d || d > DBL_MAX || d < -DBL_MAX) {
                    snprintf(why, n, "convex_encoded_json $float is %s, which JSON cannot hold",
                             d != d ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
                    return NULL;
                }
                return made(json_real(d), why, n);
            }
        }
        out = made(json_object(), why, n);
        if (!out)
            return NULL;
        json_object_foreach(v, k, e) {
            json_t *d = decode(e, why, n);
            if (!d || json_object_set_new(out, k, d) < 0) {
                if (d)
                    made(NULL, why, n);
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    return json_incref(v);
}

/* ---- the envelope ------------------------------------------------------------ */

static void
finish(struct req *r)
{
    const struct function *f = r->finish_ctx;
    json_t *value, *err;

    if (r->status >= 500 || r->status == 401)
        return;             /* the transport's business: retry or fix the key */
    if (r->err_code) {
        err = json_incref(json_object_get(r->out, "error"));
        req_ok(r, UDF_FAILED, json_pack("{s:s, s:s?, s:O, s:[]}", "status", "error", "errorMessage",
                                        json_string_value(json_object_get(err, "message")), "errorData",
                                        err ? err : json_null(), "logLines"));
        json_decref(err);
        return;
    }
    if (r->status == 204 || !r->out)
        value = json_null();
    else if (f && f->unwrap && json_is_object(r->out) && json_object_get(r->out, f->unwrap))
        value = json_incref(json_object_get(r->out, f->unwrap));
    else
        value = json_incref(r->out);
    req_ok(r, 200, json_pack("{s:s, s:o, s:[]}", "status", "success", "value", value, "logLines"));
}

/* Drop a character that a buffer cut in the middle from the end of s. */
static void
utf8_cut(char *s)
{
    size_t len = strlen(s), i = len;

    while (i > 0 && len - i < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i > 0 && (unsigned char)s[i - 1] >= 0xC0) {
        unsigned char lead = (unsigned char)s[i - 1];
        size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (len - (i - 1) < want)
            s[i - 1] = 0;
    }
}

static int udf_error(struct req *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
udf_error(struct req *r, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    json_t *body;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    body = json_pack("{s:s, s:s, s:{s:s}, s:[]}", "status", "error", "errorMessage", msg, "errorData", "code",
                     code, "logLines");
    for (int pass = 0; !body && pass < 2; pass++) {
        /* a message cut mid-character: drop the partial character; a name
         * from the URL that is not UTF-8 at all: say it in ASCII. Never an
         * empty body. */
        if (!pass)
            utf8_cut(msg);
        else
            for (char *c = msg; *c; c++)
                if ((unsigned char)*c >= 0x80)
                    *c = '?';
        body = json_pack("{s:s, s:s, s:{s:s}, s:[]}", "status", "error", "errorMessage", msg, "errorData",
                         "code", code, "logLines");
    }
    return req_ok(r, UDF_FAILED, body);
}

/* Text of a scalar argument for a path parameter or query value: 1, or 0
 * when v is not a scalar (or is ""), or -1 for a real that is a whole
 * number outside the int64 range (1e300). */
static int
scalar_text(json_t *v, char *buf, size_t n)
{
    int64_t x;
    int rc;

    if (json_is_string(v))
        snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v) && (rc = real_to_int64(json_real_value(v), &x)) != -1) {
        if (rc == -2)
            return -1;
        snprintf(buf, n, "%lld", (long long)x);
    } else if (json_is_boolean(v))
        snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
    else
        return 0;
    return buf[0] != 0;
}

/* true when two patterns have the same shape, whatever their {params} are called */
static bool
same_shape(const char *a, const char *b)
{
    while (*a && *b) {
        if (*a == '{' && *b == '{') {
            a += strcspn(a, "}");
            b += strcspn(b, "}");
        } else if (*a != *b)
            return false;
        a++, b++;
    }
    return !*a && !*b;
}

static const struct route *
route_of(const struct function *f)
{
    for (const struct route *rt = routes; rt->method; rt++)
        if (!strcmp(rt->method, f->method) && same_shape(rt->pattern, f->pattern))
            return rt;
    return NULL;
}

static int
dispatch(struct req *r, const char *name, json_t *args)
{
    const struct function *f = lookup(name);
    const struct route *rt;
    json_t *query;
    char value[1024];
    const char *p;
    int np = 0;

    r->finish = finish;
    if (!f)
        return udf_error(r, "unknown_function",
                         "batond has no function '%s' (see docs/api.md for the functions batond serves)", name);
    if (!(query = json_object()))
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->finish_ctx = f;
    for (int i = 0; i < MAX_PARAMS; i++) {
        free(r->params[i]);
        r->params[i] = NULL;
    }
    /* path parameters, named in the pattern, from the args */
    for (p = f->pattern; (p = strchr(p, '{')); p++) {
        char pname[64];
        size_t len = strcspn(p + 1, "}");
        int rc;
        snprintf(pname, sizeof pname, "%.*s", (int)len, p + 1);
        rc = scalar_text(json_object_get(args, pname), value, sizeof value);
        if (rc < 0) {
            json_decref(query);
            return req_fail(r, "bad_request", NULL, "argument '%s' is out of range", pname);
        }
        if (!rc) {
            if (!strcmp(pname, "channel"))
                strcpy(value, "whatsapp");
            else if (!strcmp(pname, "accountId"))
                strcpy(value, "default");
            else {
                json_decref(query);
                return udf_error(r, "bad_request", "argument '%s' is required", pname);
            }
        }
        r->params[np++] = strdup(value);
    }
    /* query: the route's fixed part, then every scalar argument */
    if (f->query) {
        char q[256], *save = NULL, *kv;
        snprintf(q, sizeof q, "%s", f->query);
        for (kv = strtok_r(q, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            *eq = 0;
            json_object_set_new(query, kv, json_string(eq + 1));
        }
    }
    {
        const char *k;
        json_t *v;
        json_object_foreach(args, k, v) {
            int rc = scalar_text(v, value, sizeof value);
            if (rc < 0) {
                json_decref(query);
                return req_fail(r, "bad_request", NULL, "argument '%s' is out of range", k);
            }
            if (rc > 0)
                json_object_set_new(query, k, json_string(value));
        }
    }
    json_decref(r->query);
    r->query = query;
    json_decref(r->json);
    r->json = json_incref(args);
    rt = route_of(f);
    if (!rt)
        return udf_error(r, "internal", "function '%s' has no route", name);
    return rt->handler(r);
}

/* POST /api/query|mutation|action|function {path, args, format} */
int
convex_function(struct req *r)
{
    const char *path = NULL, *format = "json";
    json_t *args = NULL, *decoded;
    char why[128] = "malformed convex_encoded_json value";
    struct field spec[] = {
        FIELD_STR("path", &path, F_REQUIRED),
        FIELD_ANY("args", &args, 0),
        FIELD_STR("format", &format, 0),
        FIELD_END,
    };
    int rc;

    r->finish = finish;
    if (req_fields(r, spec) < 0)
        return -1;
    if (strcmp(format, "json") && strcmp(format, "convex_encoded_json"))
        return req_fail(r, "bad_request", NULL, "field 'format' must be json or convex_encoded_json");
    if (json_is_array(args)) {
        if (json_array_size(args) > 1)
            return req_fail(r, "bad_request", NULL, "field 'args' must be an object or one-element array");
        args = json_array_get(args, 0);
    }
    if (!args || json_is_null(args))
        args = NULL;
    else if (!json_is_object(args))
        return req_fail(r, "bad_request", NULL, "field 'args' must be an object");
    decoded = args ? decode(args, why, sizeof why) : json_object();
    if (!decoded)
        return req_fail(r, "bad_request", NULL, "%s", why);
    {
        char name[256];
        snprintf(name, sizeof name, "%s", path);
        utf8_cut(name);
        rc = dispatch(r, name, decoded);
    }
    json_decref(decoded);
    return rc;
}

/* POST /api/run/{module}/{function} with {args, format} or the args alone */
int
convex_run(struct req *r)
{
    char name[256];
    const char *format;
    json_t *args = json_object_get(r->json, "args"), *body;

    snprintf(name, sizeof name, "%s:%s", req_param(r, 0), req_param(r, 1));
    r->finish = finish;
    if (json_is_array(args))
        args = json_array_get(args, 0);
    if (!args)
        args = r->json;
    if (args && !json_is_object(args))
        return req_fail(r, "bad_request", NULL, "field 'args' must be an object");
    format = json_string_value(json_object_get(r->json, "format"));
    /* o steals: a borrowed args gets its own reference, a new {} is handed over */
    body = json_pack("{s:s, s:o, s:s}", "path", name, "args", args ? json_incref(args) : json_object(), "format",
                     format ? format : "json");
    if (!body)
        return udf_error(r, "bad_request", "function name '%s' is not valid UTF-8", name);
    json_decref(r->json);
    r->json = body;
    return convex_function(r);
}

/* ---- GET /api/stream_function_logs: `convex logs` ------------------------ */

#define LOGS_BATCH 1000         /* entries per answer; the history's length */
#define LOGS_WAIT_MS 25000      /* at most; half the idle timeout when that is shorter */

/* The events a module's functions produce, for ?function= */
static const struct {
    const char *module, *events;
} log_prefixes[] = {
    {"agent", "agent.job.*"},
    {"whatsappLeases", "whatsapp.lease.*"},
    {"whatsappSession", "whatsapp.session.*"},
    {"inboundDedupe", "whatsapp.inbound.*"},
    {NULL, NULL},
};

struct logs {
    int64_t cursor;             /* next event id to show; 0 = the history */
    char exact[160], lo[160], hi[160];  /* event_filter() */
};

/* SPEC's error object plus Convex's top-level {code, message}, which the
 * convex CLI prints. */
static int
logs_fail(struct req *r, const char *code, const char *msg)
{
    req_fail(r, code, NULL, "%s", msg);
    json_object_set_new(r->out, "code", json_string(code));
    json_object_set_new(r->out, "message", json_string(msg));
    return -1;
}

/* One event row as a Convex log entry: the event name as the function, a
 * state change as a mutation (what a worker reported as an action), its
 * fields as the one log line. */
static json_t *
log_entry(const struct event_row *row)
{
    json_t *e = event_row_json(row), *name = json_incref(json_object_get(e, "event")), *entry = NULL;
    const char *level = json_string_value(json_object_get(e, "level"));
    bool reported = json_is_true(json_object_get(e, "reported"));
    char lv[16], rid[32], *fields, *line = NULL;
    size_t i;

    snprintf(lv, sizeof lv, "%s", level ? level : "info");
    for (i = 0; lv[i]; i++)
        if (lv[i] >= 'a' && lv[i] <= 'z')
            lv[i] = (char)(lv[i] - 'a' + 'A');
    snprintf(rid, sizeof rid, "event-%lld", (long long)row->id);
    json_object_del(e, "id");
    json_object_del(e, "time");
    json_object_del(e, "_time");
    json_object_del(e, "level");
    json_object_del(e, "event");
    fields = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (fields && (line = malloc(strlen(lv) + strlen(fields) + 4)))
        sprintf(line, "[%s] %s", lv, fields);   /* the CLI reads the level from "[LEVEL] " */
    if (line)
        entry = json_pack("{s:s, s:s, s:O, s:f, s:f, s:b, s:s, s:[s]}", "kind", "Completion", "udfType",
                          reported ? "Action" : "Mutation", "identifier", name ? name : json_null(),
                          "timestamp", (double)row->time / 1000.0, "executionTime", 0.0,
                          "cachedResult", 0, "requestId", rid, "logLines", line);
    free(line);
    free(fields);
    json_decref(name);
    json_decref(e);
    return entry;
}

struct entries {
    json_t *list;
    int64_t last;               /* the id of the last row visited */
    bool oom;
};

static int
entry_one(const struct event_row *row, void *arg)
{
    struct entries *en = arg;

    if (json_array_append_new(en->list, log_entry(row)) < 0)
        en->oom = true;
    en->last = row->id;
    return en->oom;
}

/* Read the events at lg->cursor into {entries, newCursor}; *n gets how many.
 * The newest id is read first and bounds the scan, so that newCursor can
 * skip what the filter left out without skipping what committed meanwhile.
 * NULL when the database cannot be read. */
static json_t *
logs_read(struct logs *lg, size_t *n)
{
    struct event_query q = {.exact = lg->exact, .lo = lg->lo, .hi = lg->hi, .until = INT64_MAX,
                            .limit = LOGS_BATCH};
    struct entries en = {json_array(), 0, false};
    struct tx t;
    int64_t top = 0, next;
    int rc;

    *n = 0;
    rc = tx_read(&t) < 0 || !en.list ? -1 : store->events->last_id(&t, &top);
    if (rc == 0) {
        q.before = top + 1;
        if (lg->cursor > 0)
            /* what is new; a cursor past the newest id (the table was
             * emptied and ids start again) reads from the start of what
             * is there */
            q.after = (lg->cursor <= top + 1 ? lg->cursor : 1) - 1;
        else
            q.newest_first = true;  /* the history: the newest LOGS_BATCH */
        rc = store->events->list(&t, &q, entry_one, &en);
    }
    tx_read_end(&t);
    if (rc < 0 || en.oom) {
        json_decref(en.list);
        return NULL;
    }
    *n = json_array_size(en.list);
    if (q.newest_first) {       /* shown oldest first */
        for (size_t i = 0, j = *n; j > i + 1; i++, j--) {
            json_t *x = json_incref(json_array_get(en.list, i));
            json_array_set(en.list, i, json_array_get(en.list, j - 1));
            json_array_set_new(en.list, j - 1, x);
        }
        en.last = 0;
    }
    /* a full batch of what is new may have more behind it */
    next = lg->cursor > 0 && *n == LOGS_BATCH ? en.last + 1 : top + 1;
    return json_pack("{s:o, s:I}", "entries", en.list, "newCursor", (json_int_t)next);
}

/* r->finish of a parked poll: read what is new now */
static void
logs_finish(struct req *r)
{
    struct logs *lg = r->ctx;
    size_t n;
    json_t *out = logs_read(lg, &n);

    if (!out)
        logs_fail(r, "unavailable", "cannot read events");
    else
        req_ok(r, 200, out);
}

static bool
admin_key_ok(struct req *r)
{
    const char *h = req_header(r, "Authorization"), *tok = NULL;

    if (!cfg.secret)
        return true;            /* development without a secret: warned at start */
    if (h && (!strncasecmp(h, "Convex ", 7) || !strncasecmp(h, "Bearer ", 7)))
        tok = h + 7;
    return tok && secret_equal(tok, strlen(tok), cfg.secret, strlen(cfg.secret));
}

/* GET /api/stream_function_logs?cursor=N[&function=module:fn|&event=name|prefix.*] */
int
convex_logs(struct req *r)
{
    const char *cur = req_query(r, "cursor"), *fn = req_query(r, "function"), *ev = req_query(r, "event");
    struct logs *lg;
    unsigned long seen;
    json_t *out;
    size_t n;
    int64_t wait = cfg.idle_timeout_ms / 2 < LOGS_WAIT_MS ? cfg.idle_timeout_ms / 2 : LOGS_WAIT_MS;

    if (!admin_key_ok(r))
        return logs_fail(r, "forbidden", "wrong admin key: CONVEX_SELF_HOSTED_ADMIN_KEY must be batond's "
                                         "AGENT_SECRET");
    if (!(lg = calloc(1, sizeof *lg)))
        return logs_fail(r, "unavailable", "out of memory");
    r->ctx = lg;
    r->ctx_free = free;
    if (cur && *cur && (parse_int64(cur, &lg->cursor) < 0 || lg->cursor < 0))
        return logs_fail(r, "bad_request", "query parameter 'cursor' must be a newCursor batond gave");
    if (fn && *fn) {
        char norm[256], *colon;
        int i;
        normalise(fn, norm, sizeof norm);
        if ((colon = strchr(norm, ':')))
            *colon = 0;
        for (i = 0; log_prefixes[i].module && strcmp(log_prefixes[i].module, norm); i++)
            ;
        if (!log_prefixes[i].module)
            return logs_fail(r, "bad_request", "query parameter 'function': batond's events map only the "
                                               "modules agent, whatsappLeases, whatsappSession and inboundDedupe");
        ev = log_prefixes[i].events;
    }
    if (ev && *ev && !name_ok(ev, 150, "._-*"))
        return logs_fail(r, "bad_request", "query parameter 'event' must be an event name or prefix.*");
    event_filter(ev, lg->exact, lg->lo, lg->hi, sizeof lg->lo);
    /* the history comes at once; a tail waits for the next event */
    for (int tries = 0;; tries++) {
        seen = stream_seq();
        if (!(out = logs_read(lg, &n)))
            return logs_fail(r, "unavailable", "cannot read events");
        if (n || lg->cursor == 0 || tries == 2)
            return req_ok(r, 200, out);
        lg->cursor = json_integer_value(json_object_get(out, "newCursor"));
        req_ok(r, 200, out);            /* the answer if the wait ends with nothing */
        r->finish = logs_finish;
        if (stream_park(r, seen, now_ms() + wait))
            return 0;
        r->finish = NULL;
    }
}
