/* batond.h -- internal interfaces of batond: one header, forward types first.
 *
 * DESIGN
 * Requests arrive on libmicrohttpd threads (http.c), are matched against the
 * route table (routes.c) and handed to a handler. A handler validates its
 * input (fields.c) and then either answers at once from a read connection
 * (reads never wait for the writer) or submits a write function to the one
 * writer thread (db.c). The writer drains every queued write, runs each in
 * its own SAVEPOINT inside one transaction, commits once, prints the events
 * the batch recorded, wakes long-poll waiters (wait.c) and resumes the
 * suspended connections. A write function therefore never touches the
 * network and a handler never writes to the database directly.
 */
#ifndef BATOND_H
#define BATOND_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

#define BATON_VERSION "0.1.0"

struct config;
struct req;
struct tx;
struct route;
struct field;

/* ---- config.c: settings from flags and environment ------------------- */

struct config {
    char *listen_host;          /* BATON_LISTEN host part */
    int listen_port;            /* BATON_LISTEN port part (0 = any) */
    char *db_path;              /* BATON_DB */
    char *secret;               /* AGENT_SECRET, NULL when unset */
    bool production;            /* BATON_ENV=production */
    int64_t max_body;           /* BATON_MAX_BODY, bytes */
    bool sync_full;             /* BATON_SYNC=full (default) or normal */
    int64_t sweep_interval_ms;  /* BATON_SWEEP_INTERVAL_MS */
    int64_t job_lock_ms;        /* BATON_JOB_LOCK_MS */
    int64_t retention_ms;       /* BATON_RETENTION_MS */
    int64_t dedupe_ttl_ms;      /* BATON_DEDUPE_TTL_MS */
    int64_t event_retention_ms; /* BATON_EVENT_RETENTION_MS */
    char *leased_channels;      /* BATON_LEASED_CHANNELS, comma list */
    char *session_key;          /* BATON_SESSION_KEY, as given (hex/base64) */
    bool session_require_lease; /* BATON_SESSION_REQUIRE_LEASE */
    char *telegram_secret;      /* TELEGRAM_WEBHOOK_SECRET */
    char *telegram_allowed;     /* TELEGRAM_ALLOWED_CHAT_IDS */
    char *whatsapp_verify;      /* WHATSAPP_VERIFY_TOKEN */
    char *whatsapp_app_secret;  /* WHATSAPP_APP_SECRET */
    char *whatsapp_allowed;     /* WHATSAPP_ALLOWED_CONTACTS */
    int64_t max_connections;    /* BATON_MAX_CONNECTIONS */
    int64_t idle_timeout_ms;    /* BATON_IDLE_TIMEOUT_MS */
    int64_t header_timeout_ms;  /* BATON_HEADER_TIMEOUT_MS */
    int64_t body_timeout_ms;    /* BATON_BODY_TIMEOUT_MS */
    int64_t max_connections_per_address; /* BATON_MAX_CONNECTIONS_PER_ADDRESS */
    int64_t auth_failure_burst; /* BATON_AUTH_FAILURE_BURST */
    int64_t auth_failures_per_min; /* BATON_AUTH_FAILURES_PER_MIN */
    int64_t webhook_rate;       /* BATON_WEBHOOK_RATE, per second per address */
    bool limit_loopback;        /* BATON_LIMIT_LOOPBACK */
    int64_t threads;            /* BATON_THREADS */
    int64_t shutdown_grace_ms;  /* BATON_SHUTDOWN_GRACE_MS */
    bool debug;                 /* BATON_LOG_LEVEL=debug */
    bool webchat;               /* BATON_WEBCHAT (on) */
    char *webchat_origins;      /* BATON_WEBCHAT_ORIGINS, comma list */
    int64_t webchat_max_text;   /* BATON_WEBCHAT_MAX_TEXT, bytes */
    int64_t webchat_rate;       /* BATON_WEBCHAT_RATE, per minute per conversation */
    int64_t console_session_ms; /* BATON_CONSOLE_SESSION_MS */
    bool trust_proxy;           /* BATON_TRUST_PROXY */
};

extern struct config cfg;       /* read-only once the server has started */

#define EX_CONFIG 78            /* sysexits EX_CONFIG: bad configuration */
#define EX_INUSE 69             /* sysexits EX_UNAVAILABLE: the address or the
                                 * database is in use by another process */

/* Fill *c from environment then argv (flags win). On error writes a
 * one-line reason into why and returns -1; returns 1 when --help or
 * --version was printed, 0 to go on. The strings of *c are owned by *c. */
