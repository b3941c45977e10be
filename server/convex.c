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
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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
    {"agent:claimJob", "POST", "/v1/jobs/claim", "job", NULL},
    {"agent:heartbeatJob", "POST", "/v1/jobs/{jobId}/heartbeat", "job", NULL},
    {"agent:completeJob", "POST", "/v1/jobs/{jobId}/complete", "job", NULL},
    {"agent:failJobAttempt", "POST", "/v1/jobs/{jobId}/fail", "job", NULL},
    {"agent:getJob", "GET", "/v1/jobs/{jobId}", "job", NULL},
    {"agent:getQueues", "GET", "/v1/queues", "queues", NULL},
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

/* Decode $integer / $float / $bytes in place; other values pass through.
 * Returns a new reference, or NULL with why set. */
static json_t *
decode(json_t *v, char *why, size_t n)
{
    if (json_is_array(v)) {
        json_t *out = json_array(), *e;
        size_t i;
        json_array_foreach(v, i, e) {
            json_t *d = decode(e, why, n);
            if (!d) {
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, d);
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
                return json_string(b64);    /* bytes stay base64 text */
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
                return json_integer((json_int_t)x);
            } else {
                uint64_t x = 0;
                double d;
                for (int i = 7; i >= 0; i--)
                    x = x << 8 | raw[i];
                memcpy(&d, &x, sizeof d);
                if (!isfinite(d)) {
                    snprintf(why, n, "convex_encoded_json $float must be finite (JSON has no NaN or Infinity)");
                    return NULL;
                }
                return json_real(d);
            }
        }
        out = json_object();
        json_object_foreach(v, k, e) {
            json_t *d = decode(e, why, n);
            if (!d) {
                json_decref(out);
                return NULL;
            }
            json_object_set_new(out, k, d);
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

static int udf_error(struct req *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
udf_error(struct req *r, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return req_ok(r, UDF_FAILED, json_pack("{s:s, s:s, s:{s:s}, s:[]}", "status", "error", "errorMessage", msg,
                                           "errorData", "code", code, "logLines"));
}

/* Text of a scalar argument for a path parameter or query value. */
static bool
scalar_text(json_t *v, char *buf, size_t n)
{
    if (json_is_string(v))
        snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v) && json_real_value(v) >= -0x1p63 && json_real_value(v) < 0x1p63 &&
             json_real_value(v) == (double)(long long)json_real_value(v))
        snprintf(buf, n, "%lld", (long long)json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
    else
        return false;
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
    json_t *query = json_object();
    char value[1024];
    const char *p;
    int np = 0;

    r->finish = finish;
    if (!f) {
        json_decref(query);
        return udf_error(r, "unknown_function",
                         "batond has no function '%s' (see docs/api.md for the functions batond serves)", name);
    }
    r->finish_ctx = f;
    for (int i = 0; i < MAX_PARAMS; i++) {
        free(r->params[i]);
        r->params[i] = NULL;
    }
    /* path parameters, named in the pattern, from the args */
    for (p = f->pattern; (p = strchr(p, '{')); p++) {
        char pname[64];
        size_t len = strcspn(p + 1, "}");
        snprintf(pname, sizeof pname, "%.*s", (int)len, p + 1);
        if (!scalar_text(json_object_get(args, pname), value, sizeof value)) {
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
        json_object_foreach(args, k, v)
            if (scalar_text(v, value, sizeof value))
                json_object_set_new(query, k, json_string(value));
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
    char why[128];
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
    json_t *args = json_object_get(r->json, "args"), *body;

    snprintf(name, sizeof name, "%s:%s", req_param(r, 0), req_param(r, 1));
    r->finish = finish;
    if (json_is_array(args))
        args = json_array_get(args, 0);
    if (!args)
        args = r->json;
    if (args && !json_is_object(args))
        return req_fail(r, "bad_request", NULL, "field 'args' must be an object");
    body = json_pack("{s:s, s:o, s:s}", "path", name, "args", args ? json_incref(args) : json_object(), "format",
                     json_string_value(json_object_get(r->json, "format")) ? json_string_value(json_object_get(r->json, "format")) : "json");
    json_decref(r->json);
    r->json = body;
    return convex_function(r);
}
