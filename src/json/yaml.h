/*
 * yaml.h — YAML 1.2 / JSON text to jq `jv`, with source locations.
 *
 * The only way documents enter conveyor. Plain scalars resolve by the YAML 1.2
 * core schema (only true/false/True/FALSE... are booleans, `on`/`yes`/`no` are
 * strings, `1.0.3` is a string, null/~/empty are null, ints and floats as the
 * core schema says); quoted and block scalars are always strings. Duplicate
 * mapping keys are an error. Anchors and aliases are resolved. Non-string keys
 * are turned into their text. Documents deeper than a fixed limit are refused.
 *
 * Details (yaml.c has the reasons): the stream must hold exactly one document
 * (none: "empty document"; a second "---": "expected a single document");
 * NUL bytes and invalid UTF-8 are errors; `.inf`/`.nan` stay strings; numbers
 * are doubles as in jq; limits are 256 levels, 1,000,000 nodes counting
 * alias expansions, 64 MiB of scalar text repeated by aliases and, when
 * locations are asked for, 64 MiB of JSON pointer text in all; tags
 * !!str/!!int/!!float/!!bool/!!null are honoured, other tags ignored.
 * Messages come from libfyaml, or say "duplicate key 'x'".
 */
#ifndef CV_JSON_YAML_H
#define CV_JSON_YAML_H

#include <jv.h>
#include <stddef.h>

/*
 * Parses one document. `name` labels diagnostics (a file path). On success
 * returns 0, *out is the value and, when `locs` is not NULL, *locs is an object
 * mapping RFC 6901 JSON pointers of every node ("" for the root, "/do/0/x") to
 * [line, column] (1-based) where that node starts; for a mapping value the
 * location is that of the value. On failure returns CV_EPARSE, *out is
 * jv_invalid(), and one diagnostic object {file, line, column, path, message}
 * is appended to *diags (which must be a valid array; consumed and replaced).
 * `text` need not be NUL-terminated.
 */
int cv__yaml_parse(const char *text, size_t len, const char *name, jv *out, jv *locs,
                   jv *diags);

/* Serializes a jv as JSON text on one line (a convenience; caller frees). */
char *cv__json_dump(jv v /* consumed */);

#endif
