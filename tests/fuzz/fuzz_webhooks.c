/* fuzz_webhooks.c -- libFuzzer target: the Telegram and WhatsApp webhooks
 * of batond with valid credentials, so that the parsers behind the
 * signature check are what is fuzzed: the Telegram secret header, and an
 * X-Hub-Signature-256 computed here over the exact body with the
 * configured app secret (libsodium HMAC-SHA256).
 *
 * Input layout: byte 0 picks the webhook (bits 0-1: Telegram POST,
 * WhatsApp POST, WhatsApp verify GET), bit 2 adds an accountId path
 * segment taken from the input, bit 3 spoils the credential (the 401 path);
 * then, with bit 2, the accountId up to '\n'; the rest is the body (for
 * the verify GET: the query string).
 * Asserts what fuzz_http asserts. */
#include <string.h>

#include <sodium.h>

#include "batond.h"
#include "fuzz_server.h"

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
    const uint8_t *p = data + 1, *end = data + size, *account = NULL;
    size_t account_len = 0, body_len;
    struct fbuf req = {0};
    struct fanswer a;
    int kind;
    bool spoil;

    if (size < 1)
        return 0;
    kind = data[0] & 3;
    spoil = data[0] & 8;
    if (data[0] & 4) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        account = p;
        account_len = (size_t)((nl ? nl : end) - p);
        p = nl ? nl + 1 : end;
    }
    body_len = (size_t)(end - p);

    fbuf_fmt(&req, "%s /%s/webhook", kind == 2 || kind == 3 ? "GET" : "POST",
             kind == 0 ? "telegram" : "whatsapp");
    if (account) {
        fbuf_str(&req, "/");
        fbuf_url(&req, account, account_len > 1000 ? 1000 : account_len);
    }
    if (kind >= 2) {
        /* the verification handshake: hub.mode, hub.verify_token, hub.challenge */
        fbuf_str(&req, "?");
        if (kind == 2)
            fbuf_fmt(&req, "hub.mode=subscribe&hub.verify_token=%s&", spoil ? "nope" : FUZZ_WHATSAPP_VERIFY);
        fbuf_url(&req, p, body_len > 4000 ? 4000 : body_len);
        fbuf_str(&req, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    } else {
        fbuf_str(&req, " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n");
        if (kind == 0) {
            fbuf_fmt(&req, "X-Telegram-Bot-Api-Secret-Token: %s\r\n",
                     spoil ? "wrong" : FUZZ_TELEGRAM_SECRET);
        } else {
            unsigned char mac[crypto_auth_hmacsha256_BYTES];
            char hex[2 * sizeof mac + 1];
            crypto_auth_hmacsha256_state st;
            crypto_auth_hmacsha256_init(&st, (const unsigned char *)FUZZ_WHATSAPP_APP_SECRET,
                                        strlen(FUZZ_WHATSAPP_APP_SECRET));
            crypto_auth_hmacsha256_update(&st, p, body_len);
            crypto_auth_hmacsha256_final(&st, mac);
            if (spoil)
                mac[0] ^= 1;
            sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
            fbuf_fmt(&req, "X-Hub-Signature-256: sha256=%s\r\n", hex);
        }
        fbuf_fmt(&req, "Content-Length: %zu\r\n\r\n", body_len);
        fbuf_add(&req, p, body_len);
    }

    fuzz_exchange(req.p, req.n, false, &a);
    fuzz_check(&a, req.p, req.n, true);
    fanswer_free(&a);
    fbuf_free(&req);
    return 0;
}
