/* console.c -- the operator console: sign-in with the service secret,
 * session cookies with CSRF tokens, and the embedded pages and assets.
 *
 * DESIGN
 * Signing in with AGENT_SECRET creates a session: 32 random bytes sent
 * once as an HttpOnly, SameSite=Strict cookie, kept here only as their
 * BLAKE2b hash, with a random CSRF token and an expiry, in a fixed table
 * (the oldest is replaced when it is full; sessions do not survive a
 * restart). The page then calls the ordinary /v1 routes: http.c accepts
 * the cookie in place of the Bearer secret (web_authorized), and on every
 * request that is not GET/HEAD only together with the X-CSRF-Token header
 * of that session. So every console action is an API call, checked,
 * validated and recorded exactly as from curl. The console's HTML and
 * script are served to signed-in browsers only; the sign-in page, the
 * style sheet and the chat are public. Every page carries a CSP that
 * allows nothing from other origins.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "batond.h"

#define COOKIE "baton_session"
#define SESSIONS_MAX 64
#define HASH_LEN 32
#define TOKEN_BYTES 32

static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

struct session {
    unsigned char hash[HASH_LEN];   /* of the cookie value */
    char csrf[2 * TOKEN_BYTES + 1];
    int64_t expires;                /* 0: free slot */
};

static struct session sessions[SESSIONS_MAX];
static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;

int webchat_init(char *why, size_t n);
void webchat_free(void);

int
web_init(char *why, size_t n)
{
    return webchat_init(why, n);
}

void
web_free(void)
{
    sodium_memzero(sessions, sizeof sessions);
    webchat_free();
}

void
web_page_headers(struct req *r)
{
    req_set_header(r, "Content-Security-Policy", csp);
    req_set_header(r, "X-Content-Type-Options", "nosniff");
    req_set_header(r, "Referrer-Policy", "no-referrer");
    req_set_header(r, "X-Frame-Options", "DENY");
}

/* Pages are never cached (they depend on the sign-in); assets are named
 * with the build's version by the pages and may be cached for a day. */
int
web_asset_answer(struct req *r, const char *name)
{
    for (const struct web_asset *a = web_assets; a->name; a++) {
        if (strcmp(a->name, name))
            continue;
        req_ok(r, 200, NULL);
        free(r->text);
        r->text = strdup(a->body);
        if (!r->text)
            return req_fail(r, "unavailable", NULL, "out of memory");
        r->text_type = a->type;
        web_page_headers(r);
        if (strstr(a->type, "text/html"))
            req_set_header(r, "Cache-Control", "no-store");
        else
            req_set_header(r, "Cache-Control", "public, max-age=86400");
        return 0;
    }
    return req_fail(r, "not_found", NULL, "no asset %s", name);
}

/* ---- sessions -------------------------------------------------------------- */

static void
hash_token(const char *tok, unsigned char out[HASH_LEN])
{
    crypto_generichash(out, HASH_LEN, (const unsigned char *)tok, strlen(tok), NULL, 0);
}

