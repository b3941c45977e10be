/* baton.c -- libbaton: HTTP/JSON calls to batond over one reused libcurl
 * handle per client.
 *
 * DESIGN
 * Every call goes through call(): it resets the client's easy handle (which
 * keeps its live connection), sets the request, performs it and maps the
 * outcome to a status or a baton_error. Calls marked retryable are repeated
 * on connection failures and 503 answers with a capped exponential backoff
 * bounded by a total time; the others are performed exactly once. The typed
 * calls only build bodies and escaped paths and pick what to return.
 */
#define _GNU_SOURCE             /* asprintf */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "baton.h"

#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_RETRY_FIRST_MS 100L
#define DEFAULT_RETRY_MAX_MS 2000L
#define DEFAULT_RETRY_TOTAL_MS 10000L
#define STREAM_IDLE_S 75L        /* no byte (not even a heartbeat) for this long: reconnect */

struct baton_client {
    CURL *curl;
    char *url;
    char *auth;                  /* "Authorization: Bearer ..." or NULL */
    long timeout_ms;
    long retry_first_ms, retry_max_ms, retry_total_ms;
    baton_cancel_fn cancel;      /* polled during exchanges, or NULL */
    void *cancel_arg;
    char curl_err[CURL_ERROR_SIZE];
};

struct buf {
    char *p;
    size_t n;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void
init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void
set_err(baton_error *err, long status, const char *code, int transport, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
set_err(baton_error *err, long status, const char *code, int transport, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    err->status = status;
    err->transport = transport;
    snprintf(err->code, sizeof err->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

baton_client *
baton_new(const char *url, const char *secret)
{
    baton_client *b;
    size_t n;

    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK || !url)
        return NULL;
    if (!(b = calloc(1, sizeof *b)))
        return NULL;
    b->url = strdup(url);
    b->curl = curl_easy_init();
    if (secret && asprintf(&b->auth, "Authorization: Bearer %s", secret) < 0)
        b->auth = NULL, secret = NULL;
    if (!b->url || !b->curl || (secret && !b->auth)) {
        baton_free(b);
        return NULL;
    }
    for (n = strlen(b->url); n > 0 && b->url[n - 1] == '/'; n--)
        b->url[n - 1] = 0;
    b->timeout_ms = DEFAULT_TIMEOUT_MS;
    b->retry_first_ms = DEFAULT_RETRY_FIRST_MS;
    b->retry_max_ms = DEFAULT_RETRY_MAX_MS;
    b->retry_total_ms = DEFAULT_RETRY_TOTAL_MS;
    return b;
}

void
baton_free(baton_client *b)
{
    if (!b)
        return;
    if (b->curl)
        curl_easy_cleanup(b->curl);
    free(b->url);
    free(b->auth);
    free(b);
}

void
baton_set_timeout_ms(baton_client *b, long ms)
{
    b->timeout_ms = ms > 0 ? ms : DEFAULT_TIMEOUT_MS;
}

void
baton_set_retry(baton_client *b, long first_ms, long max_ms, long total_ms)
{
    b->retry_first_ms = first_ms > 0 ? first_ms : 1;
    b->retry_max_ms = max_ms >= b->retry_first_ms ? max_ms : b->retry_first_ms;
    b->retry_total_ms = total_ms > 0 ? total_ms : 0;
}

void
baton_set_cancel(baton_client *b, baton_cancel_fn fn, void *arg)
{
    b->cancel = fn;
    b->cancel_arg = arg;
}

static bool
cancelled(baton_client *b)
{
    return b->cancel && b->cancel(b->cancel_arg);
}

/* curl's progress callback: non-zero aborts with CURLE_ABORTED_BY_CALLBACK. */
static int
progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return cancelled(arg) ? 1 : 0;
}

const char *
baton_url(const baton_client *b)
{
    return b->url;
}

const char *
baton_strerror(const baton_error *err)
{
    static _Thread_local char text[700];

    if (!err || (!err->status && !err->code[0]))
        return "no error";
    if (err->status)
        snprintf(text, sizeof text, "HTTP %ld %s: %s", err->status, err->code, err->message);
    else
        snprintf(text, sizeof text, "%s: %s", err->code, err->message);
    return text;
}

char *
baton_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *p = out;

    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            *p++ = (char)c;
        else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = 0;
    return out;
}

/* ---- one exchange ------------------------------------------------------------ */

static size_t
collect(char *data, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t len = size * nmemb;
    char *p = realloc(b->p, b->n + len + 1);

    if (!p)
        return 0;                   /* makes curl fail with CURLE_WRITE_ERROR */
    memcpy(p + b->n, data, len);
    b->p = p;
    b->n += len;
    b->p[b->n] = 0;
    return len;
}

/* Reset the handle (the connection survives a reset) and set what every
 * request shares. Returns the header list the caller must free. */
static struct curl_slist *
prepare(baton_client *b, const char *method, const char *path, long timeout_ms,
        struct curl_slist *h, char **urlp)
{
    CURL *c = b->curl;

