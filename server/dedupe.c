/* dedupe.c -- the rules of inbound dedupe (SPEC section 5): remember each
 * channel message id for a while so a webhook delivered twice is
 * processed once.
 *
 * DESIGN
 * Check-and-register is one operation of the store, atomic under any
 * concurrency (struct store_dedupe): an entry whose expiry has passed
 * counts as absent and is replaced. The sweep forgets expired entries in
 * bounded chunks.
 */
#include "core.h"

#define DEDUPE_PRUNE_BATCH 10000   /* rows per sweep: keeps one sweep short */

int
dedupe_register(struct tx *t, const char *channel, const char *channel_message_id,
                int64_t ttl_ms, bool *duplicate, int64_t *first_seen_at)
{
    struct dedupe_result res;

    if (store->dedupe->check_register(t, channel, channel_message_id, ttl_ms, &res) < 0)
        return -1;
    *duplicate = res.duplicate;
    *first_seen_at = res.first_seen_at;
    return 0;
}

int
dedupe_check_register(struct tx *t, const char *channel, const char *channel_message_id,
                      int64_t ttl_ms, struct dedupe_result *res)
{
    char name[160];

    if (store->dedupe->check_register(t, channel, channel_message_id, ttl_ms, res) < 0)
        return -1;
    if (res->duplicate) {
        snprintf(name, sizeof name, "%s.inbound.dedupe_skipped", channel);
        event_emit(t, "info", name,
                   json_pack("{s:s, s:s, s:I}", "channel", channel, "channelMessageId", channel_message_id,
                             "firstSeenAt", (json_int_t)res->first_seen_at));
    }
    return 0;
}

int
dedupe_prune(struct tx *t)
{
    int64_t deleted;

    return store->dedupe->prune(t, DEDUPE_PRUNE_BATCH, &deleted);
}
