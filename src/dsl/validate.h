/*
 * validate.h — structural validation of a Serverless Workflow 1.0 document.
 *
 * Runs on the jv produced by cv__yaml_parse, before the task tree is built.
 * Checks what the specification's JSON schema (workflow.schema.yaml) requires:
 * required properties, known task types, exactly one task per list item, no
 * unknown properties (unevaluatedProperties: false), value types, enums,
 * name patterns, durations (inline and ISO 8601), URI / URI-template syntax,
 * flow-directive targets that exist in their own list, jq identifiers for
 * `for.each`, `for.at`, `catch.as`, `foreach.item/at`, references to
 * use.errors / use.retries / use.timeouts / use.authentications / use.functions
 * that exist. It does NOT compile expressions (src/expr does that).
 */
#ifndef CV_DSL_VALIDATE_H
#define CV_DSL_VALIDATE_H

#include <jv.h>

/*
 * Validates `doc` (borrowed). `locs` (borrowed) is the pointer → [line, column]
 * map from cv__yaml_parse; `file` labels messages. Appends one diagnostic
 * {file, line, column, path, message} per problem to *diags (consumed and
 * replaced; must be an array). `path` uses the dotted form with indexes:
 * "do[2].route.switch[0].case1.then". line/column come from the nearest
 * located ancestor. Returns the number of problems found (0 = valid).
 */
int cv__dsl_validate(jv doc, jv locs, const char *file, jv *diags);

/* Helpers shared with the loader: JSON pointer "/do/2/x" → "do[2].x" (caller frees). */
char *cv__pointer_to_path(jv doc, const char *pointer);
/* Location lookup: the [line, column] of `pointer` or its nearest ancestor. */
void cv__locate(jv locs, const char *pointer, int *line, int *column);

#endif
