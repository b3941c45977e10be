/* baton.h -- libbaton, the C client of batond (the public API).
 *
 * The header is the documentation. Every function that talks to the server
 * returns the HTTP status of a successful answer (2xx) or -1, in which case
 * the baton_error passed in (may be NULL) says what went wrong.
 *
 * OWNERSHIP
 * JSON follows jansson's rules: json_t * arguments are borrowed (the caller
 * keeps its reference); json_t ** results are new references the caller
 * releases with json_decref. A result pointer is always written when it is
 * not NULL: with the answer on success, with NULL on a 204, and on an HTTP
 * error with the answer's "error" object (code, message and details such
 * as currentOwnerId), or NULL on a transport error.
 * Strings returned by baton_escape are released with free().
 *
 * THREADS
 * A baton_client is used by one thread at a time (it owns one libcurl easy
 * handle, kept open so that calls reuse the same keep-alive connection).
 * Use one client per thread. Different clients may be used concurrently.
 * baton_new initialises libcurl once per process; libbaton never calls
 * curl_global_cleanup.
 *
 * RETRIES
 * Calls that are safe to repeat are retried, with capped exponential backoff
 * (100 ms, doubling up to 2 s, for at most 10 s in all by default; see
 * baton_set_retry), when the connection fails or the server answers 503.
 * These are: every GET, PUT and DELETE, job and lease heartbeats (they
 * only extend what the caller already holds) and session batches (the same
 * set/delete applied twice leaves the same state). Everything else --
 * enqueue, claim, complete, fail, lease acquire and release, dedupe, inbound,
 * event reports, /api functions -- is never retried silently: a repeat after
 * a lost answer could enqueue twice, hand out a second job, or turn a first
 * sighting into a "duplicate" and drop a message. Those calls return the
 * error and the caller decides.
 */
#ifndef BATON_H
#define BATON_H

#include <stdbool.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BATON_DEFAULT_URL "http://127.0.0.1:3210"

typedef struct baton_client baton_client;

/* What went wrong in a failed call. */
typedef struct {
    long status;        /* HTTP status; 0 when no answer was received */
    char code[64];      /* the server's error.code; "transport" when no
                           answer; "bad_response" when the answer is not the
                           expected JSON; "function_error" (or errorData.code)
                           for a Convex function error (HTTP 560) */
    char message[512];  /* the server's error.message, or curl's error text */
    int transport;      /* the CURLcode of a transport failure, else 0 */
} baton_error;

/* Create a client for the server at url (e.g. "http://127.0.0.1:3210"; a
 * trailing slash is ignored). secret: the AGENT_SECRET sent as
 * "Authorization: Bearer <secret>", or NULL to send none. Both strings are
 * copied. Returns NULL when out of memory or libcurl cannot initialise.
 * Defaults: timeout 30000 ms, retries as described above. */
baton_client *baton_new(const char *url, const char *secret);
/* Close the connection and free the client. NULL is a no-op. */
void baton_free(baton_client *b);
/* Time allowed for one HTTP exchange, in ms (<= 0 restores the default).
 * Long-poll calls (baton_claim with wait_ms) add their wait on top. */
void baton_set_timeout_ms(baton_client *b, long ms);
/* Retry policy for calls that are safe to repeat: first delay first_ms,
 * doubled after each attempt up to max_ms, no new attempt once total_ms
 * have passed since the call began. total_ms <= 0 disables retries. */
void baton_set_retry(baton_client *b, long first_ms, long max_ms, long total_ms);
/* Cancellation hook. fn(arg) is polled while this client's calls run: before
 * each attempt, between retries, and during an exchange (libcurl's progress
 * callback: often while data flows, about once a second while waiting, e.g.
 * in a long-poll claim). When it returns non-zero the exchange is aborted
 * and the call returns -1 with code "cancelled" (transport
 * CURLE_ABORTED_BY_CALLBACK); it is not retried. An aborted claim that the
 * server had already granted is undone by the server, since its answer
 * could not be delivered. baton_events_follow returns -1 ("cancelled")
 * instead of reconnecting. fn runs on the calling thread and must be cheap
 * (e.g. read an atomic flag). fn NULL removes the hook. */
