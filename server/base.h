/* base.h -- what every layer of batond uses: settings, clocks and text
 * helpers, token buckets and the log. Includes no other batond header.
 */
#ifndef BATON_BASE_H
#define BATON_BASE_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#define BATON_VERSION "0.1.0"

/* ---- config.c: settings from flags and environment ------------------- */

struct config {
    char *listen_host;          /* BATON_LISTEN host part */
    int listen_port;            /* BATON_LISTEN port part (0 = any) */
    char *db_path;              /* BATON_DB */
    bool pg_poll_only;          /* BATON_PG_POLL_ONLY */
    char *secret;               /* AGENT_SECRET, NULL when unset */
    bool production;            /* BATON_ENV=production */
    int64_t max_body;           /* BATON_MAX_BODY, bytes */
    bool sync_full;             /* BATON_SYNC=full (default) or normal */
    int64_t db_convert_max_bytes; /* BATON_DB_CONVERT_MAX_BYTES */
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

/* A growing text buffer: start zeroed ({0}), append, take s (NUL-
 * terminated once anything was added; NULL before), text_free. A failed
 * allocation sets oom and every later append does nothing: check oom once
 * at the end. */
struct text {
    char *s;
    size_t len, cap;
    bool oom;
};
void text_add(struct text *b, const char *s, size_t n);
void text_str(struct text *b, const char *s);
void text_int(struct text *b, int64_t v);
/* s as a JSON string, quoted and escaped byte for byte as jansson's
 * json_dumps writes it (", \ and the control characters; nothing else). */
void text_json_str(struct text *b, const char *s);
void text_free(struct text *b);

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


/* ---- log (events.c) ------------------------------------------------------ */

/* A log line only (no event row): start-up, http.request, warnings. Keys
 * that look like secrets are dropped, as for events. fields are stolen. */
void log_event(const char *level, const char *name, json_t *fields);
extern FILE *log_stream;           /* where lines go; NULL = stdout */

#endif
