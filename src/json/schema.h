/*
 * schema.h — JSON Schema validation of workflow data (input, output, export).
 *
 * The common vocabulary of draft 2020-12 that workflow authors use: type
 * (string or array; "integer" accepts integral numbers), properties, required,
 * additionalProperties (bool or schema), items (schema), prefixItems, enum,
 * const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf,
 * minLength, maxLength (in Unicode code points), pattern (ECMA-ish via
 * oniguruma), minItems, maxItems, uniqueItems, minProperties, maxProperties,
 * allOf, anyOf, oneOf, not, $ref to "#/..." pointers within the same schema,
 * $defs/definitions. Also understood because real schemas use them:
 * patternProperties, propertyNames, contains, if/then/else, dependentRequired,
 * unevaluatedProperties, and the older-draft `items: [...]` + additionalItems
 * and boolean exclusiveMinimum/exclusiveMaximum. Unknown keywords are ignored
 * (as the specification says). $ref chains deeper than 64 are reported, not
 * followed, and so is a $ref that comes back to itself on the same value.
 * Costs are bounded: a pattern search gets 1,000,000 backtracking steps
 * (then "could not be evaluated (too complex)"), and a whole validation
 * 100,000 subschema applications plus 100 per node of the instance (then the
 * single message "(root): validation abandoned after N steps: ...").
 */
#ifndef CV_JSON_SCHEMA_H
#define CV_JSON_SCHEMA_H

#include <jv.h>

/*
 * Validates `instance` against `schema`. Both are borrowed (not consumed).
 * Returns jv_null() when valid, else a jv array of strings, each
 * "<json pointer of the instance location>: <message>", e.g.
 * "/customer/age: 12 is less than the minimum 18". At most 20 messages.
 * The root instance location is written "(root)" ("(root): expected object,
 * got string"), since its RFC 6901 pointer is the empty string.
 */
jv cv__schema_validate(jv schema, jv instance);

/* Checks that a schema is itself usable (types of the keywords above).
 * Returns jv_null() or a jv string message. Borrows `schema`. */
jv cv__schema_check(jv schema);

/* 1 when `subject` matches `pattern` (oniguruma, Perl syntax, UTF-8) as a
 * whole, 0 when not, -1 when the pattern does not compile or the match hit
 * the backtracking limits. Compiles the pattern on each call. */
int cv__regex_full_match(const char *pattern, const char *subject);

#endif
