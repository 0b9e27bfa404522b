/*
 * extract.h — the field extractor behind the catalog function `extract`
 * (issue 4, item 1; docs/extract.md). Given a text and a set of field
 * definitions (built-in kinds money, date, email, phone, iban, card, url, and
 * user PCRE2 patterns with normalizers and validators), returns
 * {fields: {name: value|null}, missing: [name...], confidence: {name: c}}.
 *
 * An extractor is compiled once (regexes JIT-compiled) and is then read-only:
 * one extractor may be used by several threads at once, each call allocates
 * its own match data. Nothing here touches the store or the engine.
 */
#ifndef CV_ML_EXTRACT_H
#define CV_ML_EXTRACT_H

#include <jv.h>
#include <stddef.h>

typedef struct cv_extractor cv_extractor;

/* Texts longer than this are refused (validation error), never truncated. */
#define CV_EXTRACT_MAX_TEXT (1u << 20)

/*
 * Compiles an extractor from its definition `def` (consumed): an object
 * {name?, options?: {day_first, currency, region}, fields: [{name, kind,
 * required?, pattern?, group?, normalize?, validate?, day_first?, currency?,
 * region?}]}. `locs` (consumed; may be jv_null()) maps JSON pointers to
 * [line, column] as cv__yaml_parse returns them, and `file` (borrowed, may be
 * NULL) names the source: errors then read "file:line:column: message".
 * Returns 0 and *out (free with cv__extractor_free), or CV_EVALIDATE and *err
 * set to a configuration error {type, status: 400, title, detail}.
 */
int cv__extractor_new(jv def, jv locs, const char *file, cv_extractor **out, jv *err);

/* Same, from YAML (or JSON) text; a YAML syntax error is also a located
 * configuration error (CV_EPARSE). `text` need not be NUL-terminated. */
int cv__extractor_load(const char *text, size_t len, const char *file, cv_extractor **out,
                       jv *err);

/* Frees an extractor (NULL is fine). */
void cv__extractor_free(cv_extractor *x);

/*
 * Runs the extractor on `text` (borrowed, `len` bytes, any bytes). Returns
 * the result object, or an invalid jv whose message (jv_invalid_get_msg) is an
 * error object: validation 400 for a text over CV_EXTRACT_MAX_TEXT, runtime
 * 500 when a pattern hit the match limits or the time budget. Deterministic.
 */
jv cv__extract_run(const cv_extractor *x, const char *text, size_t len);

/* Convenience for `call: extract` with inline `with: {fields, text}`:
 * `args` consumed; {fields: [...] | extractor definition, text: string}.
 * Returns the result or an invalid jv carrying an error object. */
jv cv__extract_call(jv args);

/* ---- stored extractors (a registry model of kind "extractor";
 * docs/extract.md, "Stored extractors") ---- */

/* The names of x's fields in definition order (all, or only the required
 * ones): a new array the caller owns. */
jv cv__extractor_fields(const cv_extractor *x, int required_only);

/*
 * Checks a definition as it will be stored (`text`, `len` bytes, borrowed;
 * `file` names it in errors) by compiling it, and describes it for its model
 * card: *card = {kind: "extractor", definitionName? (its `name`), fields:
 * [names], required: [names], modelSha256 (of the text as given: the stored
 * file is the definition)}. Returns 0, or cv__extractor_load's code with
 * *err = its located configuration error (and *card invalid).
 */
int cv__extractor_describe(const char *text, size_t len, const char *file, jv *card, jv *err);

#endif
