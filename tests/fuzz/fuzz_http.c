/* fuzz_http.c -- libFuzzer target: the whole request path of batond, from
 * the socket through libmicrohttpd, routing, auth, body limits and JSON
 * parsing to every handler of the route table.
 *
 * Input layout. Byte 0 >= 0xF0: the rest is sent as raw bytes, the whole
 * request (malformed request lines, headers, Content-Length, chunked).
 * Otherwise byte 0 picks a route of routes[] (one more value: a path taken
 * from the input), byte 1 holds flags (below), and the rest is split at
 * '\n' into the route's {params}, then the query string, then the body
 * (which may hold any byte). Params and query go into the request line
 * raw, except the bytes that would end it, so %-escapes, %00, bad UTF-8
 * and long values all reach the server.
 *
 * Asserts: a well-formed request is answered (never only closed), never
 * with 500, and every 4xx/5xx is SPEC's JSON error (or Convex's envelope);
 * for raw requests the server answers or closes, and whatever it answers
 * obeys the same rules unless it is libmicrohttpd's own HTTP error. */
#define _GNU_SOURCE             /* memmem */
#include <stdlib.h>
#include <string.h>

#include "batond.h"
#include "fuzz_server.h"

#define RAW_MODE 0xF0
#define FL_NO_AUTH 0x01         /* drop Authorization */
#define FL_ALT_AUTH 0x02        /* a wrong secret, or "Convex <secret>" */
#define FL_OTHER_METHOD 0x04    /* a method the route may not have */
#define FL_CHUNKED 0x08         /* body in chunked transfer encoding */
#define FL_CTYPE 0x10           /* another Content-Type (bits 5-6 pick it) */
#define FL_HTTP10 0x80          /* HTTP/1.0: the server closes after */

static size_t nroutes;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_server_start();
    while (routes[nroutes].method)
        nroutes++;
    return 0;
}

/* the next '\n'-separated field of the input */
static const uint8_t *
field(const uint8_t **p, const uint8_t *end, size_t *len)
{
    const uint8_t *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));

    *len = (size_t)((nl ? nl : end) - s);
    *p = nl ? nl + 1 : end;
    return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    static const char *const ctypes[] = {"application/xml", "application/json; charset=utf-8",
                                         "text/plain", "multipart/form-data; boundary=x"};
    const uint8_t *p, *end = data + size, *s;
    const struct route *rt = NULL;
    const char *method, *pat;
    struct fbuf req = {0};
    struct fanswer a;
    uint8_t flags;
    size_t len, body_len;
    bool may_wait;

    if (size < 2)
        return 0;
    if (data[0] >= RAW_MODE) {
        fuzz_raw(data + 1, size - 1);
        return 0;
    }
    flags = data[1];
    p = data + 2;
    if (data[0] % (nroutes + 1) < nroutes)
        rt = &routes[data[0] % (nroutes + 1)];
    method = rt ? rt->method : methods[(flags >> 5) % 4];
    if (flags & FL_OTHER_METHOD)
        method = methods[(flags >> 5) % 6];

    fbuf_fmt(&req, "%s ", method);
    if (!rt) {
        s = field(&p, end, &len);
        if (!len || s[0] != '/')
            fbuf_str(&req, "/");
        fbuf_url(&req, s, len > 4000 ? 4000 : len);
    } else {
        for (pat = rt->pattern; *pat;) {
            if (*pat == '{') {
                s = field(&p, end, &len);
                fbuf_url(&req, s, len > 2000 ? 2000 : len);
                pat = strchr(pat, '}') + 1;
            } else
                fbuf_add(&req, pat++, 1);
        }
    }
    s = field(&p, end, &len);
    if (len) {
        fbuf_str(&req, "?");
        fbuf_url(&req, s, len > 4000 ? 4000 : len);
    }
    body_len = (size_t)(end - p);
    fbuf_fmt(&req, " HTTP/1.%d\r\nHost: 127.0.0.1\r\n", flags & FL_HTTP10 ? 0 : 1);
    if (flags & FL_ALT_AUTH)
        fbuf_str(&req, flags & FL_NO_AUTH ? "Authorization: Bearer wrong-secret\r\n"
                                          : "Authorization: Convex " FUZZ_SECRET "\r\n");
    else if (!(flags & FL_NO_AUTH))
        fbuf_str(&req, FUZZ_AUTH);
    if (flags & FL_CTYPE)
        fbuf_fmt(&req, "Content-Type: %s\r\n", ctypes[(flags >> 5) & 3]);
    else if (body_len)
        fbuf_str(&req, "Content-Type: application/json\r\n");
    if ((flags & FL_CHUNKED) && !(flags & FL_HTTP10)) {
        size_t half = body_len / 2;
        fbuf_str(&req, "Transfer-Encoding: chunked\r\n\r\n");
        if (half) {
            fbuf_fmt(&req, "%zx\r\n", half);
            fbuf_add(&req, p, half);
            fbuf_str(&req, "\r\n");
        }
        if (body_len - half) {
            fbuf_fmt(&req, "%zx\r\n", body_len - half);
            fbuf_add(&req, p + half, body_len - half);
            fbuf_str(&req, "\r\n");
        }
        fbuf_str(&req, "0\r\n\r\n");
    } else {
        if (body_len || strcmp(method, "GET"))
            fbuf_fmt(&req, "Content-Length: %zu\r\n", body_len);
        fbuf_str(&req, "\r\n");
        fbuf_add(&req, p, body_len);
    }

    may_wait = (rt && strstr(rt->pattern, "stream")) || memmem(p, body_len, "waitMs", 6);
    fuzz_exchange(req.p, req.n, may_wait, &a);
    if (a.status)
        fuzz_check(&a, req.p, req.n, true);
    fanswer_free(&a);
    fbuf_free(&req);
    return 0;
}
