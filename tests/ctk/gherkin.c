/*
 * gherkin.c — reads the subset of Gherkin the Serverless Workflow CTK uses.
 *
 * Supported: `# comments`, `Feature:` with free description lines,
 * `Scenario:` (or `Example:`) blocks with an optional description before the
 * first step, steps introduced by Given, When, Then, And, But or "*", and doc strings
 * opened by """ (optionally followed by a media type: """yaml, """json) and
 * closed by """, each content line losing the opening delimiter's
 * indentation. "And given the workflow input is:" is normalised to "the
 * workflow input is:". Background, Scenario Outline, Examples tables, tags
 * and data tables are not used by the CTK: meeting one fails the scenario (or
 * the file) rather than being ignored, so nothing passes silently.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctk.h"

static char *dup_range(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int starts_with(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

/* Trims spaces, tabs and a CR off both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r'))
        (*n)--;
}

static struct ctk_scenario *add_scenario(struct ctk_feature *f)
{
    struct ctk_scenario *s = realloc(f->scenarios, (f->nscenarios + 1) * sizeof *s);
    if (!s)
        return NULL;
    f->scenarios = s;
    s = &f->scenarios[f->nscenarios++];
    memset(s, 0, sizeof *s);
    return s;
}

static struct ctk_step *add_step(struct ctk_scenario *sc)
{
    struct ctk_step *s = realloc(sc->steps, (sc->nsteps + 1) * sizeof *s);
    if (!s)
        return NULL;
    sc->steps = s;
    s = &sc->steps[sc->nsteps++];
    memset(s, 0, sizeof *s);
    return s;
}

static void scenario_error(struct ctk_scenario *sc, int line, const char *what)
{
    if (sc->error)
        return; /* keep the first problem */
    struct ctk_buf b = {0};
    ctk_buf_printf(&b, "line %d: %s", line, what);
    sc->error = b.p;
}

/* Recognises a step keyword at the start of a trimmed line; returns its length. */
static size_t step_keyword(const char *s, size_t n)
{
    static const char *const kw[] = {"Given ", "When ", "Then ", "And ", "But ", "* "};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (starts_with(s, n, kw[i]))
            return strlen(kw[i]) - 1;
    return 0;
}