typedef int (*baton_cancel_fn)(void *arg);
void baton_set_cancel(baton_client *b, baton_cancel_fn fn, void *arg);
/* The URL the client was created with (without trailing slash). */
const char *baton_url(const baton_client *b);

/* "HTTP 409 claim_lost: the job was claimed again" or "transport: ...".
 * The string lives in a per-thread buffer, valid until the next call of
 * baton_strerror in the same thread. err may be NULL ("no error"). */
const char *baton_strerror(const baton_error *err);

/* Percent-encode s for use as one path segment or query value (every byte
 * but A-Z a-z 0-9 - . _ ~). Returns a malloc'ed string or NULL (no memory). */
char *baton_escape(const char *s);

/* ---- the generic call ---------------------------------------------------- */

/* Flags of baton_call_flags. */
#define BATON_RETRY     1u      /* retry even though method is POST */
#define BATON_NO_RETRY  2u      /* never retry, whatever the method */

/* Send method path (e.g. "GET", "/v1/jobs?status=failed"; path must already
 * be escaped) with body as JSON (NULL: no body). GET, PUT and DELETE are
 * retried as described above; POST is not. On success returns the status
 * and sets *out (if out is not NULL) to the parsed answer, NULL for an empty
 * body (204). Returns -1 on a transport error or a non-2xx status, with err
 * filled and *out set as described under OWNERSHIP. */
int baton_call(baton_client *b, const char *method, const char *path, json_t *body,
               json_t **out, baton_error *err);
/* baton_call with BATON_RETRY / BATON_NO_RETRY, and extra_timeout_ms added
 * to the client's timeout for this call (long-polls). */
int baton_call_flags(baton_client *b, const char *method, const char *path, json_t *body,
                     unsigned flags, long extra_timeout_ms, json_t **out, baton_error *err);

/* ---- jobs (SPEC section 3) ------------------------------------------------ */

/* POST /v1/jobs. queue: NULL for "agent". payload: any JSON (NULL: null).
 * options: NULL or an object merged into the body (priority, delayMs,
 * maxAttempts, dedupeKey, orderKey). Returns 201, or 200 when dedupeKey matched an
 * existing job (its "duplicate" member is then true). *job: the answer's
 * job object. Not retried. */
int baton_enqueue(baton_client *b, const char *queue, json_t *payload, json_t *options,
                  json_t **job, baton_error *err);

/* POST /v1/jobs/batch: 1 to 1000 jobs in one request, inserted all or
 * none. jobs: an array (borrowed) of objects, each with the fields of a
 * POST /v1/jobs body (queue -- "agent" when absent --, payload, priority,
 * delayMs, maxAttempts, dedupeKey, ...). Returns 201 with *results (may
 * be NULL) the answer's array, in the order of jobs: one {job, duplicate}
 * per element, duplicate true when its dedupeKey matched a live job (also
 * one earlier in the same batch; job is then that job). A malformed
 * element: -1 with err 400 bad_request naming it (jobs[3].queue), the
 * error object (with index and field) in *results, and nothing enqueued.
 * Not retried. */
int baton_enqueue_batch(baton_client *b, json_t *jobs, json_t **results, baton_error *err);

/* POST /v1/jobs/claim. queue: NULL for "agent". lock_ms <= 0: the server's
 * default. wait_ms > 0 long-polls that long (max 60000) for a job to become
 * due. lease_token <= 0: none (needed on leased outbound queues). Returns
 * 200 with *job set to the claimed job, or 204 with *job NULL when nothing
 * came. Not retried (a retry could claim a second job). */
int baton_claim(baton_client *b, const char *queue, const char *worker_id, long lock_ms,
                long wait_ms, long long lease_token, json_t **job, baton_error *err);

/* POST /v1/jobs/{id}/heartbeat: extend the lock of a job the caller holds.
 * lock_ms <= 0: the server's default. 409 claim_lost when the claim is no
 * longer current. Retried. job may be NULL. */
int baton_heartbeat_job(baton_client *b, const char *job_id, const char *worker_id,
                        const char *claim_token, long lock_ms, long long lease_token,
                        json_t **job, baton_error *err);