int config_load(struct config *c, int argc, char **argv, char *why, size_t n);
void config_free(struct config *c);
void config_usage(FILE *f);

/* ---- util.c ------------------------------------------------------------ */

/* The clocks and sleeping of the whole server: nothing in server/ reads a
 * clock or sleeps any other way. */
int64_t now_ms(void);                          /* server clock, epoch ms */
double mono_ms(void);                          /* monotonic ms, for durations */
void sleep_ms(int64_t ms);                     /* at least ms (EINTR resumed) */
/* An epoch-ms time (from now_ms) as the absolute deadline of
 * pthread_cond_timedwait, whose condition variables use CLOCK_REALTIME. */
struct timespec ms_timespec(int64_t ms);
void fmt_time(int64_t ms, char *buf, size_t n); /* RFC 3339 with ms, UTC */
/* Constant-time equality of two secrets of any lengths (libsodium). */
bool secret_equal(const char *a, size_t alen, const char *b, size_t blen);
/* Fresh random id: prefix + 16 random bytes in lowercase hex. Caller frees. */
char *new_id(const char *prefix);
/* true when s is 1..max characters of letters, digits and the characters
 * of punct (c == 0 never matches). */
bool name_ok(const char *s, size_t max, const char *punct);
/* Channel and account ids: what can appear in a queue name. */
#define ID_PUNCT "._:@+-"
#define ID_MAX 100
/* true when s[0..n) is valid UTF-8 (no overlong forms, no surrogates). */
bool utf8_valid(const char *s, size_t n);
/* Make s valid UTF-8 in place: an incomplete sequence at the end (a cut
 * buffer) is dropped, any other invalid byte becomes '?'. */
void utf8_sanitize(char *s);
/* Percent-decode in[0..n) into a new string (*out, caller frees). -1 with
 * *why ("contains a NUL byte", "is not valid UTF-8", "has a malformed
 * %-escape") when the result could not be used as text. */
int url_decode(const char *in, size_t n, char **out, const char **why);
/* Strict integer parse of the whole string; -1 on junk or overflow. */
int parse_int64(const char *s, int64_t *out);
/* A JSON real as an integer (5.0 from JS clients), range-checked before any
 * conversion: 0 and *out set; -1 for NaN or a fraction; -2 when it is
 * outside the int64 range (Inf, 1e300, 2^63). */
int real_to_int64(double d, int64_t *out);

/* ---- ratelimit.c: token buckets per key, bounded memory ---------------- */

struct rl_slot;

struct ratelimit {
    const char *name;               /* static; the label in /metrics */
    double rate;                    /* tokens per second; <= 0 = no limit */
    double burst;                   /* bucket size */
    pthread_mutex_t lock;
    struct rl_slot *slots;
    uint64_t refused;               /* takes and peeks answered "wait" */
    struct ratelimit *next;         /* every limit, for /metrics */
};

/* Set up rl (static storage, name static). -1 when out of memory. */
int ratelimit_init(struct ratelimit *rl, const char *name, double rate, double burst);
void ratelimit_free(struct ratelimit *rl);
/* Take one token from key's bucket at now (ms). Returns 0 when taken, else
 * the ms until one is available (nothing taken). Thread-safe. */
int64_t ratelimit_take(struct ratelimit *rl, const char *key, int64_t now);
/* Like take, without taking: 0 when a token is there, else the wait. */
int64_t ratelimit_peek(struct ratelimit *rl, const char *key, int64_t now);
/* Call fn for every initialised limit with its refusal count. */
void ratelimit_foreach(void (*fn)(const char *name, uint64_t refused, void *arg), void *arg);

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

    /* write path (db.c, wait.c) -- private to them */
    int (*fn)(struct tx *, struct req *);
    struct req *next;
    int state;
    bool parked;
    int64_t deadline, due;
    char *topic;
    /* internal (sync) requests wait on this */
    void *sync;
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

struct route {
    const char *method;             /* "GET", "POST", ... */
    const char *pattern;            /* "/v1/jobs/{id}/claim" */
    enum auth auth;                 /* AUTH_OWN: the handler checks its own */
    int (*handler)(struct req *r);  /* returns 0; answer set in r */
};

