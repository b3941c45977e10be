/* batond.h -- the API layer of batond: requests and answers (struct req),
 * the route table, and each resource's handlers. The layers below are in
 * core.h (rules, the writer), store.h (the storage interface) and base.h;
 * core.h lists them all.
 *
 * DESIGN
 * Requests arrive on libmicrohttpd threads (http.c), are matched against the
 * route table (routes.c) and handed to a handler. A handler validates its
 * input (fields.c) and then either answers at once from a read (reads
 * never wait for the writer) or submits a write (req_submit) to the one
 * writer thread (writer.c), which runs it in its own savepoint of the
 * batch's transaction and finishes it through the request's completion
 * callback once the batch has committed. A write function therefore never
 * touches the network and a handler never writes to the database directly.
 */
#ifndef BATOND_H
#define BATOND_H

#include "core.h"

struct req;
struct route;
struct field;

/* ---- fields.c: declarative validation of JSON bodies and queries ------ */

enum field_type {
    F_STR,      /* const char ** (borrowed from the JSON), non-empty unless F_EMPTY_OK */
    F_INT,      /* int64_t * within [min, max] */
    F_BOOL,     /* bool * */
    F_ANY,      /* json_t ** (borrowed), any JSON value including null */
    F_OBJECT,   /* json_t ** (borrowed), a JSON object */
    F_ARRAY,    /* json_t ** (borrowed), a JSON array */
};

#define F_REQUIRED  1u
#define F_EMPTY_OK  2u      /* F_STR: accept "" */

struct field {
    const char *name;
    enum field_type type;
    unsigned flags;
    void *out;              /* left untouched when absent: preset defaults */
    int64_t min, max;       /* F_INT bounds; F_STR max length when max > 0 */
    bool *present;          /* optional: set true when the field was given */
};

#define FIELD_STR(n, p, fl)         {(n), F_STR, (fl), (p), 0, 0, NULL}
#define FIELD_INT(n, p, fl, lo, hi) {(n), F_INT, (fl), (p), (lo), (hi), NULL}
#define FIELD_BOOL(n, p, fl)        {(n), F_BOOL, (fl), (p), 0, 0, NULL}
#define FIELD_ANY(n, p, fl)         {(n), F_ANY, (fl), (p), 0, 0, NULL}
#define FIELD_OBJECT(n, p, fl)      {(n), F_OBJECT, (fl), (p), 0, 0, NULL}
#define FIELD_ARRAY(n, p, fl)       {(n), F_ARRAY, (fl), (p), 0, 0, NULL}
#define FIELD_END                   {NULL, F_ANY, 0, NULL, 0, 0, NULL}

/* Check obj against the NULL-terminated spec, storing values into the out
 * pointers. On the first problem writes a sentence naming the field into
 * why and returns -1 (nothing is stored for later fields). obj may be NULL
 * (treated as {}). */
int fields_parse(json_t *obj, const struct field *spec, char *why, size_t n);

/* ---- http.c: requests and answers -------------------------------------- */

#define MAX_PARAMS 4

struct req {
    struct MHD_Connection *conn;    /* NULL for internal requests */
    const struct route *route;
    const char *method;
    char *url;                      /* path without query, owned */
    char *params[MAX_PARAMS];       /* decoded {params} of the route, owned */
    char *body;                     /* raw body, NUL-terminated, owned */
    size_t body_len;
    json_t *json;                   /* parsed body (an object) or NULL */
    int64_t started;                /* now_ms() at arrival */

    /* the answer: status + JSON body (or raw text for non-JSON answers) */
    int status;
    json_t *out;
    char *text;                     /* when set, sent as text/plain instead */
    const char *text_type;          /* Content-Type of text when not text/plain */
    const char *err_code;           /* static string; NULL when no error */

    /* handler state */
    void *ctx;
    void (*ctx_free)(void *);
    /* called once just before the answer is sent, to reshape it (the
     * Convex envelope); finish_ctx is its argument */
    void (*finish)(struct req *r);
    const void *finish_ctx;
    json_t *query;                  /* when set, req_query reads it, not the URL */
    void *raw;                      /* a ready MHD response (streams), sent as is */
    json_t *headers;                /* extra answer headers {name: value}, or NULL */
    /* called (on an HTTP thread) when the answer could not be delivered,
     * e.g. a long-poll claim whose client went away: undo what it took */
    void (*lost)(struct req *r);