/* POST /v1/jobs/{id}/progress: the reply text produced so far (the whole
 * of it, not a delta) for a streaming reply; fenced by the claim like a
 * heartbeat. 429 rate_limited when reported too often. Not retried (the
 * next report carries the text anyway). */
int baton_job_progress(baton_client *b, const char *job_id, const char *worker_id,
                       const char *claim_token, const char *text, baton_error *err);

/* POST /v1/jobs/{id}/complete. result, reply: NULL to omit (reply is
 * {text, payload?}, SPEC section 8). 409 claim_lost when the claim is no
 * longer current. Not retried. */
int baton_complete(baton_client *b, const char *job_id, const char *worker_id,
                   const char *claim_token, json_t *result, json_t *reply,
                   long long lease_token, baton_error *err);

/* POST /v1/jobs/{id}/fail. error_message may be NULL. retry_after_ms <= 0:
 * omitted (the server's backoff). Not retried. */
int baton_fail(baton_client *b, const char *job_id, const char *worker_id,
               const char *claim_token, const char *error_reason, const char *error_message,
               bool retryable, long retry_after_ms, long long lease_token, baton_error *err);

/* Complete-and-next: the next job to claim in the same request as a
 * completion or a failure. queue: NULL for the finished job's queue;
 * lock_ms <= 0: the server's default; wait_ms > 0 long-polls that long
 * (max 60000) when nothing is there -- the completion or failure is
 * committed before the wait starts. */
typedef struct baton_next {
    const char *queue;
    long lock_ms;
    long wait_ms;
} baton_next;

/* baton_complete and baton_fail that also claim the next job (next NULL:
 * exactly baton_complete / baton_fail) for the same worker and lease
 * token: *next_job is the claimed job, or NULL when none came. An error
 * answer means nothing was done, except when the answer was lost after a
 * wait had begun: the completion or failure has happened then (a repeated
 * completion is answered with its job again, a repeated failure with
 * 409 claim_lost). Not retried. */
int baton_complete_next(baton_client *b, const char *job_id, const char *worker_id,
                        const char *claim_token, json_t *result, json_t *reply, long long lease_token,
                        const baton_next *next, json_t **next_job, baton_error *err);
int baton_fail_next(baton_client *b, const char *job_id, const char *worker_id, const char *claim_token,
                    const char *error_reason, const char *error_message, bool retryable,
                    long retry_after_ms, long long lease_token, const baton_next *next, json_t **next_job,
                    baton_error *err);

/* GET /v1/jobs/{id} into *job. */
int baton_job_get(baton_client *b, const char *job_id, json_t **job, baton_error *err);

/* ---- leases (SPEC section 4) ---------------------------------------------- */

/* POST /v1/leases/{channel}/{account}/acquire. On 200 *lease is the lease
 * (its "token" is the fencing token). Held by another owner: -1 with code
 * "lease_held", and *lease (when lease is not NULL) is the error object
 * with currentOwnerId and expiresAt. Not retried. */
int baton_lease_acquire(baton_client *b, const char *channel, const char *account,
                        const char *owner, long ttl_ms, json_t **lease, baton_error *err);
/* POST .../heartbeat. ttl_ms <= 0: the lease's previous ttl. 409 lease_lost
 * when the token is no longer current. Retried. lease may be NULL. */
int baton_lease_heartbeat(baton_client *b, const char *channel, const char *account,
                          const char *owner, long long token, long ttl_ms, json_t **lease,
                          baton_error *err);
/* POST .../release. Not retried. */
int baton_lease_release(baton_client *b, const char *channel, const char *account,
                        const char *owner, long long token, baton_error *err);
/* GET /v1/leases/{channel}/{account}: *lease is the lease or NULL when
 * there has never been one. */
int baton_lease_get(baton_client *b, const char *channel, const char *account, json_t **lease,
                    baton_error *err);

/* ---- dedupe, inbound (SPEC sections 5 and 7) ------------------------------ */

/* POST /v1/dedupe {channel, channelMessageId}: *duplicate is false the first
 * time an id is seen, true after. Not retried (see RETRIES). */
