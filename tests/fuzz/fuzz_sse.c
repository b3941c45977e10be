/* fuzz_sse.c -- libFuzzer target: libbaton's Server-Sent Events parser
 * (sse_write / sse_line / sse_dispatch, static in client/baton.c, reached
 * by including that file) and the Last-Event-ID it keeps for reconnects.
 *
 * Input layout: byte 0 is a chunk size; the rest is the stream. It is
 * parsed twice, once whole and once in pieces the way curl may hand them
 * over, and the two must dispatch the same events (ids, names, data).
 * Asserts also: no id, event name or Last-Event-ID holds CR, LF or NUL (the
 * id goes into a request header on reconnect), and an event's parsed data
 * is what its raw text parses to. */
#include "../../client/baton.c"

#include <stdint.h>

struct seen {
    struct buf log;             /* id \x01 event \x01 data \x02, per event */
    int events;
};

static bool
clean(const char *s)
{
    return !strpbrk(s, "\r\n");
}

static int
on_event(void *arg, const char *id, const char *event, json_t *data, const char *raw)
{
    struct seen *sn = arg;
    json_t *again = json_loads(raw, JSON_DECODE_ANY, NULL);

    if ((id && (!clean(id) || strlen(id) > 127)) || (event && (!clean(event) || strlen(event) > 127))) {
        fprintf(stderr, "sse: id or event name with a line break or too long\n");
        abort();
    }
    if (!data != !again || (data && !json_equal(data, again))) {
        fprintf(stderr, "sse: data differs from its raw text\n");
        abort();
    }
    json_decref(again);
    collect((char *)(id ? id : ""), 1, strlen(id ? id : ""), &sn->log);
    collect("\x01", 1, 1, &sn->log);
    collect((char *)(event ? event : ""), 1, strlen(event ? event : ""), &sn->log);
    collect("\x01", 1, 1, &sn->log);
    collect((char *)raw, 1, strlen(raw), &sn->log);
    collect("\x02", 1, 1, &sn->log);
    sn->events++;
    return 0;
}

/* Feed p[0..n) in pieces of chunk bytes; returns the final last_id. */
static void
feed(const uint8_t *p, size_t n, size_t chunk, struct seen *sn, char *last_id)
{
    struct sse s = {.fn = on_event, .arg = sn};

    for (size_t off = 0; off < n && !s.stop;) {
        size_t len = n - off < chunk ? n - off : chunk;
        char *copy = malloc(len ? len : 1);     /* curl's buffer is not NUL-terminated */
        memcpy(copy, p + off, len);
        if (sse_write(copy, 1, len, &s) != len && !s.stop) {
            free(copy);
            break;
        }
        free(copy);
        off += len;
    }
    if (!clean(s.last_id)) {
        fprintf(stderr, "sse: Last-Event-ID '%s' holds a line break\n", s.last_id);
        abort();
    }
    strcpy(last_id, s.last_id);
    free(s.line.p);
    free(s.data.p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct seen whole = {{NULL, 0}, 0}, parts = {{NULL, 0}, 0};
    char id1[128], id2[128];

    if (size < 1)
        return 0;
    feed(data + 1, size - 1, size, &whole, id1);
    feed(data + 1, size - 1, 1 + data[0] % 7, &parts, id2);
    if (whole.events != parts.events || whole.log.n != parts.log.n ||
        (whole.log.n && memcmp(whole.log.p, parts.log.p, whole.log.n)) || strcmp(id1, id2)) {
        fprintf(stderr, "sse: %d events whole, %d in pieces of %d bytes\n", whole.events, parts.events,
                1 + data[0] % 7);
        abort();
    }
    free(whole.log.p);
    free(parts.log.p);
    return 0;
}
