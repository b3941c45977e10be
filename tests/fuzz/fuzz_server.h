/* fuzz_server.h -- what the libFuzzer targets of the request path share:
 * batond's server started inside the fuzzer's own process, one keep-alive
 * loopback connection to it, and the checks every answer must pass. */
#ifndef FUZZ_SERVER_H
#define FUZZ_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FUZZ_SECRET "fuzz-agent-secret-0123456789"
#define FUZZ_TELEGRAM_SECRET "fuzz-telegram-secret"
#define FUZZ_WHATSAPP_APP_SECRET "fuzz-whatsapp-app-secret"
#define FUZZ_WHATSAPP_VERIFY "fuzz-whatsapp-verify"

/* Start batond the way server/main.c does (config_load with a temp-dir
 * database and --listen 127.0.0.1:0, every secret set, modules_init,
 * serve_start, http_start). Aborts when it cannot. Call from
 * LLVMFuzzerInitialize. */
void fuzz_server_start(void);

/* A growable byte string. */
struct fbuf {
    char *p;
    size_t n, cap;
};
void fbuf_add(struct fbuf *b, const void *p, size_t n);
void fbuf_str(struct fbuf *b, const char *s);
void fbuf_fmt(struct fbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s[0..n) for use inside a request target: bytes that would break
 * the request line (controls, space, DEL, '#') become %XX, the rest --
 * including %-escapes, '?' and bytes >= 0x80 -- go as they are. */
void fbuf_url(struct fbuf *b, const uint8_t *s, size_t n);
void fbuf_free(struct fbuf *b);

/* One answer as read from the socket. */
struct fanswer {
    int status;
    char content_type[128];
    bool close;                 /* Connection: close */
    char *body;                 /* NUL-terminated, owned */
    size_t body_len;
};

/* Send one well-formed request (bytes req[0..n)) on the kept connection,
 * reconnecting once when the server had closed it, and read the whole
 * answer into *a. may_wait: the request may legitimately stay open (a
 * long-poll claim, an event stream): a short read timeout then just drops
 * the connection and 0 is returned with a->status = 0. Aborts when the
 * server neither answers nor may wait. */
int fuzz_exchange(const char *req, size_t n, bool may_wait, struct fanswer *a);
/* Send raw bytes on a fresh connection, close our sending side, read what
 * comes back until the server closes, and check every answer in it. */
void fuzz_raw(const uint8_t *data, size_t n);
void fanswer_free(struct fanswer *a);

/* Abort (so libFuzzer reports it) unless a is an acceptable answer of
 * batond to request req: no 500, and a 4xx/5xx with a JSON Content-Type
 * carries {"error":{"code":string,"message":string}} (or, for Convex
 * routes answering 560, the Convex error envelope). A 4xx/5xx that is not
 * JSON is only allowed when json_only is false (libmicrohttpd's own answers
 * to malformed HTTP). */
void fuzz_check(const struct fanswer *a, const char *req, size_t n, bool json_only);

/* The Authorization header line for most requests. */
#define FUZZ_AUTH "Authorization: Bearer " FUZZ_SECRET "\r\n"

#endif