    curl_easy_reset(c);
    if (asprintf(urlp, "%s%s", b->url, path) < 0)
        *urlp = NULL;
    curl_easy_setopt(c, CURLOPT_URL, *urlp ? *urlp : "");
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, b->curl_err);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "libbaton/0.1");
    if (b->cancel) {
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, b);
    }
    if (b->auth)
        h = curl_slist_append(h, b->auth);
    h = curl_slist_append(h, "Expect:");
    b->curl_err[0] = 0;
    return h;
}

/* Fill err from a non-2xx answer and return its error object (new ref) or
 * NULL. Understands SPEC's {"error":{code,message}} and Convex's
 * {"status":"error","errorMessage",...}. */
static json_t *
http_error(long status, json_t *body, const char *raw, baton_error *err)
{
    json_t *e = json_object_get(body, "error");
    const char *code, *msg;

    if (json_is_object(e)) {
        code = json_string_value(json_object_get(e, "code"));
        msg = json_string_value(json_object_get(e, "message"));
        set_err(err, status, code ? code : "error", 0, "%s", msg ? msg : "");
        return json_incref(e);
    }
    if (json_is_string(json_object_get(body, "errorMessage"))) {
        code = json_string_value(json_object_get(json_object_get(body, "errorData"), "code"));
        msg = json_string_value(json_object_get(body, "errorMessage"));
        set_err(err, status, code ? code : "function_error", 0, "%s", msg);
        return json_incref(body);
    }
    set_err(err, status, "error", 0, "%.200s", raw && *raw ? raw : "(no error body)");
    return NULL;
}

/* One attempt. Returns the status (2xx), -1 with err set, and *retry true
 * when a retryable failure occurred (connection error or 503). */