    /* the write (req_submit): wfn runs on the writer through w */
    int (*wfn)(struct tx *, struct req *);
    struct wreq w;
    int state;                      /* http.c: new, suspended, answered */
};

/* Answer r with status and body (stolen; NULL for no body). Returns 0. */
int req_ok(struct req *r, int status, json_t *body);
/* Answer r with an error of SPEC section 2: code is a static snake_case
 * string whose HTTP status comes from the table in http.c; details (stolen,
 * may be NULL) are merged into the error object. Returns -1. */
int req_fail(struct req *r, const char *code, json_t *details,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
const char *req_param(struct req *r, int i);
const char *req_query(struct req *r, const char *name);
const char *req_header(struct req *r, const char *name);
const char *req_cookie(struct req *r, const char *name);   /* NULL when absent */
/* Every query argument as a new object of strings (caller decrefs). */
json_t *req_query_all(struct req *r);
/* Parse r->body into r->json (an object; empty body -> NULL). Routes with
 * AUTH_OWN call this themselves after checking their signature. */
int req_parse_json(struct req *r);
/* Validate r->json against spec; answers 400 naming the field on error. */
int req_fields(struct req *r, const struct field *spec);
/* A query argument as an integer in [lo, hi], default dflt when absent;
 * answers 400 and returns -1 when malformed. */
int req_query_int(struct req *r, const char *name, int64_t dflt,
                  int64_t lo, int64_t hi, int64_t *out);
/* Add (or replace) a header of the answer; name and value are copied. */
void req_set_header(struct req *r, const char *name, const char *value);
/* The client's address as text ("127.0.0.1", "::1"; "internal" for
 * internal requests) into buf: the first X-Forwarded-For hop when
 * BATON_TRUST_PROXY, else the socket's peer. Returns buf. */
const char *req_client_addr(struct req *r, char *buf, size_t n);
/* The check of the failed-authentication limit (BATON_AUTH_FAILURE_*):
 * -1 with r answered 429 when the client's address has failed too often,
 * else 0. Every route that checks a credential runs it first; a 401 (or a
 * webhook's 403) answered through req_fail counts as a failure. */
int req_auth_limited(struct req *r);
/* Answer 429 rate_limited with Retry-After (seconds, rounded up) for a
 * wait of wait_ms. Returns -1. */
int req_limited(struct req *r, int64_t wait_ms, const char *what);
/* true when the client's socket is still open (used before handing a job to
 * a parked long-poll request). */
bool req_alive(struct req *r);
/* An internal request not tied to a connection (sweep, tests). Free with
 * req_free. */
struct req *req_new_internal(void);
void req_free(struct req *r);

/* 0 ok; -1 with the reason on stderr, -2 when the address is in use */
int http_start(void);
/* Connection figures for /metrics: fn(name, reason or NULL, value). */
void http_metrics(void (*fn)(const char *name, const char *reason, uint64_t n, void *arg), void *arg);
int http_port(void);               /* the bound port */
void http_quiesce(void);           /* stop accepting */
void http_stop(void);
void http_suspend(struct req *r);  /* park r's connection (from a handler) */
void http_resume(struct req *r);   /* hand a finished request back to MHD */
int http_active(void);             /* requests in progress */
void http_shutting_down(void);     /* answer new requests 503 */

/* ---- routes.c ---------------------------------------------------------- */

/* AUTH_BEARER: the service secret (or a console session, see
 * web_authorized); AUTH_VISITOR: a web chat visitor token. */
enum auth { AUTH_NONE, AUTH_BEARER, AUTH_CONVEX, AUTH_OWN, AUTH_VISITOR };

/* How a route is served. READ: answered on the HTTP thread, from a read
 * connection when it reads the database; never waits for the writer.
 * WRITE: submits a write to the writer and answers once it has committed.
 * POLL: a long-poll -- may wait, parked, until a commit makes something
 * available or its wait ends (claims, conversation reads, event polls, and
 * the Convex routes that reach them). STREAM: keeps the connection (SSE,
 * a WebSocket upgrade). */
enum route_kind { ROUTE_NONE, ROUTE_READ, ROUTE_WRITE, ROUTE_POLL, ROUTE_STREAM };

struct route {
    const char *method;             /* "GET", "POST", ... */
    const char *pattern;            /* "/v1/jobs/{id}/claim" */
    enum auth auth;                 /* AUTH_OWN: the handler checks its own */
    int (*handler)(struct req *r);  /* returns 0; answer set in r */
    enum route_kind kind;
};

extern const struct route routes[];  /* ends with {NULL,...} */
/* Find the route for method and path[0..len), the path as the client sent
 * it (still %-encoded): segments are split on '/' first and then decoded,
 * so a %2F stays inside its parameter. Fills r->params (decoded; the
 * caller has checked that the whole path decodes to valid text). Sets
 * *path_known when some route has that path with another method (405). */
const struct route *routes_match(const char *method, const char *path, size_t len,
                                 struct req *r, bool *path_known);

/* ---- writes from the API layer (http.c) ---------------------------------- */

/* Queue r's write: fn(t, r) runs on the writer inside a savepoint. fn
 * returns 0 to keep its changes (answer set with req_ok) or -1 to roll
 * them back (answer set with req_fail / req_fail_tx). When the batch has
 * committed r is answered (its connection resumed; an internal request
 * without one is freed). Returns 0, or -1 with r answered 503 when the
 * server is stopping. */
int req_submit(struct req *r, int (*fn)(struct tx *, struct req *));
/* The same for internal callers: blocks until committed. Returns fn's
 * result, or -1 when the commit failed (r then holds a 503). */
int req_write(struct req *r, int (*fn)(struct tx *, struct req *));
/* Park r's write (see tx_park); its answer (set one first, e.g. 204) is
 * sent when it is not woken before deadline. */
void req_park(struct tx *t, struct req *r, const char *topic, int64_t deadline, int64_t due);
/* Answer r with t's fault (an error of the rules or the store). -1. */
int req_fail_tx(struct req *r, struct tx *t);


/* ---- events_api.c, stream.c --------------------------------------------- */

/* The filters of an events query (list or stream): ?event= into
 * exact/lo/hi (see event_filter), every other argument not in other
 * (NULL-terminated, may be NULL) into *filters {field: text} (new object,
 * caller decrefs). A filter that cannot be applied answers 400 and returns
 * -1 (*filters NULL). */
int events_query(struct req *r, char *exact, char *lo, char *hi, size_t n, const char *const *other,
                 json_t **filters);
int events_report(struct req *r);   /* POST /v1/events */
int events_stream(struct req *r);   /* GET /v1/events/stream (stream.c) */
void stream_wake(void);             /* after a commit that recorded events */
void stream_close(void);            /* shutdown: end every stream */
/* Long-polls for events. Take stream_seq() before looking for events; when
 * there were none, stream_park(r, seen, deadline) suspends r (set its
 * answer and r->finish first) until a commit records events, deadline (ms)
 * passes or shutdown, and r->finish then reads what is new on an HTTP
 * thread. Returns false, leaving r alone, when events were committed since
 * `seen` (look again) or at shutdown. */
unsigned long stream_seq(void);
bool stream_park(struct req *r, unsigned long seen, int64_t deadline);
int events_list(struct req *r);     /* GET /v1/events */

/* ---- serve.c: the layers below HTTP, wired ------------------------------ */

/* Select and open the store (migrating it), start the notifier and the
 * writer. 0; -1 on error, -2 when another batond holds the database, -3
 * when the database is newer than this binary or BATON_DB names a backend
 * this build lacks. why gets a one-line reason. */
int serve_start(char *why, size_t n);
void serve_release_waiters(void);   /* shutdown: answer every long-poll now */
void serve_stop(void);              /* drain and stop the writer, close the store */

/* ---- modules.c: start-up checks of the resource modules ---------------- */

/* Validate and prepare module settings (session key, channel lists). */
int modules_init(char *why, size_t n);
void modules_free(void);

/* ---- leases_api.c (rules: leases.c, in core.h) ---------------------------- */

/* Route handlers of SPEC section 4, also called by the Convex layer. Path
 * params: req_param(r, 0) is the channel, 1 the accountId. Bodies are
 * r->json as in the routes. The listings read their arguments from the
 * query string or, when absent there, from string fields of r->json
 * (accounts_list also takes a boolean "enabled" there).
 * Writes answer 200 {lease} (+ "renewedAfterExpiry":true when an expired
 * grant nobody took was renewed); leases_force_release answers
 * {lease, released} ({lease:null, released:false} for an account never
 * leased); leases_get the bare lease or null; leases_list {leases:[...]};
 * accounts_put {account}; accounts_get the bare account or 404;
 * accounts_list {accounts:[...]}; accounts_delete {deleted:true} or 404. */
int leases_acquire(struct req *r);        /* {ownerId, ttlMs} */
int leases_heartbeat(struct req *r);      /* {ownerId, token, ttlMs?} */
int leases_release(struct req *r);        /* {ownerId, token} */
int leases_force_release(struct req *r);  /* {} */
int leases_get(struct req *r);
int leases_list(struct req *r);           /* ownerId?, channel? */
int accounts_put(struct req *r);          /* {enabled, config?} */
int accounts_get(struct req *r);
int accounts_list(struct req *r);         /* channel?, enabled? */
int accounts_delete(struct req *r);

/* ---- jobs_api.c: the routes of jobs (rules in core.h) ----------------------- */

int jobs_enqueue(struct req *r);        /* POST /v1/jobs */
int jobs_enqueue_batch(struct req *r);  /* POST /v1/jobs/batch */
int jobs_claim(struct req *r);          /* POST /v1/jobs/claim */
int jobs_requeue_stale(struct req *r);  /* POST /v1/jobs/requeue-stale */
int jobs_heartbeat(struct req *r);      /* POST /v1/jobs/{id}/heartbeat */
int jobs_progress(struct req *r);       /* POST /v1/jobs/{id}/progress */
int jobs_complete(struct req *r);       /* POST /v1/jobs/{id}/complete */
int jobs_fail(struct req *r);           /* POST /v1/jobs/{id}/fail */
int jobs_retry(struct req *r);          /* POST /v1/jobs/{id}/retry */
int jobs_fail_now(struct req *r);       /* POST /v1/jobs/{id}/fail-now */
int jobs_cancel(struct req *r);         /* POST /v1/jobs/{id}/cancel */
int jobs_get(struct req *r);            /* GET /v1/jobs/{id} */
int jobs_list(struct req *r);           /* GET /v1/jobs */
int jobs_pending(struct req *r);        /* GET /v1/jobs/pending */
int jobs_queues(struct req *r);         /* GET /v1/queues */

/* ---- queues_api.c: queue controls (rules: queues.c, in core.h) ------------ */

int queues_pause(struct req *r);        /* POST /v1/queues/{queue}/pause {reason?} */
int queues_resume(struct req *r);       /* POST /v1/queues/{queue}/resume {reason?} */
int queues_limits_get(struct req *r);   /* GET /v1/queues/{queue}/limits */
int queues_limits_put(struct req *r);   /* PUT /v1/queues/{queue}/limits {rate} */
int queues_limits_delete(struct req *r); /* DELETE /v1/queues/{queue}/limits: the defaults */
/* GET /v1/queues: add paused, pausedReason and pausedAt to each row of the
 * listing (objects with "queue", ordered by name), and a row with zero
 * counts for each paused queue that has no jobs. 0 or -1 with t->err. */
int queues_merge_settings(struct tx *t, json_t *rows);

/* ---- schedules_api.c (rules: schedules.c, cron.c, in core.h) ------------- */

int schedules_create(struct req *r);    /* POST /v1/schedules */
int schedules_list(struct req *r);      /* GET /v1/schedules */
int schedules_get(struct req *r);       /* GET /v1/schedules/{name} */
int schedules_delete(struct req *r);    /* DELETE /v1/schedules/{name} */
int schedules_pause(struct req *r);     /* POST /v1/schedules/{name}/pause */
int schedules_resume(struct req *r);    /* POST /v1/schedules/{name}/resume */

/* ---- dedupe_api.c (rules: dedupe.c, in core.h) / sessions_api.c ----------- */

int dedupe_check(struct req *r);    /* POST /v1/dedupe */

/* Routes of SPEC section 6 (sessions_api.c; the rules are in core.h);
 * params 0 = channel, 1 = accountId, 2 = key. */
int sessions_get_all(struct req *r);   /* GET    /v1/sessions/{c}/{a} */
int sessions_keys(struct req *r);      /* GET    /v1/sessions/{c}/{a}/keys */
int sessions_get(struct req *r);       /* GET    /v1/sessions/{c}/{a}/keys/{key} */
int sessions_put(struct req *r);       /* PUT    /v1/sessions/{c}/{a}/keys/{key} */
int sessions_delete(struct req *r);    /* DELETE /v1/sessions/{c}/{a}/keys/{key} */
int sessions_batch(struct req *r);     /* POST   /v1/sessions/{c}/{a}/batch */
int sessions_clear(struct req *r);     /* DELETE /v1/sessions/{c}/{a} */

/* ---- metrics.c ------------------------------------------------------------- */

void metrics_http(const struct route *route, const char *method, int status, int64_t ms);
void metrics_events(json_t *lines);  /* committed event lines */
/* perf: after each transaction of the writer: how many write requests it
 * held, whether it committed, and its time in ms (BEGIN to COMMIT). */
void metrics_commit(size_t writes, bool committed, double ms);
int metrics_get(struct req *r);      /* GET /metrics */

/* ---- convex.c -------------------------------------------------------------- */

int convex_function(struct req *r);  /* POST /api/query|mutation|action|function */
int convex_run(struct req *r);       /* POST /api/run/{module}/{function} */
int convex_logs(struct req *r);      /* GET /api/stream_function_logs (convex logs) */

/* ---- convex_sync.c ----------------------------------------------------------- */

int convex_sync(struct req *r);      /* GET /api/{version}/sync: refused so the client stops */

/* ---- messages_api.c (rules: messages.c, in core.h) ------------------------ */

int messages_inbound(struct req *r);     /* POST /v1/inbound */
int messages_web_post(struct req *r);    /* POST /v1/conversations/{id}/messages */
int messages_list(struct req *r);        /* GET /v1/conversations/{id}/messages */
int messages_conversations(struct req *r); /* GET /v1/conversations */
int messages_outbound(struct req *r);    /* POST /v1/outbound */
int messages_get(struct req *r);         /* GET /v1/messages/{id} */

/* ---- webhooks.c ------------------------------------------------------------ */

int webhooks_telegram(struct req *r);        /* POST /telegram/webhook[/{accountId}] */
int webhooks_whatsapp_verify(struct req *r); /* GET /whatsapp/webhook[/{accountId}] */
int webhooks_whatsapp(struct req *r);        /* POST /whatsapp/webhook[/{accountId}] */

/* ---- console.c, webchat.c: the web console and the web chat ------------- */

/* The pages, styles and scripts of server/web/, embedded at build time by
 * server/web/embed.sh (build/web.c). */
struct web_asset {
    const char *name;               /* "console.js" */
    const char *type;               /* Content-Type */
    const char *body;
};
extern const struct web_asset web_assets[];  /* ends with {NULL,...} */
extern const char web_version[];             /* checksum of them all */

/* Set up sign-in sessions, visitor-token key and the limits. */
int web_init(char *why, size_t n);
void web_free(void);
/* Called by http.c for routes that need credentials when the Bearer
 * secret was not given: on AUTH_BEARER routes a console session cookie
 * (plus the X-CSRF-Token header on anything but GET/HEAD); on
 * AUTH_VISITOR routes the web chat visitor token of the conversation. */
bool web_authorized(struct req *r);
/* Answer with an embedded asset and the headers of the static pages. */
int web_asset_answer(struct req *r, const char *name);
/* Security headers of every page: CSP, nosniff, no referrer, no framing. */
void web_page_headers(struct req *r);
bool webchat_token_ok(const char *conversation, const char *token);

int console_root(struct req *r);        /* GET / -> /console */
int console_page(struct req *r);        /* GET /console */
int console_login_page(struct req *r);  /* GET /console/login */
int console_script(struct req *r);      /* GET /console/console.js */
int console_static(struct req *r);      /* GET /static/{name} */
int console_login(struct req *r);       /* POST /console/api/login */
int console_logout(struct req *r);      /* POST /console/api/logout */
int console_session(struct req *r);     /* GET /console/api/session */
int webchat_page(struct req *r);        /* GET /chat */
int webchat_open(struct req *r);        /* POST /chat/api/open */
int webchat_list(struct req *r);        /* GET /chat/api/conversations/{id}/messages */
int webchat_post(struct req *r);        /* POST /chat/api/conversations/{id}/messages */
int webchat_preflight(struct req *r);   /* OPTIONS /chat/api/... */

#endif
