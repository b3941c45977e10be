/* webchat.c -- the public web chat (/chat): visitor tokens, the limits of
 * the public side, CORS for the chat routes only.
 *
 * DESIGN
 * A public page cannot hold the service secret, so opening a chat creates
 * a conversation id ("web_" + 32 hex) and a visitor token that is the
 * HMAC-SHA256 of that id under a server key. The token lets its holder
 * post to and read that one conversation through /chat/api/conversations/
 * {id}/messages, which call the same handlers as the /v1 conversation
 * routes; it is accepted nowhere else. The key is derived from AGENT_SECRET
 * (rotating the secret ends every visitor's chat), or random per process
 * when no secret is set. Nothing is stored per visitor. Limits: message
 * length (BATON_WEBCHAT_MAX_TEXT), messages per minute per conversation
 * (BATON_WEBCHAT_RATE) and per client address (three times that), chats
 * opened per address; BATON_WEBCHAT=off answers 404 on all of it.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "batond.h"

#define CONV_PREFIX "web_"
#define CONV_LEN (4 + 32)
#define OPEN_RATE (10.0 / 60.0)
#define OPEN_BURST 10.0

static unsigned char key[crypto_auth_hmacsha256_KEYBYTES];
static struct ratelimit conv_limit, addr_limit, open_limit;

int webchat_init(char *why, size_t n);
void webchat_free(void);

int
webchat_init(char *why, size_t n)
{
    double per_s = (double)cfg.webchat_rate / 60.0;

    if (cfg.secret) {
        unsigned char h[64];
        static const char ctx[] = "baton web chat visitor tokens v1";
        crypto_generichash(h, sizeof h, (const unsigned char *)cfg.secret, strlen(cfg.secret), NULL, 0);
        crypto_generichash(key, sizeof key, (const unsigned char *)ctx, sizeof ctx - 1, h, sizeof h);
        sodium_memzero(h, sizeof h);
    } else
        randombytes_buf(key, sizeof key);
    if (ratelimit_init(&conv_limit, "webchat_conversation", per_s, (double)cfg.webchat_rate) < 0 ||
        ratelimit_init(&addr_limit, "webchat_address", 3 * per_s, 3.0 * (double)cfg.webchat_rate) < 0 ||
        ratelimit_init(&open_limit, "webchat_open", OPEN_RATE, OPEN_BURST) < 0) {
        snprintf(why, n, "out of memory");
        return -1;
    }
    return 0;
}

void
webchat_free(void)
{
    sodium_memzero(key, sizeof key);
    ratelimit_free(&conv_limit);
    ratelimit_free(&addr_limit);
    ratelimit_free(&open_limit);
}

static void
token_of(const char *conversation, char hex[2 * crypto_auth_hmacsha256_BYTES + 1])
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];

    crypto_auth_hmacsha256(mac, (const unsigned char *)conversation, strlen(conversation), key);
    sodium_bin2hex(hex, 2 * crypto_auth_hmacsha256_BYTES + 1, mac, sizeof mac);
}

bool
webchat_token_ok(const char *conversation, const char *token)
{
    char want[2 * crypto_auth_hmacsha256_BYTES + 1];

    if (!conversation || !token || strlen(conversation) != CONV_LEN ||
        strncmp(conversation, CONV_PREFIX, 4))
        return false;
    token_of(conversation, want);
    return secret_equal(token, strlen(token), want, strlen(want));
}

/* CORS: only for the chat routes, only for the listed origins. */
static void
cors(struct req *r)
{
    const char *origin = req_header(r, "Origin");
    const char *list = cfg.webchat_origins;
    size_t len;

    if (!origin || !list)
        return;
    len = strlen(origin);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        const char *b = p, *e = p + n;
        while (b < e && *b == ' ')
            b++;
        while (e > b && e[-1] == ' ')
            e--;
        if ((size_t)(e - b) == len && !strncmp(b, origin, len)) {
            req_set_header(r, "Access-Control-Allow-Origin", origin);
            req_set_header(r, "Vary", "Origin");
            req_set_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
            req_set_header(r, "Access-Control-Allow-Methods", "GET, POST");
            req_set_header(r, "Access-Control-Max-Age", "600");
            return;
        }
        p += n;
        if (*p)
            p++;
    }
}

static int
off(struct req *r)
{
    return req_fail(r, "not_found", NULL, "the web chat is turned off on this server");
}

int
webchat_page(struct req *r)
{
    if (!cfg.webchat)
        return off(r);
    return web_asset_answer(r, "chat.html");
}

int
webchat_preflight(struct req *r)
{
    if (!cfg.webchat)
        return off(r);
    cors(r);
    return req_ok(r, 204, NULL);
}

/* POST /chat/api/open {}: a new conversation and its visitor token. */
int
webchat_open(struct req *r)
{
    char addr[80], tok[2 * crypto_auth_hmacsha256_BYTES + 1], *conv;
    int64_t wait;

    if (!cfg.webchat)
        return off(r);
    cors(r);
    req_set_header(r, "Cache-Control", "no-store");
    req_client_addr(r, addr, sizeof addr);
    if ((wait = ratelimit_take(&open_limit, addr, now_ms())) > 0)
        return req_limited(r, wait, "chats opened from this address");
    if (!(conv = new_id(CONV_PREFIX)))
        return req_fail(r, "unavailable", NULL, "out of memory");
    token_of(conv, tok);
    req_ok(r, 201, json_pack("{s:s, s:s, s:I}", "conversationId", conv, "token", tok, "maxText",
                             (json_int_t)cfg.webchat_max_text));
    free(conv);
    return 0;
}

/* GET /chat/api/conversations/{id}/messages?after=&waitMs=&rev= (the
 * visitor's token was checked by http.c) */
int
webchat_list(struct req *r)
{
    if (!cfg.webchat)
        return off(r);
    cors(r);
    req_set_header(r, "Cache-Control", "no-store");
    return messages_list(r);
}

/* POST /chat/api/conversations/{id}/messages {text, clientMessageId?} */
int
webchat_post(struct req *r)
{
    const char *text = NULL, *client_id = NULL;
    struct field spec[] = {
        {"text", F_STR, F_REQUIRED, NULL, 0, 0, NULL},
        {"clientMessageId", F_STR, 0, NULL, 0, 200, NULL},
        FIELD_END,
    };
    char addr[80];
    int64_t now = now_ms(), wait;

    if (!cfg.webchat)
        return off(r);
    cors(r);
    spec[0].out = &text;
    spec[1].out = &client_id;
    if (req_fields(r, spec) < 0)
        return -1;
    if (strlen(text) > (size_t)cfg.webchat_max_text)
        return req_fail(r, "bad_request", json_pack("{s:I}", "maxText", (json_int_t)cfg.webchat_max_text),
                        "field 'text' is longer than %lld bytes", (long long)cfg.webchat_max_text);
    /* the visitor names no sender: "from" is always the conversation */
    json_object_set_new(r->json, "from", json_string(req_param(r, 0)));
    req_client_addr(r, addr, sizeof addr);
    if ((wait = ratelimit_take(&addr_limit, addr, now)) > 0)
        return req_limited(r, wait, "messages from this address");
    if ((wait = ratelimit_take(&conv_limit, req_param(r, 0), now)) > 0)
        return req_limited(r, wait, "messages in this conversation");
    return messages_web_post(r);
}