/* The live session of r's cookie, copied into *out. */
static bool
session_find(struct req *r, struct session *out)
{
    const char *c = req_cookie(r, COOKIE);
    unsigned char h[HASH_LEN];
    int64_t now = now_ms();
    bool found = false;

    if (!c || strlen(c) != 2 * TOKEN_BYTES)
        return false;
    hash_token(c, h);
    pthread_mutex_lock(&sessions_lock);
    for (int i = 0; i < SESSIONS_MAX; i++) {
        struct session *s = &sessions[i];
        if (s->expires > now && !sodium_memcmp(s->hash, h, HASH_LEN)) {
            *out = *s;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&sessions_lock);
    return found;
}

bool
web_authorized(struct req *r)
{
    struct session s;
    const char *csrf;

    if (r->route->auth == AUTH_VISITOR) {
        const char *h = req_header(r, "Authorization");
        if (!cfg.webchat)
            return true;            /* the handler answers 404 */
        return h && !strncasecmp(h, "Bearer ", 7) && webchat_token_ok(req_param(r, 0), h + 7);
    }
    if (r->route->auth != AUTH_BEARER || !session_find(r, &s))
        return false;
    if (!strcmp(r->method, "GET") || !strcmp(r->method, "HEAD"))
        return true;
    csrf = req_header(r, "X-CSRF-Token");
    return csrf && secret_equal(csrf, strlen(csrf), s.csrf, strlen(s.csrf));
}

static bool
secure_request(struct req *r)
{
    const char *p = cfg.trust_proxy ? req_header(r, "X-Forwarded-Proto") : NULL;

    return p && !strcasecmp(p, "https");
}

static void
set_cookie(struct req *r, const char *value, int64_t max_age_s)
{
    char c[256];

    snprintf(c, sizeof c, COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s", value,
             (long long)max_age_s, secure_request(r) ? "; Secure" : "");
    req_set_header(r, "Set-Cookie", c);
}

/* POST /console/api/login {secret} */
int
console_login(struct req *r)
{
    const char *secret = NULL;
    struct field spec[] = {
        {"secret", F_STR, F_REQUIRED | F_EMPTY_OK, NULL, 0, 4096, NULL},
        FIELD_END,
    };
    char addr[80], tok[2 * TOKEN_BYTES + 1];
    unsigned char raw[TOKEN_BYTES];
    int64_t now = now_ms(), oldest = INT64_MAX;
    int slot = 0;

    web_page_headers(r);
    req_client_addr(r, addr, sizeof addr);
    if (req_auth_limited(r) < 0)
        return -1;
    spec[0].out = &secret;
    if (req_fields(r, spec) < 0)
        return -1;
    if (cfg.secret && !secret_equal(secret, strlen(secret), cfg.secret, strlen(cfg.secret))) {
        log_event("warn", "console.login.failed", json_pack("{s:s}", "client", addr));
        return req_fail(r, "unauthorized", NULL, "wrong secret");
    }
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(tok, sizeof tok, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    pthread_mutex_lock(&sessions_lock);
    for (int i = 0; i < SESSIONS_MAX; i++) {
        if (sessions[i].expires <= now) {
            slot = i;
            break;
        }
        if (sessions[i].expires < oldest) {
            oldest = sessions[i].expires;
            slot = i;
        }
    }
    hash_token(tok, sessions[slot].hash);
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(sessions[slot].csrf, sizeof sessions[slot].csrf, raw, sizeof raw);
    sessions[slot].expires = now + cfg.console_session_ms;
    req_ok(r, 200, json_pack("{s:b, s:s, s:I}", "signedIn", 1, "csrf", sessions[slot].csrf,
                             "expiresAt", (json_int_t)sessions[slot].expires));
    pthread_mutex_unlock(&sessions_lock);
    set_cookie(r, tok, cfg.console_session_ms / 1000);
    sodium_memzero(tok, sizeof tok);
    log_event("info", "console.login", json_pack("{s:s}", "client", addr));
    return 0;
}

/* POST /console/api/logout {}: ends the session of the cookie. */
int
console_logout(struct req *r)
{
    const char *c = req_cookie(r, COOKIE);
    unsigned char h[HASH_LEN];

    if (c) {
        hash_token(c, h);
        pthread_mutex_lock(&sessions_lock);
        for (int i = 0; i < SESSIONS_MAX; i++)
            if (!sodium_memcmp(sessions[i].hash, h, HASH_LEN))
                sodium_memzero(&sessions[i], sizeof sessions[i]);
        pthread_mutex_unlock(&sessions_lock);
    }
    set_cookie(r, "", 0);
    web_page_headers(r);
    return req_ok(r, 200, json_pack("{s:b}", "signedIn", 0));
}

/* GET /console/api/session: whether the browser is signed in, and the
 * CSRF token the page must send (readable by same-origin pages only). */
int
console_session(struct req *r)
{
    struct session s;
    bool in = session_find(r, &s);

    web_page_headers(r);
    req_set_header(r, "Cache-Control", "no-store");
    return req_ok(r, 200, json_pack("{s:b, s:s?, s:b, s:b}", "signedIn", in || !cfg.secret, "csrf",
                                    in ? s.csrf : NULL, "secretSet", cfg.secret != NULL, "webchat",
                                    cfg.webchat));
}

static bool
signed_in(struct req *r)
{
    struct session s;

    return !cfg.secret || session_find(r, &s);
}

static int
redirect(struct req *r, int status, const char *to)
{
    req_ok(r, status, NULL);
    free(r->text);
    r->text = strdup("");
    r->text_type = "text/plain; charset=utf-8";
    req_set_header(r, "Location", to);
    req_set_header(r, "Cache-Control", "no-store");
    return 0;
}

int
console_root(struct req *r)
{
    return redirect(r, 302, "/console");
}

int
console_page(struct req *r)
{
    if (!signed_in(r))
        return redirect(r, 303, "/console/login");
    return web_asset_answer(r, "console.html");
}

int
console_login_page(struct req *r)
{
    if (cfg.secret && signed_in(r))
        return redirect(r, 303, "/console");
    return web_asset_answer(r, "login.html");
}

int
console_script(struct req *r)
{
    if (!signed_in(r))
        return req_fail(r, "unauthorized", NULL, "sign in first");
    return web_asset_answer(r, "console.js");
}

/* GET /static/{name}: the public assets (the console's own script is not
 * one of them). */
int
console_static(struct req *r)
{
    const char *name = req_param(r, 0);
    static const char *const public_assets[] = {"style.css", "login.js", "chat.js", NULL};

    for (int i = 0; public_assets[i]; i++)
        if (!strcmp(name, public_assets[i]))
            return web_asset_answer(r, name);
    return req_fail(r, "not_found", NULL, "no asset %s", name);
}