int baton_dedupe(baton_client *b, const char *channel, const char *id, bool *duplicate,
                 baton_error *err);

/* POST /v1/inbound: dedupe + message + agent job in one transaction.
 * Returns 201 ({duplicate:false, messageId, jobId} in *out) or 200 when the
 * message was already recorded ({duplicate:true}). out may be NULL. Not
 * retried. */
int baton_inbound(baton_client *b, const char *channel, const char *account,
                  const char *channel_message_id, const char *conversation_id, const char *from,
                  const char *text, json_t **out, baton_error *err);

/* ---- sessions (SPEC section 6) -------------------------------------------- */

/* POST /v1/sessions/{channel}/{account}/batch: set (object, may be NULL)
 * and delete (array of keys, may be NULL) applied all or nothing.
 * lease_token <= 0: none. Retried. */
int baton_session_batch(baton_client *b, const char *channel, const char *account, json_t *set,
                        json_t *del, long long lease_token, baton_error *err);
/* GET /v1/sessions/{channel}/{account}: *entries is the {key: value}
 * object. */
int baton_session_get_all(baton_client *b, const char *channel, const char *account,
                          json_t **entries, baton_error *err);

/* ---- queue controls and schedules ----------------------------------------- */

/* POST /v1/queues/{queue}/pause and /resume: reason may be NULL. *out (may
 * be NULL): the settings after, with "changed". 200; retried (a repeated
 * pause changes nothing). */
int baton_queue_pause(baton_client *b, const char *queue, const char *reason, json_t **out,
                      baton_error *err);
int baton_queue_resume(baton_client *b, const char *queue, json_t **out, baton_error *err);
/* GET /v1/queues/{queue}/limits: *out {queue, rate: [...], default}. */
int baton_queue_limits(baton_client *b, const char *queue, json_t **out, baton_error *err);
/* PUT /v1/queues/{queue}/limits {rate} (rate borrowed: a limit object
 * {limit, periodMs, byKey?}, an array of up to two, or NULL for none);
 * baton_queue_limits_reset: DELETE, back to the defaults. *out as
 * baton_queue_limits. Retried. */
int baton_queue_limits_set(baton_client *b, const char *queue, json_t *rate, json_t **out,
                           baton_error *err);
int baton_queue_limits_reset(baton_client *b, const char *queue, json_t **out, baton_error *err);

/* POST /v1/schedules: schedule (borrowed) {name, queue, payload, cron |
 * everyMs, timezone?, paused?}. 201 with *out the schedule; 409 when the
 * name is taken. Not retried. */
int baton_schedule_add(baton_client *b, json_t *schedule, json_t **out, baton_error *err);
/* GET /v1/schedules: *out the array of schedules. */
int baton_schedule_list(baton_client *b, json_t **out, baton_error *err);
/* DELETE /v1/schedules/{name}: 200, or 404 when there is none. */
int baton_schedule_delete(baton_client *b, const char *name, baton_error *err);

/* ---- events (SPEC section 10) --------------------------------------------- */

/* POST /v1/events {event, level, ...fields}. level NULL: "info". fields:
 * NULL or an object (borrowed). Not retried. */
int baton_report_event(baton_client *b, const char *event, const char *level, json_t *fields,
                       baton_error *err);

/* Called for each Server-Sent Event: id (may be NULL), event name (may be
 * NULL) and data parsed as JSON (NULL when not JSON; raw is the text).
 * Return 0 to go on, non-zero to stop the stream. */
typedef int (*baton_event_fn)(void *arg, const char *id, const char *event, json_t *data,
                              const char *raw);

/* Follow GET /v1/events/stream?event=<filter> (filter may be NULL). When
 * the connection drops, reconnects with Last-Event-ID set to the last id
 * received (initially last_id, may be NULL), waiting with the retry
 * backoff; a connection that brought events resets the backoff. Returns 0
 * when fn asked to stop, -1 on an HTTP error answer (e.g. 401, 404) or when
 * reconnecting keeps failing for longer than the retry total. */
int baton_events_follow(baton_client *b, const char *filter, const char *last_id,
                        baton_event_fn fn, void *arg, baton_error *err);

#ifdef __cplusplus
}
#endif

#endif
