/* fields.c -- declarative validation: handlers list their fields, this
 * checks presence, type and range and names the first field that is wrong. */
#include <string.h>

#include "batond.h"

static const char *
type_name(enum field_type t)
{
    switch (t) {
    case F_STR: return "a string";
    case F_INT: return "an integer";
    case F_BOOL: return "a boolean";
    case F_OBJECT: return "an object";
    case F_ARRAY: return "an array";
    case F_ANY: return "a JSON value";
    }
    return "?";
}

int
fields_parse(json_t *obj, const struct field *spec, char *why, size_t n)
{
    for (const struct field *f = spec; f->name; f++) {
        json_t *v = obj ? json_object_get(obj, f->name) : NULL;

        if (f->present)
            *f->present = false;
        /* null counts as absent for optional fields, like Convex's v.optional */
        if (!v || (json_is_null(v) && f->type != F_ANY)) {
            if (f->flags & F_REQUIRED) {
                snprintf(why, n, "field '%s' is required", f->name);
                return -1;
            }
            continue;
        }
        switch (f->type) {
        case F_STR: {
            const char *s = json_string_value(v);
            size_t len = json_string_length(v);
            if (!json_is_string(v))
                goto wrong;
            if (!len && !(f->flags & F_EMPTY_OK)) {
                snprintf(why, n, "field '%s' must not be empty", f->name);
                return -1;
            }
            if (strlen(s) != len) {
                snprintf(why, n, "field '%s' must not contain NUL characters", f->name);
                return -1;
            }
            if (f->max > 0 && (int64_t)len > f->max) {
                snprintf(why, n, "field '%s' is longer than %lld bytes", f->name, (long long)f->max);
                return -1;
            }
            *(const char **)f->out = s;
            break;
        }
        case F_INT: {
            json_int_t x;
            if (json_is_integer(v))
                x = json_integer_value(v);
            else if (json_is_real(v) && json_real_value(v) >= -0x1p63 && json_real_value(v) < 0x1p63 &&
                     json_real_value(v) == (double)(json_int_t)json_real_value(v))
                x = (json_int_t)json_real_value(v);   /* 5.0 from JS clients */
            else
                goto wrong;
            if (x < f->min || x > f->max) {
                snprintf(why, n, "field '%s' must be between %lld and %lld", f->name,
                         (long long)f->min, (long long)f->max);
                return -1;
            }
            *(int64_t *)f->out = x;
            break;
        }
        case F_BOOL:
            if (!json_is_boolean(v))
                goto wrong;
            *(bool *)f->out = json_is_true(v);
            break;
        case F_OBJECT:
            if (!json_is_object(v))
                goto wrong;
            *(json_t **)f->out = v;
            break;
        case F_ARRAY:
            if (!json_is_array(v))
                goto wrong;
            *(json_t **)f->out = v;
            break;
        case F_ANY:
            *(json_t **)f->out = v;
            break;
        }
        if (f->present)
            *f->present = true;
        continue;
    wrong:
        snprintf(why, n, "field '%s' must be %s", f->name, type_name(f->type));
        return -1;
    }
    return 0;
}