extern const struct route routes[];  /* ends with {NULL,...} */
/* Find the route for method and path[0..len), the path as the client sent
 * it (still %-encoded): segments are split on '/' first and then decoded,
 * so a %2F stays inside its parameter. Fills r->params (decoded; the
 * caller has checked that the whole path decodes to valid text). Sets
 * *path_known when some route has that path with another method (405). */
const struct route *routes_match(const char *method, const char *path, size_t len,
                                 struct req *r, bool *path_known);

/* ---- db.c: connections, migrations, the write path ---------------------- */

struct migration {
    const char *name;               /* "001_core.sql" */
    const char *sql;
};
/* Generated by schema/embed.sh from schema/sqlite/: the migrations in
 * order (migrations[i] is version i + 1), NULL-terminated, and the SQL of
 * the schema_migrations table that records which ones were applied. */
extern const struct migration migrations[];
extern const char migrations_table[];

/* Open (creating) the database at path with baton's pragmas. */
int db_open(const char *path, bool sync_full, sqlite3 **out, char *why, size_t n);
/* Apply every migration of m not recorded in schema_migrations, in order,
 * each in its own transaction together with its row (and PRAGMA
 * user_version set to the highest version applied, for tools). A database
 * without that table but with user_version = k > 0 (made before it existed)
 * first has versions 1..k recorded as applied, in one transaction, logged
 * as db.migrations_adopted. Returns 0; -1 when a migration failed (the
 * database is unchanged by it, why names its file) or on an SQLite error;
 * -2 when the database records a migration m does not have -- a newer
 * version, or another name for a version -- and nothing was changed (why
 * says which). */
int db_migrate(sqlite3 *db, const struct migration *m, char *why, size_t n);
/* Open the writer, lock the database for this process, migrate, start the
 * writer thread. 0, -1 on error, -2 when another batond holds the db, -3
 * when the database is newer than this binary (db_migrate's -2). */
int db_start(void);
void db_release_waiters(void);      /* shutdown: answer every long-poll now */
void db_stop(void);                 /* drain, stop writer, checkpoint, close */
/* The calling thread's read-only connection (opened on first use). */
sqlite3 *db_reader(void);

struct tx {
    sqlite3 *db;
    int64_t now;                    /* now_ms() when this write started */
    json_t *events;                 /* log lines to print after commit */
    json_t *notify;                 /* topics to wake after commit */
    json_t *due;                    /* {topic: ms} due times */
};

/* Queue r's write: fn(t, r) runs on the writer inside a savepoint. fn
 * returns 0 to keep its changes (answer set with req_ok) or -1 to roll them
 * back (answer set with req_fail). When the batch commits, r is resumed.
 * Called from a handler; the connection is suspended until then. */
int db_submit(struct req *r, int (*fn)(struct tx *, struct req *));
/* The same for internal callers: blocks until committed. Returns fn's
 * result, or -1 when the commit failed (r then holds a 503). */
int db_write(struct req *r, int (*fn)(struct tx *, struct req *));

/* Helpers for prepared statements (cached per connection). */
sqlite3_stmt *db_prep(sqlite3 *db, const char *sql);  /* reset + cached */
/* Map a failed sqlite call to an answer: 503 for busy/full/io, 500 else. */
int db_fail(struct req *r, sqlite3 *db);
/* Column helpers: NULL column -> json null. */
json_t *col_json(sqlite3_stmt *s, int i);   /* a TEXT column holding JSON */
json_t *col_text(sqlite3_stmt *s, int i);
json_t *col_int(sqlite3_stmt *s, int i);

/* ---- wait.c: long-poll waiters (used only from write functions) -------- */

/* Park r on topic: after this batch commits r is not answered but waits
 * until tx_notify(topic), until `due` (ms, 0 = none) passes, or until
 * `deadline` passes -- then r is answered with whatever answer it holds
 * (set one first, e.g. req_ok(r, 204, NULL)). On a wake-up r->fn runs
 * again as a fresh write. */
void tx_park(struct tx *t, struct req *r, const char *topic,
             int64_t deadline, int64_t due);
/* After this batch commits, wake every request parked on topic. */
void tx_notify(struct tx *t, const char *topic);
/* Something on topic becomes due at `at` (ms): parked requests are woken
 * then. */
void tx_due(struct tx *t, const char *topic, int64_t at);

/* writer-thread internals (db.c calls these; nothing else does) */
void wait_add(struct req *r);
void wait_wake(const char *topic, struct req **retry);
void wait_note_due(const char *topic, int64_t at);
int64_t wait_next(void);           /* earliest deadline or due time, 0 = none */
void wait_expire(int64_t now, struct req **resume, struct req **retry);
void wait_drain(struct req **resume); /* shutdown: every parked request */
size_t wait_count(void);

