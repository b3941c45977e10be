/* dedupe_api.c -- POST /v1/dedupe (SPEC section 5): the check of its
 * input and its answer. The rules are in dedupe.c.
 */
#include <stdlib.h>

#include "batond.h"

#define DEDUPE_MAX_TTL_MS (10LL * 365 * 24 * 3600 * 1000)  /* 10 years */
#define DEDUPE_CHANNEL_MAX 128
#define DEDUPE_ID_MAX 1024

struct check_ctx {
    const char *channel;        /* borrowed from r->json */
    const char *id;
    int64_t ttl_ms;
};

static int
check_tx(struct tx *t, struct req *r)
{
    struct check_ctx *c = r->ctx;
    struct dedupe_result res;

    if (dedupe_check_register(t, c->channel, c->id, c->ttl_ms, &res) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:b, s:I, s:I}", "duplicate", res.duplicate, "firstSeenAt",
                                    (json_int_t)res.first_seen_at, "expiresAt", (json_int_t)res.expires_at));
}

int
dedupe_check(struct req *r)
{
    struct check_ctx *c = calloc(1, sizeof *c);
    struct field spec[] = {
        {"channel", F_STR, F_REQUIRED, NULL, 0, DEDUPE_CHANNEL_MAX, NULL},
        {"channelMessageId", F_STR, F_REQUIRED, NULL, 0, DEDUPE_ID_MAX, NULL},
        FIELD_INT("ttlMs", NULL, 0, 1, DEDUPE_MAX_TTL_MS),
        FIELD_END,
    };

    if (!c)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = c;
    r->ctx_free = free;
    c->ttl_ms = cfg.dedupe_ttl_ms;
    spec[0].out = &c->channel;
    spec[1].out = &c->id;
    spec[2].out = &c->ttl_ms;
    if (req_fields(r, spec) < 0)
        return -1;
    for (const char *p = c->channel; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '.' || *p == '/')
            return req_fail(r, "bad_request", NULL,
                            "field 'channel' must not contain control characters, '.' or '/'");
    return req_submit(r, check_tx);
}
