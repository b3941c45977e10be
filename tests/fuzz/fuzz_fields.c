/* fuzz_fields.c -- libFuzzer target: fields_parse() (server/fields.c) over
 * JSON parsed from the input, against specs holding every field type and
 * flag. Each result is compared with a plain model of the rules of
 * batond.h (presence, type, emptiness, NUL, length, integer range, 5.0 as
 * an integer, null as absent), and every stored output is checked.
 *
 * Input layout: byte 0 picks the spec (bits 0-1) and whether the JSON may
 * be any value, not only an object (bit 2); the rest is JSON text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batond.h"

#define NF 8
static const char *const names[NF] = {"s", "e", "i", "j", "b", "a", "o", "r"};
static const enum field_type types[NF] = {F_STR, F_STR, F_INT, F_INT, F_BOOL, F_ANY, F_OBJECT, F_ARRAY};
static const int64_t mins[NF] = {0, 0, -5, INT64_MIN, 0, 0, 0, 0};
static const int64_t maxs[NF] = {16, 0, 1000, INT64_MAX, 0, 0, 0, 0};
static const unsigned base_flags[NF] = {0, F_EMPTY_OK, 0, 0, 0, 0, 0, 0};

/* the integer a JSON number stands for, per batond.h (5.0 counts) */
static bool
model_int(json_t *v, int64_t *x)
{
    double d;

    if (json_is_integer(v)) {
        *x = json_integer_value(v);
        return true;
    }
    if (!json_is_real(v))
        return false;
    d = json_real_value(v);
    if (d != floor(d) || d < -0x1p63 || d >= 0x1p63)
        return false;
    *x = (int64_t)d;
    return true;
}

/* Model: 0 when obj passes spec, else the index of the first bad field. */
static int
model(json_t *obj, const struct field *spec, int nf, bool *present)
{
    for (int k = 0; k < nf; k++) {
        const struct field *f = &spec[k];
        json_t *v = json_is_object(obj) ? json_object_get(obj, f->name) : NULL;
        int64_t x;

        present[k] = false;
        if (!v || (json_is_null(v) && f->type != F_ANY)) {
            if (f->flags & F_REQUIRED)
                return k + 1;
            continue;
        }
        switch (f->type) {
        case F_STR:
            if (!json_is_string(v) || (!json_string_length(v) && !(f->flags & F_EMPTY_OK)) ||
                strlen(json_string_value(v)) != json_string_length(v) ||
                (f->max > 0 && (int64_t)json_string_length(v) > f->max))
                return k + 1;
            break;
        case F_INT:
            if (!model_int(v, &x) || x < f->min || x > f->max)
                return k + 1;
            break;
        case F_BOOL: if (!json_is_boolean(v)) return k + 1; break;
        case F_OBJECT: if (!json_is_object(v)) return k + 1; break;
        case F_ARRAY: if (!json_is_array(v)) return k + 1; break;
        case F_ANY: break;
        }
        present[k] = true;
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct field spec[NF + 1];
    const char *str[NF];
    int64_t ints[NF];
    bool bools[NF], present[NF], want_present[NF];
    json_t *js[NF], *obj;
    char why[256];
    int mode, rc, bad;
    static const char sentinel[] = "unset";

    if (size < 1)
        return 0;
    mode = data[0] & 3;
    obj = json_loadb((const char *)data + 1, size - 1, (data[0] & 4) ? JSON_DECODE_ANY : 0, NULL);
    for (int k = 0; k < NF; k++) {
        /* mode 0: as given; 1: every field required; 2: all optional with
         * present flags; 3: required strings and ints, the rest optional */
        unsigned fl = base_flags[k];
        if (mode == 1 || (mode == 3 && (types[k] == F_STR || types[k] == F_INT)))
            fl |= F_REQUIRED;
        if (mode == 0 && k == 0)
            fl |= F_REQUIRED;
        spec[k] = (struct field){names[k], types[k], fl, NULL, mins[k], maxs[k], NULL};
        str[k] = sentinel;
        ints[k] = 4242;
        bools[k] = false;
        js[k] = NULL;
        switch (types[k]) {
        case F_STR: spec[k].out = &str[k]; break;
        case F_INT: spec[k].out = &ints[k]; break;
        case F_BOOL: spec[k].out = &bools[k]; break;
        default: spec[k].out = &js[k]; break;
        }
        if (mode >= 2)
            spec[k].present = &present[k];
        present[k] = true;      /* must be reset by fields_parse */
    }
    spec[NF] = (struct field)FIELD_END;

    why[0] = 0;
    rc = fields_parse(obj, spec, why, sizeof why);
    bad = model(obj, spec, NF, want_present);
    if ((rc == 0) != (bad == 0)) {
        fprintf(stderr, "fields_parse returned %d, the model says field %d is %s (%s)\n", rc, bad,
                bad ? "wrong" : "fine", why);
        abort();
    }
    if (rc < 0) {
        char quoted[8];
        snprintf(quoted, sizeof quoted, "'%s'", names[bad - 1]);
        if (!strstr(why, quoted)) {
            fprintf(stderr, "the reason '%s' does not name field %s\n", why, quoted);
            abort();
        }
    } else {
        for (int k = 0; k < NF; k++) {
            json_t *v = json_object_get(obj, names[k]);
            int64_t x;
            if (mode >= 2 && present[k] != want_present[k]) {
                fprintf(stderr, "present of %s is %d, expected %d\n", names[k], present[k], want_present[k]);
                abort();
            }
            if (!want_present[k]) {
                if (str[k] != sentinel || ints[k] != 4242 || js[k] || bools[k]) {
                    fprintf(stderr, "absent field %s was stored\n", names[k]);
                    abort();
                }
                continue;
            }
            switch (types[k]) {
            case F_STR:
                if (str[k] != json_string_value(v))
                    abort();
                break;
            case F_INT:
                if (!model_int(v, &x) || ints[k] != x || x < mins[k] || x > maxs[k])
                    abort();
                break;
            case F_BOOL:
                if (bools[k] != json_is_true(v))
                    abort();
                break;
            default:
                if (js[k] != v)
                    abort();
                break;
            }
        }
    }
    json_decref(obj);
    return 0;
}