/* ---- events.c ---------------------------------------------------------- */

/* Record a state change inside t: a row in events and, once the batch has
 * committed, one JSON line on stdout. fields (stolen, may be NULL) must not
 * hold secrets; keys that look like secrets are dropped anyway. */
void event_emit(struct tx *t, const char *level, const char *name, json_t *fields);
/* A log line only (no row): start-up, http.request, warnings. */
void log_event(const char *level, const char *name, json_t *fields);
extern FILE *log_stream;           /* where lines go; NULL = stdout */
/* Print the lines collected in a committed tx (called by the writer). */
void events_flush(json_t *lines);
/* The SQL filter for an event query: "a.b" exact, "a.b.*" the key range
 * [lo, hi). Each buffer gets "" when unused. -1 when name is too long for
 * n or is not an event name or prefix: the caller answers 400. */
int event_filter(const char *name, char *exact, char *lo, char *hi, size_t n);
/* The filters of an events query (list or stream): ?event= into
 * exact/lo/hi, every other argument not in other (NULL-terminated, may be
 * NULL) into *filters {field: text} (new object, caller decrefs). A filter
 * that cannot be applied answers 400 and returns -1 (*filters NULL). */
int events_query(struct req *r, char *exact, char *lo, char *hi, size_t n, const char *const *other,
                 json_t **filters);
/* true when every field filter matches the event (compared as text). */
bool event_matches(json_t *event, json_t *filters);
/* One row of SELECT id, time, level, event, fields FROM events as the
 * event's JSON (new reference). */
json_t *event_row_json(sqlite3_stmt *st);
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

/* ---- modules.c: start-up checks of the resource modules ---------------- */

/* Validate and prepare module settings (session key, channel lists). */
int modules_init(char *why, size_t n);
void modules_free(void);

/* ---- leases.c ------------------------------------------------------------ */

/* The fencing check used by outbound job routes and session writes: 0 when
 * token is the token of a lease on (channel, accountId) that is held and
 * not expired at t->now; otherwise answers 409 lease_not_held (with
 * currentOwnerId/currentToken details where a lease exists) and returns -1. */
int lease_fence(struct tx *t, struct req *r, const char *channel, const char *account,
                int64_t token);
/* true when channel is listed in BATON_LEASED_CHANNELS */
bool channel_is_leased(const char *channel);

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

/* ---- jobs.c ---------------------------------------------------------------- */

/* Insert a job into queue (or find the not-completed job holding
 * dedupe_key there, then *duplicate = true), emit the enqueued event and
 * wake or schedule the queue's parked claimers. payload is borrowed;
 * dedupe_key, conversation_id and message_id may be NULL. *job_out (may be
 * NULL) receives a new reference to the job's JSON, which the caller
 * decrefs. Returns 0, or -1 with r answered (req_fail/db_fail). */
int jobs_insert(struct tx *t, struct req *r, const char *queue, json_t *payload,
                int64_t priority, int64_t delay_ms, int64_t max_attempts,
                const char *dedupe_key, const char *conversation_id, const char *message_id,
                json_t **job_out, bool *duplicate);
/* The job as GET /v1/jobs/{id} shows it (new reference), NULL if absent. */
json_t *jobs_get_json(sqlite3 *db, int64_t id);
/* The stale sweep and retention: requeue processing jobs whose lock has
 * expired (or fail them with lock_expired when attempts are exhausted) and
 * delete completed jobs older than BATON_RETENTION_MS. The ids (strings)
 * are appended to requeued / failed when those are not NULL. With more
 * NULL every expired lock is handled; otherwise one chunk, and *more says
 * whether another may remain. 0 or -1. */
int jobs_sweep(struct tx *t, json_t *requeued, json_t *failed, bool *more);
int jobs_enqueue(struct req *r);        /* POST /v1/jobs */
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

/* What another module does inside a job's own transaction, so that jobs.c
 * calls nothing above it: the messages module registers these at start
 * (messages_init). completed: after a job was marked completed (result and
 * reply may be NULL; reply is an object when given); failed: after a job
 * became terminally failed; progress: a progress report of the claim
 * `token` of job `job_id` (text borrowed). job is the job's JSON as GET
 * shows it (borrowed). Each returns 0, or -1 with r answered to roll the
 * whole write back. A NULL member does nothing. */
