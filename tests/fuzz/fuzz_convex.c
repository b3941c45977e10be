/* fuzz_convex.c -- libFuzzer target: Convex's HTTP function protocol of
 * batond (/api/query|mutation|action|function and /api/run/{m}/{f}) with
 * bodies in the shape the Convex client sends, through the in-process
 * server of fuzz_server.c.
 *
 * Input layout: byte 0 holds flags (below); then the function name up to
 * the first '\n' ("agent:enqueue", "agent.getPendingJobs:default", ... --
 * any text); the rest is the args' JSON text, which convex_encoded_json
 * values ({"$integer":..}, {"$float":..}, {"$bytes":..}) may fill.
 * Asserts what fuzz_http asserts: an answer, never 500, errors as SPEC's
 * error body or Convex's 560 envelope. */
#define _GNU_SOURCE             /* memmem */
#include <string.h>

#include "batond.h"
#include "fuzz_server.h"

#define FL_ENDPOINT 0x07        /* query, mutation, action, function, run (x2), raw body */
#define FL_ENCODED 0x08         /* format: convex_encoded_json */
#define FL_NO_FORMAT 0x10       /* no format field */
#define FL_ARRAY 0x20           /* args as [args], the way the client wraps them */
#define FL_CONVEX_AUTH 0x40     /* "Convex <secret>" as the admin key is sent */
#define FL_NO_AUTH 0x80

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_server_start();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const kinds[] = {"query", "mutation", "action", "function"};
    const uint8_t *name, *args, *nl;
    size_t name_len, args_len;
    struct fbuf body = {0}, req = {0};
    struct fanswer a;
    uint8_t flags, ep;
    const char *format;

    if (size < 1)
        return 0;
    flags = data[0];
    ep = flags & FL_ENDPOINT;
    name = data + 1;
    nl = memchr(name, '\n', size - 1);
    name_len = nl ? (size_t)(nl - name) : size - 1;
    args = nl ? nl + 1 : data + size;
    args_len = (size_t)(data + size - args);
    if (!args_len)
        args = (const uint8_t *)"{}", args_len = 2;
    format = flags & FL_ENCODED ? "convex_encoded_json" : "json";

    if (ep < 4) {
        /* {"path": name, "args": args, "format": ...}; the name as a JSON string */
        json_t *js = json_stringn((const char *)name, name_len);
        char *path = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        fbuf_fmt(&body, "{\"path\":%s,\"args\":%s", path ? path : "\"\"", flags & FL_ARRAY ? "[" : "");
        free(path);
        fbuf_add(&body, args, args_len);
        fbuf_str(&body, flags & FL_ARRAY ? "]" : "");
        if (!(flags & FL_NO_FORMAT))
            fbuf_fmt(&body, ",\"format\":\"%s\"", format);
        fbuf_str(&body, "}");
        fbuf_fmt(&req, "POST /api/%s HTTP/1.1\r\n", kinds[ep]);
    } else {
        /* /api/run/{module}/{function}: the name's parts go into the path */
        const uint8_t *colon = memchr(name, ':', name_len);
        size_t mlen = colon ? (size_t)(colon - name) : name_len;
        fbuf_str(&req, "POST /api/run/");
        fbuf_url(&req, name, mlen > 1000 ? 1000 : mlen);
        fbuf_str(&req, "/");
        if (colon)
            fbuf_url(&req, colon + 1, name_len - mlen - 1 > 1000 ? 1000 : name_len - mlen - 1);
        fbuf_str(&req, " HTTP/1.1\r\n");
        if (ep == 7)
            fbuf_add(&body, args, args_len);        /* the args alone */
        else {
            fbuf_fmt(&body, "{\"args\":%s", flags & FL_ARRAY ? "[" : "");
            fbuf_add(&body, args, args_len);
            fbuf_fmt(&body, "%s,\"format\":\"%s\"}", flags & FL_ARRAY ? "]" : "", format);
        }
    }
    fbuf_str(&req, "Host: 127.0.0.1\r\nContent-Type: application/json\r\n");
    if (!(flags & FL_NO_AUTH))
        fbuf_str(&req, flags & FL_CONVEX_AUTH ? "Authorization: Convex " FUZZ_SECRET "\r\n" : FUZZ_AUTH);
    fbuf_fmt(&req, "Content-Length: %zu\r\n\r\n", body.n);
    fbuf_add(&req, body.p, body.n);

    fuzz_exchange(req.p, req.n, memmem(args, args_len, "waitMs", 6) != NULL, &a);
    if (a.status)
        fuzz_check(&a, req.p, req.n, true);
    fanswer_free(&a);
    fbuf_free(&req);
    fbuf_free(&body);
    return 0;
}
