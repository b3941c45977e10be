/* check_fields.c -- the declarative body validator. */
#include <string.h>

#include "batond.h"
#include "harness.h"

static json_t *
J(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    return j;
}

START_TEST(valid_body_fills_outputs)
{
    const char *worker = NULL, *queue = "agent";
    int64_t lock = 30000;
    bool retry = true, got_lock = false;
    json_t *payload = NULL;
    char why[256];
    struct field spec[] = {
        FIELD_STR("workerId", &worker, F_REQUIRED),
        FIELD_STR("queue", &queue, 0),
        {"lockMs", F_INT, 0, &lock, 1, 600000, &got_lock},
        FIELD_BOOL("retryable", &retry, 0),
        FIELD_ANY("payload", &payload, F_REQUIRED),
        FIELD_END,
    };
    json_t *body = J("{\"workerId\":\"w1\",\"lockMs\":5000,\"retryable\":false,\"payload\":[1,2]}");

    ck_assert_int_eq(fields_parse(body, spec, why, sizeof why), 0);
    ck_assert_str_eq(worker, "w1");
    ck_assert_str_eq(queue, "agent");      /* default kept */
    ck_assert_int_eq(lock, 5000);
    ck_assert(got_lock);
    ck_assert(!retry);
    ck_assert(json_is_array(payload));
    json_decref(body);
}
END_TEST

START_TEST(errors_name_the_field)
{
    const char *worker = NULL;
    int64_t lock = 0;
    char why[256];
    struct field spec[] = {
        FIELD_STR("workerId", &worker, F_REQUIRED),
        FIELD_INT("lockMs", &lock, 0, 1, 1000),
        FIELD_END,
    };
    struct {
        const char *body, *expect;
    } cases[] = {
        {"{}", "field 'workerId' is required"},
        {"{\"workerId\":7}", "field 'workerId' must be a string"},
        {"{\"workerId\":\"\"}", "field 'workerId' must not be empty"},
        {"{\"workerId\":\"a\\u0000b\"}", "NUL"},
        {"{\"workerId\":\"w\",\"lockMs\":\"5\"}", "field 'lockMs' must be an integer"},
        {"{\"workerId\":\"w\",\"lockMs\":5000}", "field 'lockMs' must be between 1 and 1000"},
        {"{\"workerId\":\"w\",\"lockMs\":1.5}", "field 'lockMs' must be an integer"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *b = json_loads(cases[i].body, JSON_ALLOW_NUL, NULL);
        ck_assert_ptr_nonnull(b);
        ck_assert_int_eq(fields_parse(b, spec, why, sizeof why), -1);
        ck_assert_msg(strstr(why, cases[i].expect), "%s: got '%s'", cases[i].body, why);
        json_decref(b);
    }
}
END_TEST

START_TEST(null_is_absent_for_optional)
{
    int64_t lock = 42;
    char why[256];
    struct field spec[] = {FIELD_INT("lockMs", &lock, 0, 1, 1000), FIELD_END};
    json_t *b = J("{\"lockMs\":null}");

    ck_assert_int_eq(fields_parse(b, spec, why, sizeof why), 0);
    ck_assert_int_eq(lock, 42);
    ck_assert_int_eq(fields_parse(NULL, spec, why, sizeof why), 0);
    json_decref(b);
}
END_TEST

START_TEST(integers_refuse_reals_out_of_range)
{
    int64_t n = 7;
    char why[256];
    struct field spec[] = {
        FIELD_INT("n", &n, 0, INT64_MIN, INT64_MAX),
        FIELD_END,
    };
    /* beyond int64: refused as not an integer (casting them is undefined) */
    const char *bad[] = {"{\"n\":1e300}", "{\"n\":-1e300}", "{\"n\":9223372036854775808.0}",
                         "{\"n\":-9223372036854777856.0}", "{\"n\":1.5}"};
    json_t *body;

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        body = J(bad[i]);
        ck_assert_int_eq(fields_parse(body, spec, why, sizeof why), -1);
        ck_assert_str_eq(why, "field 'n' must be an integer");
        json_decref(body);
    }
    ck_assert_int_eq(n, 7);
    body = J("{\"n\":-9223372036854775808.0}");     /* -2^63 itself fits */
    ck_assert_int_eq(fields_parse(body, spec, why, sizeof why), 0);
    ck_assert(n == INT64_MIN);
    json_decref(body);
    body = J("{\"n\":4096.0}");
    ck_assert_int_eq(fields_parse(body, spec, why, sizeof why), 0);
    ck_assert_int_eq(n, 4096);
    json_decref(body);
}
END_TEST

Suite *
suite_fields(void)
{
    Suite *s = suite_create("fields");
    TCase *tc = tcase_create("fields");

    tcase_add_test(tc, valid_body_fills_outputs);
    tcase_add_test(tc, errors_name_the_field);
    tcase_add_test(tc, null_is_absent_for_optional);
    tcase_add_test(tc, integers_refuse_reals_out_of_range);
    suite_add_tcase(s, tc);
    return s;
}