struct jobs_hooks {
    int (*completed)(struct tx *t, struct req *r, json_t *job, json_t *result, json_t *reply);
    int (*failed)(struct tx *t, struct req *r, json_t *job);
    int (*progress)(struct tx *t, struct req *r, int64_t job_id, const char *token, const char *text);
};
/* Set the hooks (h is kept, not copied; static storage). Before any request. */
void jobs_set_hooks(const struct jobs_hooks *h);

/* ---- dedupe.c / sessions.c ------------------------------------------------- */

/* Check-and-register an inbound message id inside t (SPEC section 5). An
 * entry whose expiry has passed counts as absent and is replaced. Returns 0
 * with *duplicate (false for the one first call under any concurrency) and
 * *first_seen_at (of the live entry: now when first); -1 after db_fail.
 * Emits no event: the caller names it (e.g. <channel>.inbound.dedupe_skipped). */
int dedupe_register(struct tx *t, struct req *r, const char *channel,
                    const char *channel_message_id, int64_t ttl_ms, bool *duplicate,
                    int64_t *first_seen_at);
int dedupe_check(struct req *r);    /* POST /v1/dedupe */
/* Sweep: delete expired entries (a bounded number per call). 0 or -1. */
int dedupe_prune(struct tx *t);

/* Decode BATON_SESSION_KEY (when set) into locked memory and wipe the text
 * of cfg.session_key (the pointer stays set). -1 with a one-line reason in
 * why when it is not 32 bytes in hex or base64. */
int sessions_init(char *why, size_t n);
void sessions_free(void);           /* wipe the key */
/* Routes of SPEC section 6; params 0 = channel, 1 = accountId, 2 = key. */
int sessions_get_all(struct req *r);   /* GET    /v1/sessions/{c}/{a} */
int sessions_keys(struct req *r);      /* GET    /v1/sessions/{c}/{a}/keys */
int sessions_get(struct req *r);       /* GET    /v1/sessions/{c}/{a}/keys/{key} */
int sessions_put(struct req *r);       /* PUT    /v1/sessions/{c}/{a}/keys/{key} */
int sessions_delete(struct req *r);    /* DELETE /v1/sessions/{c}/{a}/keys/{key} */
int sessions_batch(struct req *r);     /* POST   /v1/sessions/{c}/{a}/batch */
int sessions_clear(struct req *r);     /* DELETE /v1/sessions/{c}/{a} */

/* ---- metrics.c ------------------------------------------------------------- */

void metrics_http(const char *method, const char *route, int status, int64_t ms);
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

/* ---- messages.c ------------------------------------------------------------ */

/* One inbound message as the channels deliver it (all strings borrowed). */
struct inbound {
    const char *channel, *account, *channel_message_id, *conversation, *from, *text;
    json_t *payload;            /* channel details, may be NULL */
};

/* Dedupe + message + agent job inside the caller's write. *dup is set
 * when the message had been seen (nothing written but the event). */
int inbound_apply(struct tx *t, struct req *r, const struct inbound *in, bool *dup,
                  int64_t *msg_id, json_t **job_out);
/* A delivery report (sent|delivered|read|failed) for an outbound message
 * the channel knows as channel_message_id. Returns 1 when one matched, 0
 * when none did, -1 on error (answered). */
int messages_delivery(struct tx *t, struct req *r, const char *channel,
                      const char *channel_message_id, const char *delivery, const char *error);
int messages_inbound(struct req *r);     /* POST /v1/inbound */
int messages_web_post(struct req *r);    /* POST /v1/conversations/{id}/messages */
int messages_list(struct req *r);        /* GET /v1/conversations/{id}/messages */
int messages_conversations(struct req *r); /* GET /v1/conversations */
int messages_outbound(struct req *r);    /* POST /v1/outbound */
int messages_get(struct req *r);         /* GET /v1/messages/{id} */
/* Register the jobs hooks: a completion with a reply writes the outbound
 * message and its job, a final failure marks the message, progress keeps
 * the partial reply on the inbound message. Called by modules_init. */
void messages_init(void);

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

/* ---- sweep.c ------------------------------------------------------------ */

/* Periodic maintenance run by the writer every BATON_SWEEP_INTERVAL_MS, in
 * bounded chunks: after a run, sweep_again() says whether work remained, and
 * the writer then runs the next chunk at once (behind the queued writes). */
int sweep_run(struct tx *t, struct req *r);
bool sweep_again(void);

#endif