static int
attempt(baton_client *b, const char *method, const char *path, const char *body, long timeout_ms,
        json_t **out, baton_error *err, bool *retry)
{
    struct curl_slist *h = NULL;
    struct buf resp = {NULL, 0};
    char *url = NULL;
    long status = 0;
    CURLcode rc;
    json_t *j = NULL;
    int result = -1;

    *retry = false;
    h = prepare(b, method, path, timeout_ms, NULL, &url);
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(b->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(b->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else if (strcmp(method, "GET") && strcmp(method, "DELETE")) {
        curl_easy_setopt(b->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(b->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    curl_easy_setopt(b->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(b->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(b->curl, CURLOPT_WRITEDATA, &resp);
    rc = url && h ? curl_easy_perform(b->curl) : CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        set_err(err, 0, "cancelled", (int)rc, "%s %s: cancelled", method, path);
        goto done;
    }
    if (rc != CURLE_OK) {
        set_err(err, 0, "transport", (int)rc, "%s %s: %s", method, path,
                b->curl_err[0] ? b->curl_err : curl_easy_strerror(rc));
        /* the request may or may not have reached the server; only calls
         * safe to repeat act on this */
        *retry = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                 rc == CURLE_GOT_NOTHING || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
                 rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_PARTIAL_FILE;
        goto done;
    }
    curl_easy_getinfo(b->curl, CURLINFO_RESPONSE_CODE, &status);
    if (resp.n) {
        j = json_loadb(resp.p, resp.n, JSON_DECODE_ANY, NULL);
        if (!j && status >= 200 && status < 300) {
            set_err(err, status, "bad_response", 0, "%s %s: answer is not JSON: %.100s", method,
                    path, resp.p);
            goto done;
        }
    }
    if (status >= 200 && status < 300) {
        if (out) {
            *out = j;
            j = NULL;
        }
        result = (int)status;
        goto done;
    }
    {
        json_t *e = http_error(status, j, resp.p, err);
        if (out)
            *out = e;
        else
            json_decref(e);
    }
    *retry = status == 503;
done:
    json_decref(j);
    free(resp.p);
    free(url);
    curl_slist_free_all(h);
    return result;
}

static int
call(baton_client *b, const char *method, const char *path, json_t *body, bool retryable,
     long extra_ms, json_t **out, baton_error *err)
{
    char *text = NULL;
    long start = mono_ms(), delay = b->retry_first_ms;
    baton_error local;
    bool retry;
    int rc;

    if (out)
        *out = NULL;
    if (!err)
        err = &local;
    memset(err, 0, sizeof *err);
    if (body && !(text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY))) {
        set_err(err, 0, "transport", CURLE_OUT_OF_MEMORY, "cannot encode the request body");
        return -1;
    }
    for (;;) {
        if (cancelled(b)) {
            set_err(err, 0, "cancelled", CURLE_ABORTED_BY_CALLBACK, "%s %s: cancelled", method,
                    path);
            rc = -1;
            break;
        }
        rc = attempt(b, method, path, text, b->timeout_ms + (extra_ms > 0 ? extra_ms : 0), out,
                     err, &retry);
        if (rc >= 0 || !retry || !retryable)
            break;
        if (mono_ms() + delay - start > b->retry_total_ms || cancelled(b))
            break;
        if (out) {
            json_decref(*out);
            *out = NULL;
        }
        sleep_ms(delay);
        delay = delay * 2 > b->retry_max_ms ? b->retry_max_ms : delay * 2;
    }
    free(text);
    return rc;
}

int
baton_call_flags(baton_client *b, const char *method, const char *path, json_t *body,
                 unsigned flags, long extra_timeout_ms, json_t **out, baton_error *err)
{
    bool retry = !strcmp(method, "GET") || !strcmp(method, "PUT") || !strcmp(method, "DELETE") ||
                 !strcmp(method, "HEAD");

    if (flags & BATON_RETRY)
        retry = true;
    if (flags & BATON_NO_RETRY)
        retry = false;
    return call(b, method, path, body, retry, extra_timeout_ms, out, err);
}

int
baton_call(baton_client *b, const char *method, const char *path, json_t *body, json_t **out,
           baton_error *err)
{
    return baton_call_flags(b, method, path, body, 0, 0, out, err);
}

/* ---- paths ------------------------------------------------------------------- */

/* Build a path from fmt where each %s is replaced by the escaped string
 * argument (only %s is understood). Returns malloc'ed path or NULL. */
static char *
pathf(const char *fmt, ...)
{
    va_list ap;
    size_t cap = 256, n = 0;
    char *out = malloc(cap);

    if (!out)
        return NULL;
    va_start(ap, fmt);
    for (const char *f = fmt; *f; f++) {
        char *piece = NULL;
        const char *add;
        char one[2] = {*f, 0};
        size_t len;

        if (f[0] == '%' && f[1] == 's') {
            const char *arg = va_arg(ap, const char *);
            piece = baton_escape(arg ? arg : "");
            if (!piece)
                goto oom;
            add = piece;
            f++;
        } else
            add = one;
        len = strlen(add);
        if (n + len + 1 > cap) {
            char *p;
            while (n + len + 1 > cap)
                cap *= 2;
            if (!(p = realloc(out, cap))) {
                free(piece);
                goto oom;
            }
            out = p;
        }
        memcpy(out + n, add, len);
        n += len;
        free(piece);
    }
    va_end(ap);
    out[n] = 0;
    return out;
oom:
    va_end(ap);
    free(out);
    return NULL;
}

static int
no_memory(json_t **out, baton_error *err)
{
    if (out)
        *out = NULL;
    set_err(err, 0, "transport", CURLE_OUT_OF_MEMORY, "out of memory");
    return -1;
}

/* Run a call on a built path and body (both consumed). */
static int
run(baton_client *b, const char *method, char *path, json_t *body, bool retryable, long extra_ms,
    json_t **out, baton_error *err)
{
    int rc;

    if (!path || !body) {
        free(path);
        json_decref(body);
        return no_memory(out, err);
    }
    rc = call(b, method, path, json_is_null(body) ? NULL : body, retryable, extra_ms, out, err);
    free(path);
    json_decref(body);
    return rc;
}

/* Replace *out by its member `name` when it has one (answers are {job:...}). */
static void
unwrap(json_t **out, const char *name)
{
    json_t *inner;

    if (!out || !*out || !json_is_object(*out))
        return;
    inner = json_object_get(*out, name);
    if (inner && !json_is_null(inner)) {
        json_t *keep = json_incref(inner);
        json_t *dup = json_object_get(*out, "duplicate");
        if (json_is_object(keep) && dup && !json_object_get(keep, "duplicate"))
            json_object_set(keep, "duplicate", dup);
        json_decref(*out);
        *out = keep;
    } else if (inner) {
        json_decref(*out);
        *out = NULL;
    }
}

static void
set_opt_str(json_t *o, const char *key, const char *v)
{
    if (o && v)
        json_object_set_new(o, key, json_string(v));
}

static void
set_opt_int(json_t *o, const char *key, long long v)
{
    if (o && v > 0)
        json_object_set_new(o, key, json_integer(v));
}

/* ---- jobs -------------------------------------------------------------------- */

int
baton_enqueue(baton_client *b, const char *queue, json_t *payload, json_t *options, json_t **job,
              baton_error *err)
{
    json_t *body = json_object();
    int rc;

    if (body && options)
        json_object_update(body, options);
    set_opt_str(body, "queue", queue ? queue : "agent");
    if (body)
        json_object_set(body, "payload", payload ? payload : json_null());
    rc = run(b, "POST", strdup("/v1/jobs"), body, false, 0, job, err);
    if (rc >= 0)
        unwrap(job, "job");
    return rc;
}

int
baton_enqueue_batch(baton_client *b, json_t *jobs, json_t **results, baton_error *err)
{
    json_t *body = json_pack("{s:O}", "jobs", jobs ? jobs : json_null());
    int rc = run(b, "POST", strdup("/v1/jobs/batch"), body, false, 0, results, err);

    if (rc >= 0)
        unwrap(results, "jobs");
    return rc;
}

int
baton_claim(baton_client *b, const char *queue, const char *worker_id, long lock_ms, long wait_ms,
            long long lease_token, json_t **job, baton_error *err)
{
    json_t *body = json_object();
    int rc;

    set_opt_str(body, "workerId", worker_id);
    set_opt_str(body, "queue", queue ? queue : "agent");
    set_opt_int(body, "lockMs", lock_ms);
    set_opt_int(body, "waitMs", wait_ms);
    set_opt_int(body, "leaseToken", lease_token);
    rc = run(b, "POST", strdup("/v1/jobs/claim"), body, false, wait_ms > 0 ? wait_ms : 0, job, err);
    if (rc >= 0)
        unwrap(job, "job");
    return rc;
}

int
baton_heartbeat_job(baton_client *b, const char *job_id, const char *worker_id,
                    const char *claim_token, long lock_ms, long long lease_token, json_t **job,
                    baton_error *err)
{
    json_t *body = json_object();
    int rc;

    set_opt_str(body, "workerId", worker_id);
    set_opt_str(body, "claimToken", claim_token);
    set_opt_int(body, "lockMs", lock_ms);
    set_opt_int(body, "leaseToken", lease_token);
    rc = run(b, "POST", pathf("/v1/jobs/%s/heartbeat", job_id), body, true, 0, job, err);
    if (rc >= 0)
        unwrap(job, "job");
    return rc;
}

int
baton_job_progress(baton_client *b, const char *job_id, const char *worker_id, const char *claim_token,
                   const char *text, baton_error *err)
{
    json_t *body = json_object();

    set_opt_str(body, "workerId", worker_id);
    set_opt_str(body, "claimToken", claim_token);
    if (body && json_object_set_new(body, "text", json_string(text ? text : "")) < 0) {
        json_decref(body);
        body = NULL;
    }
    return run(b, "POST", pathf("/v1/jobs/%s/progress", job_id), body, false, 0, NULL, err);
}

/* complete and fail: with next, the next job is claimed in the same
 * request and handed back in *next_job (NULL when none came). */
static int
finish_call(baton_client *b, char *path, json_t *body, const baton_next *next, json_t **next_job,
            baton_error *err)
{
    json_t *answer = NULL, *n;
    int rc;

    if (next_job)
        *next_job = NULL;
    if (next && body) {
        n = json_object();
        set_opt_str(n, "queue", next->queue);
        set_opt_int(n, "lockMs", next->lock_ms);
        set_opt_int(n, "waitMs", next->wait_ms);
        json_object_set_new(body, "next", n);
    }
    rc = run(b, "POST", path, body, false, next && next->wait_ms > 0 ? next->wait_ms : 0,
             next && next_job ? &answer : NULL, err);
    n = json_object_get(answer, "next");
    if (rc >= 0 && next_job && n && !json_is_null(n))
        *next_job = json_incref(n);
    json_decref(answer);
    return rc;
}

int
baton_complete(baton_client *b, const char *job_id, const char *worker_id, const char *claim_token,
               json_t *result, json_t *reply, long long lease_token, baton_error *err)
{
    return baton_complete_next(b, job_id, worker_id, claim_token, result, reply, lease_token, NULL, NULL,
                               err);
}

int
baton_complete_next(baton_client *b, const char *job_id, const char *worker_id, const char *claim_token,
                    json_t *result, json_t *reply, long long lease_token, const baton_next *next,
                    json_t **next_job, baton_error *err)
{
    json_t *body = json_object();

    set_opt_str(body, "workerId", worker_id);
    set_opt_str(body, "claimToken", claim_token);
    if (body && result)
        json_object_set(body, "result", result);
    if (body && reply)
        json_object_set(body, "reply", reply);
    set_opt_int(body, "leaseToken", lease_token);
    return finish_call(b, pathf("/v1/jobs/%s/complete", job_id), body, next, next_job, err);
}

int
baton_fail(baton_client *b, const char *job_id, const char *worker_id, const char *claim_token,
           const char *error_reason, const char *error_message, bool retryable,
           long retry_after_ms, long long lease_token, baton_error *err)
{
    return baton_fail_next(b, job_id, worker_id, claim_token, error_reason, error_message, retryable,
                           retry_after_ms, lease_token, NULL, NULL, err);
}

int
baton_fail_next(baton_client *b, const char *job_id, const char *worker_id, const char *claim_token,
                const char *error_reason, const char *error_message, bool retryable, long retry_after_ms,
                long long lease_token, const baton_next *next, json_t **next_job, baton_error *err)
{
    json_t *body = json_object();

    set_opt_str(body, "workerId", worker_id);
    set_opt_str(body, "claimToken", claim_token);
    set_opt_str(body, "errorReason", error_reason);
    set_opt_str(body, "errorMessage", error_message);
    if (body)
        json_object_set_new(body, "retryable", json_boolean(retryable));
    set_opt_int(body, "retryAfterMs", retry_after_ms);
    set_opt_int(body, "leaseToken", lease_token);
    return finish_call(b, pathf("/v1/jobs/%s/fail", job_id), body, next, next_job, err);
}

int
baton_job_get(baton_client *b, const char *job_id, json_t **job, baton_error *err)
{
    int rc = run(b, "GET", pathf("/v1/jobs/%s", job_id), json_null(), true, 0, job, err);

    if (rc >= 0)
        unwrap(job, "job");
    return rc;
}

/* ---- leases ------------------------------------------------------------------ */

int
baton_lease_acquire(baton_client *b, const char *channel, const char *account, const char *owner,
                    long ttl_ms, json_t **lease, baton_error *err)
{
    json_t *body = json_object();
    int rc;

    set_opt_str(body, "ownerId", owner);
    set_opt_int(body, "ttlMs", ttl_ms);
    rc = run(b, "POST", pathf("/v1/leases/%s/%s/acquire", channel, account), body, false, 0, lease,
             err);
    if (rc >= 0)
        unwrap(lease, "lease");
    return rc;
}

int
baton_lease_heartbeat(baton_client *b, const char *channel, const char *account, const char *owner,
                      long long token, long ttl_ms, json_t **lease, baton_error *err)
{
    json_t *body = json_object();
    int rc;

    set_opt_str(body, "ownerId", owner);
    if (body)
        json_object_set_new(body, "token", json_integer(token));
    set_opt_int(body, "ttlMs", ttl_ms);
    rc = run(b, "POST", pathf("/v1/leases/%s/%s/heartbeat", channel, account), body, true, 0, lease,
             err);
    if (rc >= 0)
        unwrap(lease, "lease");
    return rc;
}

int
baton_lease_release(baton_client *b, const char *channel, const char *account, const char *owner,
                    long long token, baton_error *err)
{
    json_t *body = json_object();

    set_opt_str(body, "ownerId", owner);
    if (body)
        json_object_set_new(body, "token", json_integer(token));
    return run(b, "POST", pathf("/v1/leases/%s/%s/release", channel, account), body, false, 0, NULL,
               err);
}

int
baton_lease_get(baton_client *b, const char *channel, const char *account, json_t **lease,
                baton_error *err)
{
    int rc = run(b, "GET", pathf("/v1/leases/%s/%s", channel, account), json_null(), true, 0, lease,
                 err);

    if (rc >= 0)
        unwrap(lease, "lease");
    if (rc >= 0 && lease && json_is_null(*lease)) {
        json_decref(*lease);
        *lease = NULL;
    }
    return rc;
}

/* ---- dedupe, inbound ----------------------------------------------------------- */

int
baton_dedupe(baton_client *b, const char *channel, const char *id, bool *duplicate,
             baton_error *err)
{
    json_t *body = json_object(), *out = NULL;
    int rc;

    set_opt_str(body, "channel", channel);
    set_opt_str(body, "channelMessageId", id);
    rc = run(b, "POST", strdup("/v1/dedupe"), body, false, 0, &out, err);
    if (rc >= 0 && !json_is_boolean(json_object_get(out, "duplicate"))) {
        set_err(err, rc, "bad_response", 0, "POST /v1/dedupe: answer has no 'duplicate'");
        rc = -1;
    }
    if (rc >= 0 && duplicate)
        *duplicate = json_is_true(json_object_get(out, "duplicate"));
    json_decref(out);
    return rc;
}

int
baton_inbound(baton_client *b, const char *channel, const char *account,
              const char *channel_message_id, const char *conversation_id, const char *from,
              const char *text, json_t **out, baton_error *err)
{
    json_t *body = json_object();

    set_opt_str(body, "channel", channel);
    set_opt_str(body, "accountId", account);
    set_opt_str(body, "channelMessageId", channel_message_id);
    set_opt_str(body, "conversationId", conversation_id);
    set_opt_str(body, "from", from);
    set_opt_str(body, "text", text);
    return run(b, "POST", strdup("/v1/inbound"), body, false, 0, out, err);
}

/* ---- sessions -------------------------------------------------------------------- */

int
baton_session_batch(baton_client *b, const char *channel, const char *account, json_t *set,
                    json_t *del, long long lease_token, baton_error *err)
{
    json_t *body = json_object();

    if (body) {
        json_object_set_new(body, "set", set ? json_incref(set) : json_object());
        json_object_set_new(body, "delete", del ? json_incref(del) : json_array());
    }
    set_opt_int(body, "leaseToken", lease_token);
    return run(b, "POST", pathf("/v1/sessions/%s/%s/batch", channel, account), body, true, 0, NULL,
               err);
}

int
baton_session_get_all(baton_client *b, const char *channel, const char *account, json_t **entries,
                      baton_error *err)
{
    int rc = run(b, "GET", pathf("/v1/sessions/%s/%s", channel, account), json_null(), true, 0,
                 entries, err);

    if (rc >= 0)
        unwrap(entries, "entries");
    return rc;
}

/* ---- queue controls and schedules ---------------------------------------------------- */

int
baton_queue_pause(baton_client *b, const char *queue, const char *reason, json_t **out,
                  baton_error *err)
{
    json_t *body = json_object();

    set_opt_str(body, "reason", reason);
    return run(b, "POST", pathf("/v1/queues/%s/pause", queue), body, true, 0, out, err);
}

int
baton_queue_resume(baton_client *b, const char *queue, json_t **out, baton_error *err)
{
    return run(b, "POST", pathf("/v1/queues/%s/resume", queue), json_object(), true, 0, out, err);
}

int
baton_queue_limits(baton_client *b, const char *queue, json_t **out, baton_error *err)
{
    return run(b, "GET", pathf("/v1/queues/%s/limits", queue), json_null(), true, 0, out, err);
}

int
baton_queue_limits_set(baton_client *b, const char *queue, json_t *rate, json_t **out,
                       baton_error *err)
{
    json_t *body = json_pack("{s:O}", "rate", rate ? rate : json_null());

    return run(b, "PUT", pathf("/v1/queues/%s/limits", queue), body, true, 0, out, err);
}

int
baton_queue_limits_reset(baton_client *b, const char *queue, json_t **out, baton_error *err)
{
    return run(b, "DELETE", pathf("/v1/queues/%s/limits", queue), json_null(), true, 0, out, err);
}

int
baton_schedule_add(baton_client *b, json_t *schedule, json_t **out, baton_error *err)
{
    int rc = run(b, "POST", strdup("/v1/schedules"), json_incref(schedule), false, 0, out, err);

    if (rc >= 0)
        unwrap(out, "schedule");
    return rc;
}

int
baton_schedule_list(baton_client *b, json_t **out, baton_error *err)
{
    int rc = run(b, "GET", strdup("/v1/schedules"), json_null(), true, 0, out, err);

    if (rc >= 0)
        unwrap(out, "schedules");
    return rc;
}

int
baton_schedule_delete(baton_client *b, const char *name, baton_error *err)
{
    return run(b, "DELETE", pathf("/v1/schedules/%s", name), json_null(), true, 0, NULL, err);
}

/* ---- events ------------------------------------------------------------------------ */

int
baton_report_event(baton_client *b, const char *event, const char *level, json_t *fields,
                   baton_error *err)
{
    json_t *body = json_object();

    if (body && json_is_object(fields))
        json_object_update(body, fields);
    set_opt_str(body, "event", event);
    set_opt_str(body, "level", level ? level : "info");
    return run(b, "POST", strdup("/v1/events"), body, false, 0, NULL, err);
}

/* Server-Sent Events: a line parser fed by curl's write callback. */
struct sse {
    struct buf line;            /* the current, incomplete line */
    struct buf data;            /* data: lines of the current event */
    char id[128];               /* id of the current event */
    char last_id[128];          /* last id dispatched (Last-Event-ID) */
    char event[128];
    bool has_data;
    bool after_cr;              /* the last byte ended a line with CR: a LF next is its pair */
    int events;                 /* dispatched on this connection */
    bool stop;
    baton_event_fn fn;
    void *arg;
};

static void
sse_dispatch(struct sse *s)
{
    json_t *data;

    if (s->id[0])
        snprintf(s->last_id, sizeof s->last_id, "%s", s->id);
    if (s->has_data) {
        data = json_loadb(s->data.p ? s->data.p : "", s->data.n, JSON_DECODE_ANY, NULL);
        s->events++;
        if (s->fn(s->arg, s->id[0] ? s->id : NULL, s->event[0] ? s->event : NULL, data,
                  s->data.p ? s->data.p : ""))
            s->stop = true;
        json_decref(data);
    }
    s->id[0] = s->event[0] = 0;
    s->has_data = false;
    s->data.n = 0;
    if (s->data.p)
        s->data.p[0] = 0;
}

static void
sse_line(struct sse *s, char *l)
{
    char *v = strchr(l, ':');

    if (!*l) {
        sse_dispatch(s);
        return;
    }
    if (v == l)
        return;                 /* ":" comment, a heartbeat */
    if (v) {
        *v++ = 0;
        if (*v == ' ')
            v++;
    } else
        v = l + strlen(l);
    if (!strcmp(l, "data")) {
        if (s->has_data)
            collect("\n", 1, 1, &s->data);
        collect(v, 1, strlen(v), &s->data);
        s->has_data = true;
    } else if (!strcmp(l, "id"))
        snprintf(s->id, sizeof s->id, "%s", v);
    else if (!strcmp(l, "event"))
        snprintf(s->event, sizeof s->event, "%s", v);
}

static size_t
sse_write(char *p, size_t size, size_t nmemb, void *arg)
{
    struct sse *s = arg;
    size_t len = size * nmemb;

    /* lines end with CRLF, LF or CR alone (the SSE format), so no line,
     * and no id sent back as Last-Event-ID, ever holds a CR */
    for (size_t i = 0; i < len && !s->stop; i++) {
        bool cr = s->after_cr;

        s->after_cr = p[i] == '\r';
        if (p[i] == '\n' && cr)
            continue;           /* the LF of a CRLF */
        if (p[i] == '\n' || p[i] == '\r') {
            sse_line(s, s->line.p ? s->line.p : "");
            s->line.n = 0;
            if (s->line.p)
                s->line.p[0] = 0;
        } else if (s->line.n < 1 << 20 && !collect(&p[i], 1, 1, &s->line))
            return 0;
    }
    return s->stop ? 0 : len;
}

int
baton_events_follow(baton_client *b, const char *filter, const char *last_id, baton_event_fn fn,
                    void *arg, baton_error *err)
{
    struct sse s = {.fn = fn, .arg = arg};
    char *path = filter ? pathf("/v1/events/stream?event=%s", filter) : strdup("/v1/events/stream");
    long delay = b->retry_first_ms, failing_since = 0;
    baton_error local;
    int result = -1;

    if (!err)
        err = &local;
    memset(err, 0, sizeof *err);
    if (!path)
        return no_memory(NULL, err);
    if (last_id)
        snprintf(s.last_id, sizeof s.last_id, "%s", last_id);
    for (;;) {
        struct curl_slist *h = NULL;
        char *url = NULL, hdr[200];
        long status = 0;
        CURLcode rc;

        h = prepare(b, "GET", path, 0, NULL, &url);
        curl_easy_setopt(b->curl, CURLOPT_TIMEOUT_MS, 0L);
        curl_easy_setopt(b->curl, CURLOPT_CONNECTTIMEOUT_MS, b->timeout_ms);
        curl_easy_setopt(b->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(b->curl, CURLOPT_LOW_SPEED_TIME, STREAM_IDLE_S);
        h = curl_slist_append(h, "Accept: text/event-stream");
        if (s.last_id[0]) {
            snprintf(hdr, sizeof hdr, "Last-Event-ID: %s", s.last_id);
            h = curl_slist_append(h, hdr);
        }
        curl_easy_setopt(b->curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(b->curl, CURLOPT_WRITEFUNCTION, sse_write);
        curl_easy_setopt(b->curl, CURLOPT_WRITEDATA, &s);
        s.events = 0;
        s.line.n = s.data.n = 0;
        s.has_data = s.after_cr = false;
        s.id[0] = s.event[0] = 0;
        rc = url && h ? curl_easy_perform(b->curl) : CURLE_OUT_OF_MEMORY;
        curl_easy_getinfo(b->curl, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        free(url);
        if (s.stop) {
            result = 0;
            break;
        }
        if (cancelled(b)) {
            set_err(err, 0, "cancelled", CURLE_ABORTED_BY_CALLBACK, "GET %s: cancelled", path);
            break;
        }
        if (status >= 300 || (status && status < 200)) {
            set_err(err, status, "error", 0, "GET %s: HTTP %ld", path, status);
            if (status == 401)
                set_err(err, status, "unauthorized", 0, "missing or wrong secret");
            else if (status == 404)
                set_err(err, status, "not_found", 0, "the server has no event stream");
            if (status != 503)
                break;
        } else if (rc != CURLE_OK)
            set_err(err, 0, "transport", (int)rc, "GET %s: %s", path,
                    b->curl_err[0] ? b->curl_err : curl_easy_strerror(rc));
        else
            set_err(err, status, "transport", 0, "GET %s: the server closed the stream", path);
        /* dropped or refused: reconnect with the last id we got */
        if (s.events > 0) {
            delay = b->retry_first_ms;
            failing_since = 0;
        }
        if (!failing_since)
            failing_since = mono_ms();
        else if (mono_ms() - failing_since > b->retry_total_ms)
            break;
        sleep_ms(delay);
        delay = delay * 2 > b->retry_max_ms ? b->retry_max_ms : delay * 2;
    }
    free(path);
    free(s.line.p);
    free(s.data.p);
    return result;
}
