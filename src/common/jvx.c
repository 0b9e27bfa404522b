/*
 * jvx.c — helpers on jv values (see jvx.h).
 */
#include "common/jvx.h"

jv cv__jv_deep_copy(jv v)
{
    switch (jv_get_kind(v)) {
    case JV_KIND_STRING: {
        jv r = jv_string_sized(jv_string_value(v), jv_string_length_bytes(jv_copy(v)));
        jv_free(v);
        return r;
    }
    case JV_KIND_ARRAY: {
        int n = jv_array_length(jv_copy(v));
        jv r = jv_array_sized(n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            r = jv_array_append(r, cv__jv_deep_copy(jv_array_get(jv_copy(v), i)));
        jv_free(v);
        return r;
    }
    case JV_KIND_OBJECT: {
        jv r = jv_object();
        jv_object_foreach(v, k, item)
        {
            r = jv_object_set(r, cv__jv_deep_copy(k), cv__jv_deep_copy(item));
        }
        jv_free(v);
        return r;
    }
    default: /* null, booleans, numbers and invalid values carry no shared allocation */
        return v;
    }
}
