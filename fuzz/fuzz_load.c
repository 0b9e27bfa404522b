/*
 * fuzz_load.c — libFuzzer target for the whole definition loader.
 *
 * Feeds arbitrary bytes to cv_workflow_load (YAML/JSON parse, schema and
 * semantic validation, task tree build, expression registration and bundle
 * compile), formats every diagnostic, and frees everything. A crash, a
 * sanitizer report or a leak here is a bug: the loader is the first thing an
 * untrusted document reaches. Workflows are never run (they could call out).
 * Build with `make fuzz`; run with tests/fuzz-smoke.sh or docs/fuzzing.md.
 */
#include "conveyor.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    int rc = cv_workflow_load((const char *)data, size, "fuzz", &wf, &diags);
    if (rc == CV_OK) {
        if (!wf)
            abort(); /* success must produce a definition */
        jv doc = cv_workflow_document(wf);
        jv_free(doc);
        (void)cv_workflow_namespace(wf);
        (void)cv_workflow_name(wf);
        (void)cv_workflow_version(wf);
    } else if (wf) {
        abort(); /* failure must not leave a definition behind */
    }
    if (jv_get_kind(diags) == JV_KIND_ARRAY) {
        jv_array_foreach(diags, i, d)
        {
            char *m = cv_diag_format(d); /* consumes d */
            free(m);
        }
    } else if (rc != CV_OK && rc != CV_ENOMEM) {
        abort(); /* a refused document must say why */
    }
    jv_free(diags);
    cv_workflow_free(wf);
    return 0;
}