int ctk_feature_parse(const char *text, size_t len, struct ctk_feature *out, struct ctk_buf *err)
{
    memset(out, 0, sizeof *out);
    struct ctk_scenario *sc = NULL;
    struct ctk_step *doc_step = NULL; /* the step whose doc string is open */
    size_t doc_indent = 0;
    int doc_line = 0, in_steps = 0;
    struct ctk_buf doc = {0};
    const char *p = text, *end = text + len;
    int line = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *raw = p;
        size_t rawn = nl ? (size_t)(nl - p) : (size_t)(end - p);
        p = nl ? nl + 1 : end;
        line++;
        if (rawn && raw[rawn - 1] == '\r')
            rawn--;
        const char *s = raw;
        size_t n = rawn;
        trim(&s, &n);

        if (doc_step) {
            if (n == 3 && memcmp(s, "\"\"\"", 3) == 0) {
                doc_step->doc = doc.p ? doc.p : dup_range("", 0);
                doc = (struct ctk_buf){0};
                doc_step = NULL;
                continue;
            }
            /* Remove up to doc_indent leading blanks (the opening delimiter's). */
            size_t cut = 0;
            while (cut < doc_indent && cut < rawn && (raw[cut] == ' ' || raw[cut] == '\t'))
                cut++;
            ctk_buf_append(&doc, raw + cut, rawn - cut);
            ctk_buf_append(&doc, "\n", 1);
            continue;
        }
        if (n == 0 || s[0] == '#')
            continue;

        if (starts_with(s, n, "\"\"\"")) {
            struct ctk_step *last = sc && sc->nsteps ? &sc->steps[sc->nsteps - 1] : NULL;
            if (!last || last->doc || last->doc_lang) {
                if (!sc) {
                    ctk_buf_printf(err, "line %d: doc string outside a scenario", line);
                    goto fail;
                }
                scenario_error(sc, line, "doc string without a step before it");
                /* Still consume it so the rest of the file parses. */
                last = add_step(sc);
                if (!last)
                    goto oom;
                last->line = line;
                last->text = dup_range("(stray doc string)", 18);
            }
            last->doc_lang = dup_range(s + 3, n - 3);
            doc_step = last;
            doc_indent = (size_t)(s - raw);
            doc_line = line;
            continue;
        }
        if (starts_with(s, n, "Feature:")) {
            if (out->name) {
                ctk_buf_printf(err, "line %d: a second Feature", line);
                goto fail;
            }
            const char *t = s + 8;
            size_t tn = n - 8;
            trim(&t, &tn);
            out->name = dup_range(t, tn);
            continue;
        }
        if (starts_with(s, n, "Scenario:") || starts_with(s, n, "Example:")) {
            if (!out->name) {
                ctk_buf_printf(err, "line %d: Scenario before Feature", line);
                goto fail;
            }
            size_t k = s[0] == 'S' ? 9 : 8;
            const char *t = s + k;
            size_t tn = n - k;
            trim(&t, &tn);
            sc = add_scenario(out);
            if (!sc)
                goto oom;
            sc->name = dup_range(t, tn);
            sc->line = line;
            in_steps = 0;
            continue;
        }
        if (starts_with(s, n, "Background:") || starts_with(s, n, "Scenario Outline:") ||
            starts_with(s, n, "Scenario Template:") || starts_with(s, n, "Examples:") ||
            starts_with(s, n, "Rule:") || s[0] == '@' || s[0] == '|') {
            if (!sc) {
                ctk_buf_printf(err, "line %d: unsupported Gherkin construct: %.*s", line,
                               (int)n, s);
                goto fail;
            }
            scenario_error(sc, line, "unsupported Gherkin construct");
            continue;
        }
        size_t kn = step_keyword(s, n);
        if (kn) {
            if (!sc) {
                ctk_buf_printf(err, "line %d: step outside a scenario", line);
                goto fail;
            }
            struct ctk_step *st = add_step(sc);
            if (!st)
                goto oom;
            in_steps = 1;
            st->line = line;
            memcpy(st->keyword, s, kn);
            st->keyword[kn] = '\0';
            const char *t = s + kn;
            size_t tn = n - kn;
            trim(&t, &tn);
            /* "And given …", "And when …", "And then …": a second keyword. */
            if (strcmp(st->keyword, "And") == 0 || strcmp(st->keyword, "But") == 0 ||
                strcmp(st->keyword, "*") == 0) {
                static const char *const second[] = {"given ", "when ", "then "};
                for (size_t i = 0; i < 3; i++) {
                    size_t k = strlen(second[i]);
                    if (tn > k && strncasecmp(t, second[i], k) == 0) {
                        t += k;
                        tn -= k;
                        trim(&t, &tn);
                        break;
                    }
                }
            }
            st->text = dup_range(t, tn);
            continue;
        }
        /* Free text: allowed as the feature's or a scenario's description,
         * before its first step; anywhere else it is a step we do not know. */
        if (!sc || !in_steps)
            continue;
        scenario_error(sc, line, "a line that is not a step");
        struct ctk_step *st = add_step(sc);
        if (!st)
            goto oom;
        st->line = line;
        st->text = dup_range(s, n);
    }
    if (doc_step) {
        ctk_buf_printf(err, "line %d: doc string never closed", doc_line);
        goto fail;
    }
    if (!out->name) {
        ctk_buf_printf(err, "no Feature line");
        goto fail;
    }
    ctk_buf_cleanup(&doc);
    return 0;
oom:
    ctk_buf_printf(err, "out of memory at line %d", line);
fail:
    ctk_buf_cleanup(&doc);
    ctk_feature_cleanup(out);
    return -1;
}

void ctk_feature_cleanup(struct ctk_feature *f)
{
    for (size_t i = 0; i < f->nscenarios; i++) {
        struct ctk_scenario *sc = &f->scenarios[i];
        for (size_t j = 0; j < sc->nsteps; j++) {
            free(sc->steps[j].text);
            free(sc->steps[j].doc);
            free(sc->steps[j].doc_lang);
        }
        free(sc->steps);
        free(sc->name);
        free(sc->error);
    }
    free(f->scenarios);
    free(f->name);
    memset(f, 0, sizeof *f);
}
