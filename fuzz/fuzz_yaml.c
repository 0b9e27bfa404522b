/*
 * fuzz_yaml.c — libFuzzer target for the YAML 1.2 / JSON reader alone.
 *
 * cv__yaml_parse is much cheaper than a full load (no validation, no jq
 * compile), so this target reaches deep into the reader's handling of
 * anchors, aliases, tags, block scalars, duplicate keys and depth limits at
 * many thousands of executions per second. On success the value and its
 * location map are dumped to JSON and freed; on failure exactly one
 * diagnostic must have been appended.
 */
#include "json/yaml.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    jv out, locs;
    jv diags = jv_array();
    int rc = cv__yaml_parse((const char *)data, size, "fuzz", &out, &locs, &diags);
    if (rc == 0) {
        if (!jv_is_valid(out) || jv_get_kind(locs) != JV_KIND_OBJECT)
            abort();
        free(cv__json_dump(out));  /* consumes out */
        free(cv__json_dump(locs)); /* consumes locs */
        if (jv_array_length(jv_copy(diags)) != 0)
            abort(); /* success with a diagnostic */
    } else {
        if (jv_is_valid(out))
            abort(); /* failure must leave *out invalid */
        jv_free(out);
        jv_free(locs);
        if (jv_array_length(jv_copy(diags)) != 1)
            abort(); /* a failure carries exactly one diagnostic */
    }
    jv_free(diags);
    return 0;
}
