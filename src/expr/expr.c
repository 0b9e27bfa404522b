/*
 * expr.c — compiling and evaluating runtime expressions (see expr.h).
 *
 * Layout of the bundle program (one per workflow definition):
 *
 *   <sandbox defs>
 *   .[1] as $__dot | .[2] as $context | ... | .[10] as $__scope | .[0] as $__i |
 *   if $__i < 8 then (if $__i < 4 then ... ) else ... end      (binary dispatch)
 *
 * and each leaf is
 *
 *   ($__scope.color as $color | $__dot | (
 *   <expression text>
 *   ))
 *
 * with the text on lines of its own, so a compile error's "line N" maps back
 * to the expression, and a trailing `# comment` cannot swallow the closing
 * parenthesis. Evaluation passes [idx, ., $context, ..., scope] as the input.
 *
 * Threads. One set is evaluated by many threads at once, and libjq 1.6's
 * reference counts are plain ints: a jv whose count two threads change at the
 * same time (jv_copy, jv_free, and jv_object_get, which also caches the key's
 * hash in it) loses updates, is freed while still in use, and the heap is
 * corrupted. libjq itself keeps no global state that compiling or running
 * needs (checked under ThreadSanitizer with an instrumented libjq 1.6), so
 * states compile on any thread without a lock. What must hold instead:
 *   - after cv__exprset_compile, evaluation touches no jv the set owns: a
 *     fast-path operand is C data from which each evaluation builds its own
 *     values, and whether an expression has scope variables is a plain int;
 *   - no jv a jq state owns leaves the thread that has it checked out: libjq
 *     returns its program's constants by reference (`"yes"`, the keys of
 *     `{tag: ...}`), so a result is copied free of them (unshare_value) before
 *     the state goes back to the pool;
 *   - the values a caller passes are its own: expr.c only copies and frees
 *     them on the calling thread.
 *
 * Sections: lexical guard, fast path, bundle generation, evaluation.
 */
#include "expr/expr.h"

#include "conveyor.h"
#include "effects/effects.h"

#include <jq.h>
#include <oniguruma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const var_names[CV_VAR_COUNT] = {
    "context", "input", "output", "secrets", "task", "workflow", "runtime", "authorization",
};

enum fast_kind { FAST_NONE, FAST_LITERAL, FAST_PATH, FAST_BINOP };

/* One step of a fast path: an object key, or an array index when key is NULL. */
struct step {
    char *key;
    int len;
    int index;
};

/* One side of a fast expression: a literal, or a path from `.`, a runtime
 * argument or a scope variable. Plain C data, no jv: every evaluation, on
 * whichever thread, builds the values it needs from it (see "Threads"). */
struct operand {
    int kind;           /* 0 (unused), FAST_LITERAL or FAST_PATH */
    int base;           /* -1: `.`, 0..CV_VAR_COUNT-1: $var, CV_VAR_COUNT: scope var */
    char *scope;        /* scope variable name when base == CV_VAR_COUNT, else NULL */
    int scope_len;
    jv scalar;          /* FAST_LITERAL number, boolean or null: not reference counted */
    char *text;         /* FAST_LITERAL string: its bytes; array/object: its JSON text */
    int text_len;
    jv_kind text_kind;  /* with text: JV_KIND_STRING, JV_KIND_ARRAY or JV_KIND_OBJECT */
    struct step *steps; /* FAST_PATH */
    int nsteps;
};

enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_AND, OP_OR };

struct expr {
    char *text;
    char *pointer;
    jv scopevars;    /* array of names; not touched once compiled (see "Threads") */
    int scoped;      /* scopevars is not empty */
    unsigned uses;   /* bit i: uses $<var_names[i]> */
    int fast;        /* enum fast_kind: evaluated without jq */
    struct operand lhs, rhs; /* FAST_LITERAL/FAST_PATH: lhs only */
    int op;          /* FAST_BINOP: enum binop */
    int loose;       /* loose mode: a failed evaluation yields the text itself */
    int wrap;        /* run to completion (may_track_paths) */
    int chunk;       /* the chunk whose program holds it */
    int first_line;  /* lines of the text in its chunk's program */
    int last_line;
};

struct pooled_state {
    jq_state *jq;
    struct pooled_state *next;
};

/*
 * A chunk is one compiled jq program holding up to CHUNK_SIZE expressions.
 * Chunking bounds the dispatch depth (each `if` level costs about 0.25 us)
 * and keeps every program under libjq 1.6's 64 KiB bytecode limit per
 * function. Chunks of fast-path expressions are compiled lazily: they only
 * run when a fast path defers to jq (a type mismatch, for jq's exact error).
 */
#define CHUNK_SIZE 128

struct chunk {
    int *idx; /* sorted expression indexes */
    int n;
    char *program;
    int lazy;     /* not compiled at load time (fast-path expressions) */
    struct pooled_state *free_states;
    int nstates;
};

struct cv_exprset {
    struct expr *items;
    int count, cap;
    int nfast;
    struct chunk *chunks;
    int nchunks, capchunks;
    int compiled;
    pthread_mutex_t lock;
};

/* ---- lexical guard ---------------------------------------------------------
 * A small jq tokenizer: enough to tell code from string literals (including
 * "\(...)" interpolation) and comments, so that we can refuse builtins that
 * reach the host or can hang libjq (which has no way to interrupt a program).
 */

struct tok {
    int kind; /* 'i' identifier, '$' variable, 's' string literal, 'p' punctuation, 0 end */
    const char *start;
    size_t len;
    int after_dot; /* identifier directly after '.', i.e. a field name */
};

struct lexer {
    const char *p;
    const char *end;
    int interp_depth[32]; /* paren depth at which each open interpolation resumes its string */
    int ninterp;
    int paren;
    int prev_dot;
};

static int is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_ident_char(int c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

/* Skips the rest of a string literal starting after its opening quote (or after
 * an interpolation's closing paren). Stops after the closing quote, or at "\("
 * (pushing an interpolation). */
static void lex_string_rest(struct lexer *lx)
{
    while (lx->p < lx->end) {
        char c = *lx->p++;
        if (c == '"')
            return;
        if (c == '\\' && lx->p < lx->end) {
            if (*lx->p == '(' && lx->ninterp < 32) {
                lx->p++;
                lx->interp_depth[lx->ninterp++] = lx->paren;
                lx->paren++;
                return;
            }
            lx->p++;
        }
    }
}

static struct tok lex_next(struct lexer *lx)
{
    struct tok t = {0, NULL, 0, 0};
    for (;;) {
        while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\n' || *lx->p == '\r'))
            lx->p++;
        if (lx->p < lx->end && *lx->p == '#') {
            while (lx->p < lx->end && *lx->p != '\n')
                lx->p++;
            continue;
        }
        break;
    }
    if (lx->p >= lx->end)
        return t;
    const char *s = lx->p;
    int c = (unsigned char)*s;
    int after_dot = lx->prev_dot;
    lx->prev_dot = 0;
    if (c == '"') {
        lx->p++;
        lex_string_rest(lx);
        t.kind = 's';
    } else if (c == '$' || is_ident_start(c)) {
        lx->p++;
        while (lx->p < lx->end && (is_ident_char((unsigned char)*lx->p) ||
                                   (*lx->p == ':' && lx->p + 1 < lx->end && lx->p[1] == ':')))
            lx->p += (*lx->p == ':') ? 2 : 1;
        t.kind = c == '$' ? '$' : 'i';
        t.after_dot = after_dot;
    } else {
        lx->p++;
        t.kind = 'p';
        if (c == '.')
            lx->prev_dot = 1;
        if (c == '(' || c == '[' || c == '{')
            lx->paren++;
        if (c == ')' || c == ']' || c == '}') {
            lx->paren--;
            if (c == ')' && lx->ninterp > 0 && lx->paren == lx->interp_depth[lx->ninterp - 1]) {
                lx->ninterp--;
                lex_string_rest(lx); /* back inside the string */
                t.kind = 's';
            }
        }
    }
    t.start = s;
    t.len = (size_t)(lx->p - s);
    return t;
}

static int tok_is(const struct tok *t, const char *word)
{
    return t->len == strlen(word) && memcmp(t->start, word, t->len) == 0;
}

/* Decodes a simple string literal token ("..." without interpolation) into a
 * jv string, or jv_invalid() when it is not simple. */
static jv literal_string(const struct tok *t)
{
    if (t->kind != 's' || t->len < 2 || t->start[0] != '"' || t->start[t->len - 1] != '"')
        return jv_invalid();
    for (size_t i = 1; i + 1 < t->len; i++)
        if (t->start[i] == '\\' && t->start[i + 1] == '(')
            return jv_invalid();
    jv v = jv_parse_sized(t->start, (int)t->len);
    if (jv_get_kind(v) != JV_KIND_STRING) {
        jv_free(v);
        return jv_invalid();
    }
    return v;
}

/* Does the regular expression `re` ever match an empty string? Probed with
 * oniguruma (the engine jq uses) on a few subjects at every position. */
static int regex_matches_empty(jv re /* borrowed */)
{
    const char *pat = jv_string_value(re);
    regex_t *reg;
    OnigErrorInfo einfo;
    if (onig_new(&reg, (const UChar *)pat, (const UChar *)pat + strlen(pat), ONIG_OPTION_CAPTURE_GROUP,
                 ONIG_ENCODING_UTF8, ONIG_SYNTAX_PERL_NG, &einfo) != ONIG_NORMAL)
        return 0; /* jq will report the bad pattern itself */
    static const char *const subjects[] = {"", "a", "abc ABC 123 _-./\n\t\"{}[]()", "\xc3\xa9t\xc3\xa9"};
    int empty = 0;
    OnigRegion *region = onig_region_new();
    for (size_t k = 0; k < sizeof subjects / sizeof *subjects && !empty; k++) {
        const UChar *str = (const UChar *)subjects[k];
        const UChar *end = str + strlen(subjects[k]);
        for (const UChar *at = str; at <= end && !empty; at++) {
            int r = onig_search(reg, str, end, at, end, region, ONIG_OPTION_NONE);
            if (r >= 0 && region->end[0] == region->beg[0])
                empty = 1;
            onig_region_free(region, 0);
            if (r < 0)
                break;
        }
    }
    onig_region_free(region, 1);
    onig_free(reg);
    return empty;
}

/* Splits the top-level arguments of a call whose '(' was just consumed: returns
 * the number of arguments and, for each, its first token and whether it is a
 * single token. Leaves the lexer after the closing ')'. */
struct callargs {
    int n;
    struct tok first[4];
    int single[4];
};

static void lex_callargs(struct lexer *lx, struct callargs *a)
{
    memset(a, 0, sizeof *a);
    int depth = lx->paren; /* already incremented for the '(' */
    int ntok = 0;
    for (;;) {
        struct tok t = lex_next(lx);
        if (!t.kind)
            return;
        if (t.kind == 'p' && *t.start == ')' && lx->paren == depth - 1) {
            if (ntok)
                a->n++;
            return;
        }
        if (t.kind == 'p' && *t.start == ';' && lx->paren == depth) {
            a->n++;
            ntok = 0;
            continue;
        }
        if (a->n < 4) {
            if (ntok == 0) {
                a->first[a->n] = t;
                a->single[a->n] = 1;
            } else {
                a->single[a->n] = 0;
            }
        }
        ntok++;
    }
}

/* Refuses what the sandbox forbids. Returns NULL or a message (static or in buf). */
static const char *guard(const char *text, char *buf, size_t bufsz)
{
    static const char *const forbidden[] = {
        "input", "inputs", "input_filename", "input_line_number", "import", "include",
        "halt", "halt_error", "get_search_list", "modulemeta", "$__prog_args", "debug", "stderr",
        "_input",
    };
    static const char *const unbounded[] = {"repeat", "infinite", "while", "until"};
    struct lexer lx = {.p = text, .end = text + strlen(text)};
    struct { const char *name; size_t len; int body_depth; int in_body; } defs[16];
    int ndefs = 0;
    struct tok prev = {0, NULL, 0, 0};
    for (;;) {
        struct tok t = lex_next(&lx);
        if (!t.kind)
            break;
        if ((t.kind == 'i' || t.kind == '$') && !t.after_dot) {
            /* object keys such as {input: 1} are not calls */
            const char *q = lx.p;
            while (q < lx.end && (*q == ' ' || *q == '\t'))
                q++;
            int is_key = q < lx.end && *q == ':' && t.kind == 'i';
            if (!is_key) {
                for (size_t i = 0; i < sizeof forbidden / sizeof *forbidden; i++)
                    if (tok_is(&t, forbidden[i])) {
                        snprintf(buf, bufsz, "'%s' is not available in workflow expressions", forbidden[i]);
                        return buf;
                    }
                for (size_t i = 0; i < sizeof unbounded / sizeof *unbounded; i++)
                    if (tok_is(&t, unbounded[i])) {
                        snprintf(buf, bufsz,
                                 "'%s' is refused: it can loop forever and a running jq program cannot be "
                                 "interrupted",
                                 unbounded[i]);
                        return buf;
                    }
                if (tok_is(&t, "recurse") && lx.p < lx.end && *lx.p == '(') {
                    return "'recurse(f)' is refused: it can recurse forever and a running jq program cannot "
                           "be interrupted (use 'recurse' or '..')";
                }
                /* a call to a function whose body we are in: unbounded recursion */
                for (int d = 0; d < ndefs; d++)
                    if (defs[d].in_body && t.len == defs[d].len && memcmp(t.start, defs[d].name, t.len) == 0 &&
                        !(prev.kind == 'i' && tok_is(&prev, "def"))) {
                        snprintf(buf, bufsz,
                                 "recursive function '%.*s' is refused: unbounded recursion aborts the jq "
                                 "evaluator",
                                 (int)t.len, t.start);
                        return buf;
                    }
                if ((tok_is(&t, "gsub") || tok_is(&t, "sub")) && lx.p < lx.end && *lx.p == '(') {
                    int global = tok_is(&t, "gsub");
                    struct tok open = lex_next(&lx);
                    (void)open;
                    struct callargs a;
                    lex_callargs(&lx, &a);
                    if (!global && a.n >= 3) {
                        jv flags = a.single[2] ? literal_string(&a.first[2]) : jv_invalid();
                        if (!jv_is_valid(flags))
                            global = 1; /* flags not known statically */
                        else
                            global = strchr(jv_string_value(flags), 'g') != NULL;
                        jv_free(flags);
                    }
                    if (global) {
                        jv re = (a.n >= 1 && a.single[0]) ? literal_string(&a.first[0]) : jv_invalid();
                        if (!jv_is_valid(re))
                            return "a global substitution (gsub, or sub with \"g\") needs a literal pattern: "
                                   "jq 1.6 loops forever on a pattern that matches the empty string";
                        int empty = regex_matches_empty(re); /* borrows */
                        jv_free(re);
                        if (empty)
                            return "this gsub pattern can match the empty string, which makes jq 1.6 loop "
                                   "forever";
                    }
                    prev = t;
                    continue;
                }
            }
        }
        /* track `def name...: body;` extents */
        if (t.kind == 'i' && tok_is(&prev, "def") && ndefs == 16)
            return "more than 16 function definitions in one expression";
        if (t.kind == 'i' && tok_is(&prev, "def")) {
            defs[ndefs].name = t.start;
            defs[ndefs].len = t.len;
            defs[ndefs].body_depth = lx.paren;
            defs[ndefs].in_body = 0;
            ndefs++;
        } else if (t.kind == 'p' && *t.start == ':' && ndefs > 0 && !defs[ndefs - 1].in_body &&
                   lx.paren == defs[ndefs - 1].body_depth) {
            defs[ndefs - 1].in_body = 1;
        } else if (t.kind == 'p' && *t.start == ';') {
            /* nested defs have entries of their own, so a ';' at a body's
             * depth closes the innermost body still open there */
            for (int d = ndefs - 1; d >= 0; d--) {
                if (!defs[d].in_body || lx.paren != defs[d].body_depth)
                    continue;
                defs[d].in_body = 0;
                break;
            }
        }
        prev = t;
    }
    return NULL;
}

/*
 * Can this expression enter libjq's path tracking (path(f), paths, del, any
 * assignment)? Taking the first result of such a program and restarting the
 * state later aborts libjq 1.6 (`stack_restore: path_len == 0`), so those
 * expressions are wrapped to run to completion (label/break, about 1.5 us).
 * Other expressions may leave fork points pending; restarting is safe then.
 * A superset is harmless (only slower).
 */
static int may_track_paths(const char *text)
{
    static const char *const words[] = {"path", "paths", "leaf_paths", "del", "_assign", "_modify",
                                        "map_values", "from_entries", "with_entries", "tostream",
                                        "INDEX", "getpath", "fromstream", "truncate_stream"};
    struct lexer lx = {.p = text, .end = text + strlen(text)};
    for (;;) {
        struct tok t = lex_next(&lx);
        if (!t.kind)
            return 0;
        if (t.kind == 'i' && !t.after_dot)
            for (size_t i = 0; i < sizeof words / sizeof *words; i++)
                if (tok_is(&t, words[i]))
                    return 1;
        if (t.kind == 'p' && *t.start == '=') {
            char before = t.start > text ? t.start[-1] : 0;
            char after = t.start + 1 < lx.end ? t.start[1] : 0;
            if (after != '=' && before != '=' && before != '!' && before != '<' && before != '>')
                return 1; /* =, |=, +=, -=, *=, /=, %=, //= */
            if (after == '=')
                lex_next(&lx); /* the second '=' of == */
        }
    }
}

/* Which runtime arguments the text mentions (a superset is harmless). */
static unsigned uses_of(const char *text)
{
    unsigned m = 0;
    for (int i = 0; i < CV_VAR_COUNT; i++) {
        size_t n = strlen(var_names[i]);
        for (const char *p = strchr(text, '$'); p; p = strchr(p + 1, '$'))
            if (strncmp(p + 1, var_names[i], n) == 0 && !is_ident_char((unsigned char)p[1 + n])) {
                m |= 1u << i;
                break;
            }
    }
    return m;
}

/* ---- fast path ---------------------------------------------------------------
 * `.`, `.a.b[0]."c d"`, `$var.path` and JSON literals are evaluated directly on
 * jv values. Anything unusual (a type mismatch, a negative index) falls back
 * to jq so that messages and semantics stay exactly jq's.
 */

static void operand_release(struct operand *o)
{
    free(o->scope);
    free(o->text);
    for (int i = 0; i < o->nsteps; i++)
        free(o->steps[i].key);
    free(o->steps);
    memset(o, 0, sizeof *o);
    o->scalar = jv_null();
}

/* Appends one step to o's path; the key (NULL for an index) is copied.
 * Returns 0, or -1 when out of memory. */
static int add_step(struct operand *o, const char *key, int len, int index)
{
    struct step *st = realloc(o->steps, (size_t)(o->nsteps + 1) * sizeof *st);
    if (!st)
        return -1;
    o->steps = st;
    st = &o->steps[o->nsteps];
    st->key = NULL;
    st->len = len;
    st->index = index;
    if (key && !(st->key = strndup(key, (size_t)len)))
        return -1;
    o->nsteps++;
    return 0;
}

/* Parses [p, end) as one fast operand into o (zeroed, or emptied by
 * operand_release). Returns 1, or 0 (nothing left allocated): not a fast
 * operand, or out of memory (jq evaluates it then). The jv values parsed here
 * are freed before returning: an operand keeps C data only. */
static int parse_operand(jv scopevars /* borrowed */, const char *p, const char *end, struct operand *o)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        end--;
    operand_release(o);
    if (p == end)
        return 0;
    /* JSON literals: numbers, strings without escapes, true/false/null, and
     * JSON arrays/objects (the same value in jq) */
    if (*p == '"' || *p == '-' || *p == '[' || *p == '{' || (*p >= '0' && *p <= '9') ||
        (end - p == 4 && !memcmp(p, "true", 4)) || (end - p == 5 && !memcmp(p, "false", 5)) ||
        (end - p == 4 && !memcmp(p, "null", 4))) {
        for (const char *q = p; q < end; q++)
            if (*q == '\\' || *q == '#' || *q == '|' || *q == '$' || *q == '(')
                return 0; /* escapes may hide interpolation; anything else compound goes to jq */
        if (*p == '{') /* jq object keys may be bare words; only strict JSON is a literal */
            for (const char *q = p + 1; q < end && *q != '"'; q++)
                if (*q != ' ' && *q != '}')
                    return 0;
        jv v = jv_parse_sized(p, (int)(end - p));
        jv_kind k = jv_get_kind(v);
        if (k == JV_KIND_INVALID) {
            jv_free(v);
            return 0;
        }
        if (k == JV_KIND_NUMBER || k == JV_KIND_TRUE || k == JV_KIND_FALSE || k == JV_KIND_NULL) {
            o->scalar = v; /* not reference counted: shared freely */
        } else {
            if (k == JV_KIND_STRING) { /* no escapes: the bytes between the quotes */
                o->text_len = jv_string_length_bytes(jv_copy(v));
                o->text = strndup(jv_string_value(v), (size_t)o->text_len);
            } else { /* rebuilt from its text by every evaluation */
                o->text_len = (int)(end - p);
                o->text = strndup(p, (size_t)o->text_len);
            }
            jv_free(v);
            if (!o->text)
                return 0;
            o->text_kind = k;
        }
        o->kind = FAST_LITERAL;
        return 1;
    }
    if (*p == '.') {
        o->base = -1;
    } else if (*p == '$') {
        const char *q = p + 1;
        while (q < end && is_ident_char((unsigned char)*q))
            q++;
        if (q == p + 1)
            return 0;
        int len = (int)(q - p - 1);
        /* scope variables are bound after the runtime arguments in the
         * bundle, so they shadow them: look them up first, as jq would */
        o->base = -2;
        jv_array_foreach(scopevars, i, name)
        {
            if (jv_get_kind(name) == JV_KIND_STRING && jv_string_length_bytes(jv_copy(name)) == len &&
                !memcmp(jv_string_value(name), p + 1, (size_t)len))
                o->base = CV_VAR_COUNT;
            jv_free(name);
        }
        if (o->base == CV_VAR_COUNT) {
            o->scope_len = len;
            if (!(o->scope = strndup(p + 1, (size_t)len)))
                return 0;
        } else {
            for (int i = 0; i < CV_VAR_COUNT; i++)
                if ((size_t)len == strlen(var_names[i]) && !memcmp(p + 1, var_names[i], (size_t)len))
                    o->base = i;
            if (o->base == -2) /* let jq report the unknown variable */
                return 0;
        }
        p = q;
    } else {
        return 0;
    }
    if (o->base == -1 && end - p == 1) /* just `.` */
        p++;
    while (p < end) {
        if (*p == '.' && p + 1 < end && is_ident_start((unsigned char)p[1])) {
            const char *q = p + 1;
            while (q < end && is_ident_char((unsigned char)*q))
                q++;
            if (add_step(o, p + 1, (int)(q - p - 1), 0))
                goto fail;
            p = q;
        } else if (*p == '[' || (*p == '.' && p + 1 < end && p[1] == '[')) {
            if (*p == '.')
                p++;
            const char *q = p + 1;
            while (q < end && *q >= '0' && *q <= '9')
                q++;
            if (q == p + 1 || q >= end || *q != ']' || q - p > 10)
                goto fail;
            if (add_step(o, NULL, 0, atoi(p + 1)))
                goto fail;
            p = q + 1;
        } else {
            goto fail;
        }
    }
    o->kind = FAST_PATH;
    return 1;
fail:
    operand_release(o);
    return 0;
}

/*
 * Finds the one top-level binary operator of `text` that the fast path
 * handles: comparisons anywhere, `+ - * /` and `and`/`or` only between
 * spaces (so `1e-5`, `//` and `?//` never match). Returns the operator and its
 * extent, or -1 when there is none or more than one (precedence is jq's
 * business then).
 */
static int find_binop(const char *text, const char **op_start, const char **op_end)
{
    int found = -1, depth = 0, count = 0;
    for (const char *p = text; *p; p++) {
        char c = *p;
        if (c == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                return -1;
            continue;
        }
        if (c == '(' || c == '[' || c == '{')
            depth++;
        else if (c == ')' || c == ']' || c == '}')
            depth--;
        if (depth != 0)
            continue;
        int op = -1, len = 0;
        if ((c == '=' || c == '!') && p[1] == '=')
            op = c == '=' ? OP_EQ : OP_NE, len = 2;
        else if (c == '<' || c == '>')
            op = p[1] == '=' ? (c == '<' ? OP_LE : OP_GE) : (c == '<' ? OP_LT : OP_GT), len = p[1] == '=' ? 2 : 1;
        else if ((c == '+' || c == '-' || c == '*' || c == '/') && p > text && p[-1] == ' ' && p[1] == ' ')
            op = c == '+' ? OP_ADD : c == '-' ? OP_SUB : c == '*' ? OP_MUL : OP_DIV, len = 1;
        else if (p > text && p[-1] == ' ' && !strncmp(p, "and ", 4))
            op = OP_AND, len = 3;
        else if (p > text && p[-1] == ' ' && !strncmp(p, "or ", 3))
            op = OP_OR, len = 2;
        else if (c == '=' || c == '|' || c == ',' || c == '?' || c == ';')
            return -1; /* assignment, pipe, comma...: not a single binary operation */
        if (op >= 0) {
            if (++count > 1)
                return -1;
            found = op;
            *op_start = p;
            *op_end = p + len;
            p += len - 1;
        }
    }
    return depth == 0 ? found : -1;
}

static int parse_fast(struct expr *e)
{
    const char *text = e->text;
    const char *end = text + strlen(text);
    if (parse_operand(e->scopevars, text, end, &e->lhs)) {
        e->fast = e->lhs.kind;
        return 1;
    }
    const char *os = NULL, *oe = NULL;
    int op = find_binop(text, &os, &oe);
    if (op < 0)
        return 0;
    if (!parse_operand(e->scopevars, text, os, &e->lhs))
        return 0;
    if (!parse_operand(e->scopevars, oe, end, &e->rhs)) {
        operand_release(&e->lhs);
        return 0;
    }
    e->fast = FAST_BINOP;
    e->op = op;
    return 1;
}

/* Follows o's path from v. Returns 1 with *out set, or 0 when jq must
 * decide. Each object step looks up a key string of its own: a key shared
 * between threads would have its count (and cached hash) written by all. */
static int eval_fast_path(jv v /* consumed */, const struct operand *o /* borrowed */, jv *out)
{
    for (int i = 0; i < o->nsteps; i++) {
        const struct step *st = &o->steps[i];
        jv_kind vk = jv_get_kind(v);
        if (vk == JV_KIND_NULL)
            continue; /* null.a == null, null[0] == null */
        if (st->key && vk == JV_KIND_OBJECT) {
            v = jv_object_get(v, jv_string_sized(st->key, st->len));
            if (!jv_is_valid(v)) {
                jv_free(v);
                v = jv_null();
            }
        } else if (!st->key && vk == JV_KIND_ARRAY) {
            if (st->index >= jv_array_length(jv_copy(v))) {
                jv_free(v);
                v = jv_null();
            } else {
                v = jv_array_get(v, st->index);
            }
        } else {
            jv_free(v);
            return 0;
        }
    }
    *out = v;
    return 1;
}

/* ---- registration and the bundle -------------------------------------------- */

/* Oniguruma, jq's regular expression engine (and regex_matches_empty's),
 * initialises itself inside its first onig_new without a lock: the first
 * regular expressions of two threads would race. libjq 1.6 never calls
 * onig_initialize; it is done once here, before any set can be used. */
static pthread_once_t onig_once = PTHREAD_ONCE_INIT;

static void onig_init_once(void)
{
    OnigEncoding utf8 = ONIG_ENCODING_UTF8;
    onig_initialize(&utf8, 1);
}

struct cv_exprset *cv__exprset_new(void)
{
    pthread_once(&onig_once, onig_init_once);
    struct cv_exprset *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void cv__exprset_free(struct cv_exprset *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->count; i++) {
        struct expr *e = &s->items[i];
        free(e->text);
        free(e->pointer);
        jv_free(e->scopevars);
        operand_release(&e->lhs);
        operand_release(&e->rhs);
    }
    free(s->items);
    for (int c = 0; c < s->nchunks; c++) {
        struct chunk *ch = &s->chunks[c];
        while (ch->free_states) {
            struct pooled_state *ps = ch->free_states;
            ch->free_states = ps->next;
            jq_teardown(&ps->jq);
            free(ps);
        }
        free(ch->idx);
        free(ch->program);
    }
    free(s->chunks);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static jv diag(const char *pointer, const char *msg)
{
    jv d = jv_object();
    d = jv_object_set(d, jv_string("pointer"), jv_string(pointer ? pointer : ""));
    return jv_object_set(d, jv_string("message"), jv_string(msg));
}

int cv__exprset_add(struct cv_exprset *s, const char *text, jv scopevars, const char *pointer, jv *errors)
{
    char buf[256];
    const char *why = guard(text, buf, sizeof buf);
    if (why) {
        *errors = jv_array_append(*errors, diag(pointer, why));
        return CV_EVALIDATE;
    }
    if (s->count == s->cap) {
        int cap = s->cap ? s->cap * 2 : 32;
        struct expr *n = realloc(s->items, (size_t)cap * sizeof *n);
        if (!n)
            return CV_ENOMEM;
        s->items = n;
        s->cap = cap;
    }
    struct expr *e = &s->items[s->count];
    memset(e, 0, sizeof *e);
    e->text = strdup(text);
    e->pointer = strdup(pointer ? pointer : "");
    if (!e->text || !e->pointer) {
        free(e->text);
        free(e->pointer);
        return CV_ENOMEM;
    }
    e->scopevars = jv_get_kind(scopevars) == JV_KIND_ARRAY ? jv_copy(scopevars) : jv_array();
    e->scoped = jv_array_length(jv_copy(e->scopevars)) > 0;
    e->lhs.scalar = jv_null();
    e->rhs.scalar = jv_null();
    e->uses = uses_of(text);
    e->wrap = may_track_paths(text);
    if (parse_fast(e))
        s->nfast++;
    return s->count++;
}

/* A growable string buffer for generating the bundle. */
struct sbuf {
    char *p;
    size_t len, cap;
    int lines;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
    for (const char *c = s; *c; c++)
        if (*c == '\n')
            b->lines++;
}

static jq_state *compile_state(const char *program, jv *msgs);
static void emit_leaf(struct sbuf *b, struct expr *e);
static const char sandbox[] =
    "def env: {}; def input: null; def inputs: empty; def input_filename: null; "
    "def get_search_list: []; def halt: error(\"halt is not available\"); "
    "def halt_error: error(.); def halt_error($c): error(.); def debug: .; def stderr: .; ";


int cv__exprset_add_loose(struct cv_exprset *s, const char *text, jv scopevars, const char *pointer)
{
    char buf[256];
    if (guard(text, buf, sizeof buf))
        return CV_EINVAL;
    /* compiled alone (about 25 ms) so that one string that is not jq cannot
     * spoil a bundle; loose mode is opt-in and rare */
    struct expr probe;
    memset(&probe, 0, sizeof probe);
    probe.text = (char *)text;
    /* emit_leaf walks the names: null (allowed, as for cv__exprset_add) is none */
    probe.scopevars = jv_get_kind(scopevars) == JV_KIND_ARRAY ? jv_copy(scopevars) : jv_array();
    probe.uses = uses_of(text);
    probe.wrap = may_track_paths(text);
    struct sbuf b = {0};
    sb_add(&b, sandbox);
    sb_add(&b, "{} as $ENV | ");
    emit_leaf(&b, &probe);
    jv_free(probe.scopevars);
    sb_add(&b, "\n");
    if (b.oom) {
        free(b.p);
        return CV_ENOMEM;
    }
    jq_state *jq = compile_state(b.p, NULL);
    free(b.p);
    if (!jq)
        return CV_EINVAL;
    jq_teardown(&jq);
    jv errors = jv_array();
    int idx = cv__exprset_add(s, text, scopevars, pointer, &errors);
    jv_free(errors);
    if (idx >= 0)
        s->items[idx].loose = 1;
    return idx;
}

int cv__exprset_count(const struct cv_exprset *s) { return s->count; }
int cv__exprset_fast_count(const struct cv_exprset *s) { return s->nfast; }
const char *cv__expr_text(const struct cv_exprset *s, int idx) { return s->items[idx].text; }

/* The program text of one expression: binds only the runtime arguments and
 * scope variables it mentions. An expression that may enter path tracking
 * takes its first result (null if none) through label/break, so that its
 * program always runs to its end: libjq 1.6 aborts when a state with a
 * pending path-tracking fork point (`first(paths)`...) is restarted. */
static void emit_leaf(struct sbuf *b, struct expr *e)
{
    char tmp[96];
    sb_add(b, "(.[1] as $__dot | ");
    for (int i = 0; i < CV_VAR_COUNT; i++)
        if (e->uses & (1u << i)) {
            snprintf(tmp, sizeof tmp, ".[%d] as $%s | ", i + 2, var_names[i]);
            sb_add(b, tmp);
        }
    int nscope = 0;
    jv_array_foreach(e->scopevars, i, name)
    {
        const char *n = jv_string_value(name);
        /* bind only the scope variables the text mentions */
        size_t len = strlen(n);
        int used = 0;
        for (const char *p = strchr(e->text, '$'); p && !used; p = strchr(p + 1, '$'))
            used = !strncmp(p + 1, n, len) && !is_ident_char((unsigned char)p[1 + len]);
        if (used) {
            if (!nscope++)
                sb_add(b, ".[10] as $__scope | ");
            sb_add(b, "$__scope.");
            sb_add(b, n);
            sb_add(b, " as $");
            sb_add(b, n);
            sb_add(b, " | ");
        }
        jv_free(name);
    }
    sb_add(b, e->wrap ? "[label $__first | $__dot | (\n" : "$__dot | (\n");
    e->first_line = b->lines + 1;
    sb_add(b, e->text);
    sb_add(b, "\n");
    e->last_line = b->lines;
    sb_add(b, e->wrap ? ") | ., break $__first] | .[0])" : "))");
}

static void gen_dispatch(struct cv_exprset *s, struct sbuf *b, const int *idx, int lo, int hi)
{
    char tmp[96];
    if (lo == hi) {
        snprintf(tmp, sizeof tmp, "__e%d", idx[lo]);
        sb_add(b, tmp);
        return;
    }
    int mid = lo + (hi - lo) / 2;
    snprintf(tmp, sizeof tmp, "(if $__i <= %d then ", idx[mid]);
    sb_add(b, tmp);
    gen_dispatch(s, b, idx, lo, mid);
    sb_add(b, " else ");
    gen_dispatch(s, b, idx, mid + 1, hi);
    sb_add(b, " end)");
}

static char *build_program(struct cv_exprset *s, const int *idx, int n)
{
    /* Each expression is a function of its own: its variable bindings are
     * locals of its frame, pushed only when it runs. Bound at the top level,
     * every binding of every expression would be a local of the main frame,
     * initialised and freed by every jq_start (measured: 5.5k instructions per
     * start for a 64-expression chunk). */
    struct sbuf b = {0};
    char tmp[64];
    sb_add(&b, sandbox);
    sb_add(&b, "{} as $ENV | .[0] as $__i | \n");
    for (int i = 0; i < n; i++) {
        snprintf(tmp, sizeof tmp, "def __e%d: ", idx[i]);
        sb_add(&b, tmp);
        emit_leaf(&b, &s->items[idx[i]]);
        sb_add(&b, ";\n");
    }
    if (n == 0)
        sb_add(&b, "null");
    else
        gen_dispatch(s, &b, idx, 0, n - 1);
    sb_add(&b, "\n");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

struct compile_errs {
    jv msgs;
};

static void collect_err(void *data, jv msg)
{
    struct compile_errs *ce = data;
    if (jv_get_kind(msg) == JV_KIND_STRING)
        ce->msgs = jv_array_append(ce->msgs, msg);
    else
        jv_free(msg);
}

static jq_state *compile_state(const char *program, jv *msgs)
{
    jq_state *jq = jq_init();
    if (!jq)
        return NULL;
    /* libjq 1.6 leaves the input callback uninitialised: `_input` would jump
     * through garbage. There is no input to read here. */
    jq_set_input_cb(jq, NULL, NULL);
    struct compile_errs ce = {jv_array()};
    jq_set_error_cb(jq, collect_err, &ce);
    /* no module search path: `import`/`include` cannot reach the filesystem */
    jq_set_attr(jq, jv_string("JQ_LIBRARY_PATH"), jv_array());
    int ok = jq_compile(jq, program);
    jq_set_error_cb(jq, NULL, NULL);
    if (!ok) {
        jq_teardown(&jq);
        if (msgs)
            *msgs = ce.msgs;
        else
            jv_free(ce.msgs);
        return NULL;
    }
    jv_free(ce.msgs);
    return jq;
}

/* "jq: error: syntax error, unexpected ... at <top-level>, line 12:\n<text>" →
 * the line number and a message without the location noise. */
static int message_line(const char *m, char *out, size_t outsz)
{
    const char *at = strstr(m, " at <top-level>, line ");
    int line = 0;
    if (at)
        line = atoi(at + strlen(" at <top-level>, line "));
    const char *start = m;
    if (!strncmp(start, "jq: error: ", 11))
        start += 11;
    size_t n = at ? (size_t)(at - start) : strcspn(start, "\n");
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, start, n);
    out[n] = 0;
    /* jq's command-line hint means nothing inside a workflow document */
    static const char hint[] = " (Unix shell quoting issues?)";
    char *h = strstr(out, hint);
    if (h)
        memmove(h, h + sizeof hint - 1, strlen(h + sizeof hint - 1) + 1);
    return line;
}

static int add_chunk(struct cv_exprset *s, const int *idx, int n, char *program, int lazy, jq_state *jq)
{
    if (s->nchunks == s->capchunks) {
        int cap = s->capchunks ? s->capchunks * 2 : 8;
        struct chunk *c = realloc(s->chunks, (size_t)cap * sizeof *c);
        if (!c)
            return CV_ENOMEM;
        s->chunks = c;
        s->capchunks = cap;
    }
    struct chunk *ch = &s->chunks[s->nchunks];
    memset(ch, 0, sizeof *ch);
    ch->idx = malloc((size_t)n * sizeof *ch->idx);
    struct pooled_state *ps = jq ? malloc(sizeof *ps) : NULL;
    if (!ch->idx || (jq && !ps)) {
        free(ch->idx);
        free(ps);
        return CV_ENOMEM;
    }
    memcpy(ch->idx, idx, (size_t)n * sizeof *idx);
    ch->n = n;
    ch->program = program;
    ch->lazy = lazy;
    if (jq) {
        ps->jq = jq;
        ps->next = NULL;
        ch->free_states = ps;
        ch->nstates = 1;
    }
    for (int i = 0; i < n; i++)
        s->items[idx[i]].chunk = s->nchunks;
    s->nchunks++;
    return 0;
}

/*
 * Compiles expressions idx[0..n) as one chunk. A compile error is placed by
 * its line; when libjq gives no line (a program over its size limit, say),
 * the range is split in two and each half tried, down to one expression.
 * `depth` counts the recompilations spent on this chunk's errors.
 */
static int compile_range(struct cv_exprset *s, const int *idx, int n, jv *errors, int *depth)
{
    char *program = build_program(s, idx, n);
    if (!program)
        return CV_ENOMEM;
    jv msgs = jv_null();
    jq_state *jq = compile_state(program, &msgs);
    if (jq) {
        jv_free(msgs);
        int rc = add_chunk(s, idx, n, program, 0, jq);
        if (rc) {
            jq_teardown(&jq);
            free(program);
        }
        return rc;
    }
    free(program);
    if (jv_get_kind(msgs) != JV_KIND_ARRAY) { /* not a compile error: out of memory */
        jv_free(msgs);
        return CV_ENOMEM;
    }
    /* Only the earliest error is certain: a syntax error can swallow the
     * expressions after it, which then get errors of their own. Report it,
     * then compile the rest again without it to find the other real ones. */
    int best = -1, best_line = 0;
    char best_text[512] = "", first[512] = "";
    jv_array_foreach(msgs, i, m)
    {
        char text[512];
        int line = message_line(jv_string_value(m), text, sizeof text);
        if (!first[0])
            snprintf(first, sizeof first, "%s", text);
        for (int k = 0; k < n && line > 0; k++) {
            struct expr *e = &s->items[idx[k]];
            if (line >= e->first_line && line <= e->last_line + 1) {
                if (best < 0 || line < best_line) {
                    best = k;
                    best_line = line;
                    snprintf(best_text, sizeof best_text, "%s", text);
                }
                break;
            }
        }
        jv_free(m);
    }
    jv_free(msgs);
    if (best >= 0) {
        struct expr *e = &s->items[idx[best]];
        char full[1100];
        snprintf(full, sizeof full, "expression does not compile: %s (in `%s`)", best_text, e->text);
        *errors = jv_array_append(*errors, diag(e->pointer, full));
        if (n == 1 || (*depth)++ >= 10)
            return CV_EVALIDATE; /* enough for one chunk: the rest is not checked */
        int *rest = malloc((size_t)(n - 1) * sizeof *rest);
        if (!rest)
            return CV_ENOMEM;
        for (int k = 0, j = 0; k < n; k++)
            if (k != best)
                rest[j++] = idx[k];
        int r = compile_range(s, rest, n - 1, errors, depth);
        free(rest);
        return r == CV_ENOMEM ? r : CV_EVALIDATE;
    }
    if (n > 1) {
        int h = n / 2;
        int r1 = compile_range(s, idx, h, errors, depth);
        int r2 = compile_range(s, idx + h, n - h, errors, depth);
        if (r1 == CV_ENOMEM || r2 == CV_ENOMEM)
            return CV_ENOMEM;
        return r1 ? r1 : r2;
    }
    char full[900];
    snprintf(full, sizeof full, "expression does not compile: %s (in `%s`)", first[0] ? first : "rejected by jq",
             s->items[idx[0]].text);
    *errors = jv_array_append(*errors, diag(s->items[idx[0]].pointer, full));
    return CV_EVALIDATE;
}

int cv__exprset_compile(struct cv_exprset *s, jv *errors)
{
    int *jqs = malloc((size_t)(s->count + 1) * sizeof *jqs);
    int *fast = malloc((size_t)(s->count + 1) * sizeof *fast);
    if (!jqs || !fast) {
        free(jqs);
        free(fast);
        return CV_ENOMEM;
    }
    int nj = 0, nf = 0;
    for (int i = 0; i < s->count; i++) {
        if (s->items[i].fast)
            fast[nf++] = i;
        else
            jqs[nj++] = i;
    }
    int rc = 0;
    /* expressions that need jq: compiled now, so that errors are found at load */
    for (int i = 0; i < nj && rc != CV_ENOMEM; i += CHUNK_SIZE) {
        int depth = 0;
        int r = compile_range(s, jqs + i, nj - i < CHUNK_SIZE ? nj - i : CHUNK_SIZE, errors, &depth);
        if (r && rc != CV_ENOMEM)
            rc = r;
    }
    /* fast-path expressions compile by construction: their chunks wait for a first use */
    for (int i = 0; i < nf && rc != CV_ENOMEM; i += CHUNK_SIZE) {
        int n = nf - i < CHUNK_SIZE ? nf - i : CHUNK_SIZE;
        char *program = build_program(s, fast + i, n);
        if (!program || add_chunk(s, fast + i, n, program, 1, NULL)) {
            free(program);
            rc = CV_ENOMEM;
        }
    }
    free(jqs);
    free(fast);
    if (!rc)
        s->compiled = 1;
    return rc;
}

/* ---- evaluation ---------------------------------------------------------------- */

static struct pooled_state *checkout(struct cv_exprset *s, struct chunk *ch)
{
    pthread_mutex_lock(&s->lock);
    struct pooled_state *ps = ch->free_states;
    if (ps)
        ch->free_states = ps->next;
    pthread_mutex_unlock(&s->lock);
    if (ps)
        return ps;
    /* first use of a lazy chunk, or contention: compile one more state (15-60 ms) */
    jq_state *jq = compile_state(ch->program, NULL);
    if (!jq)
        return NULL;
    ps = malloc(sizeof *ps);
    if (!ps) {
        jq_teardown(&jq);
        return NULL;
    }
    ps->jq = jq;
    pthread_mutex_lock(&s->lock);
    ch->nstates++;
    pthread_mutex_unlock(&s->lock);
    return ps;
}

static void checkin(struct cv_exprset *s, struct chunk *ch, struct pooled_state *ps)
{
    pthread_mutex_lock(&s->lock);
    ps->next = ch->free_states;
    ch->free_states = ps;
    pthread_mutex_unlock(&s->lock);
}

static jv var_value(struct cv_evalenv *env, int i)
{
    if (!env)
        return jv_null();
    if (!jv_is_valid(env->vars[i])) {
        if (!env->materialize)
            return jv_null();
        env->vars[i] = env->materialize(env->ud, i); /* cached for the rest of this evaluation site */
    }
    return jv_copy(env->vars[i]);
}

static jv expr_error(const struct expr *e, const char *msg)
{
    char detail[1024];
    snprintf(detail, sizeof detail, "%s (in `%s`)", msg, e->text);
    return cv__error_new(CV_ERR_EXPRESSION, 400, "Expression Error", detail);
}

/* The value of an operand (dot borrowed). Returns 1 with *out, or 0 when jq
 * must decide (a type mismatch on the path: jq's error message is wanted). */
static int eval_operand(const struct operand *o, jv dot, struct cv_evalenv *env, jv *out)
{
    if (o->kind == FAST_LITERAL) {
        if (!o->text) {
            *out = o->scalar;
            return 1;
        }
        if (o->text_kind == JV_KIND_STRING) {
            *out = jv_string_sized(o->text, o->text_len);
            return 1;
        }
        jv v = jv_parse_sized(o->text, o->text_len);
        if (!jv_is_valid(v)) { /* out of memory: jq will say so */
            jv_free(v);
            return 0;
        }
        *out = v;
        return 1;
    }
    jv base;
    if (o->base == -1)
        base = jv_copy(dot);
    else if (o->base < CV_VAR_COUNT)
        base = var_value(env, o->base);
    else {
        base = (env && jv_get_kind(env->scope) == JV_KIND_OBJECT)
                   ? jv_object_get(jv_copy(env->scope), jv_string_sized(o->scope, o->scope_len))
                   : jv_invalid();
        if (!jv_is_valid(base)) {
            jv_free(base);
            base = jv_null();
        }
    }
    return eval_fast_path(base, o, out);
}

/*
 * a OP b with jq 1.6's semantics, for the cases where they are plain:
 * numbers; `+` on strings, arrays, objects (shallow merge) and null; `==`
 * and `!=` on anything (jv_equal), ordering on anything (jv_cmp, jq's total
 * order); `and`/`or` by truthiness. Returns 1 with *out, or 0 (a and b
 * consumed either way) when jq must evaluate it (errors, division by zero,
 * `-` on arrays, `*` and `/` on strings or objects).
 */
static int eval_binop(int op, jv a, jv b, jv *out)
{
    jv_kind ka = jv_get_kind(a), kb = jv_get_kind(b);
    int nums = ka == JV_KIND_NUMBER && kb == JV_KIND_NUMBER;
    switch (op) {
    case OP_ADD:
        if (ka == JV_KIND_NULL) {
            jv_free(a);
            *out = b;
            return 1;
        }
        if (kb == JV_KIND_NULL) {
            jv_free(b);
            *out = a;
            return 1;
        }
        if (nums) {
            *out = jv_number(jv_number_value(a) + jv_number_value(b));
            return 1;
        }
        if (ka == kb && ka == JV_KIND_STRING) {
            *out = jv_string_concat(a, b);
            return 1;
        }
        if (ka == kb && ka == JV_KIND_ARRAY) {
            *out = jv_array_concat(a, b);
            return 1;
        }
        if (ka == kb && ka == JV_KIND_OBJECT) {
            *out = jv_object_merge(a, b);
            return 1;
        }
        break;
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
        if (nums && !(op == OP_DIV && jv_number_value(b) == 0)) {
            double x = jv_number_value(a), y = jv_number_value(b);
            *out = jv_number(op == OP_SUB ? x - y : op == OP_MUL ? x * y : x / y);
            return 1;
        }
        break;
    case OP_EQ:
    case OP_NE: {
        int eq = jv_equal(a, b);
        *out = (op == OP_EQ) == eq ? jv_true() : jv_false();
        return 1;
    }
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: {
        int c = jv_cmp(a, b);
        int r = op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
        *out = r ? jv_true() : jv_false();
        return 1;
    }
    case OP_AND:
    case OP_OR: {
        int x = cv__jv_truthy(a), y = cv__jv_truthy(b);
        int r = op == OP_AND ? (x && y) : (x || y);
        *out = r ? jv_true() : jv_false();
        return 1;
    }
    }
    jv_free(a);
    jv_free(b);
    return 0;
}

/*
 * Returns v (consumed) with every string, array and object it reaches that
 * someone else may also hold replaced by a copy of its own. libjq 1.6 hands
 * out its program's constants by reference (`"yes"`, `[1, 2]`, the keys of
 * `{tag: .x}`): without this, the caller would free them on its thread while
 * the state, back in the pool, copies them on another. Must run while the
 * state is checked out and after jq_start released its stack, so that the
 * constants' counts are exact and only this thread changes them.
 *
 * `held` is how many of v's references are ours (1 for a result; 2 for an
 * element read from a container that is itself ours, which still holds one).
 * A string counted exactly that often belongs to the result alone and is
 * kept; one counted more often is copied, whether the other holder is the
 * state or the caller's input: the two cannot be told apart, and copying the
 * caller's values is only slower. Arrays and objects are always rebuilt.
 * Numbers, booleans and null (most results) cost nothing.
 */
static jv unshare_value(jv v, int held)
{
    int own = held > 0 && jv_get_refcnt(v) == held;
    switch (jv_get_kind(v)) {
    case JV_KIND_STRING: {
        if (own)
            return v;
        jv c = jv_string_sized(jv_string_value(v), jv_string_length_bytes(jv_copy(v)));
        jv_free(v);
        return c;
    }
    case JV_KIND_ARRAY: {
        /* rebuilt even when ours: a slice (`.[1:]`) keeps its whole
         * original array, elements outside the slice included */
        int n = jv_array_length(jv_copy(v));
        jv a = jv_array_sized(n);
        for (int i = 0; i < n; i++)
            a = jv_array_append(a, unshare_value(jv_array_get(jv_copy(v), i), own ? 2 : 0));
        jv_free(v);
        return a;
    }
    case JV_KIND_OBJECT: { /* rebuilt: a key cannot be replaced in place */
        jv o = jv_object();
        jv_object_foreach(v, k, x)
        {
            o = jv_object_set(o, unshare_value(k, own ? 2 : 0), unshare_value(x, own ? 2 : 0));
        }
        jv_free(v);
        return o;
    }
    default: /* numbers, booleans and null: not reference counted in libjq 1.6 */
        return v;
    }
}

int cv__expr_eval(struct cv_exprset *s, int idx, jv dot, struct cv_evalenv *env, jv *out)
{
    struct expr *e = &s->items[idx];
    if (e->fast == FAST_LITERAL || e->fast == FAST_PATH) {
        if (eval_operand(&e->lhs, dot, env, out)) {
            jv_free(dot);
            return 0;
        }
    } else if (e->fast == FAST_BINOP) {
        jv a, b;
        if (eval_operand(&e->lhs, dot, env, &a)) {
            if (eval_operand(&e->rhs, dot, env, &b)) {
                if (eval_binop(e->op, a, b, out)) {
                    jv_free(dot);
                    return 0;
                }
            } else {
                jv_free(a);
            }
        }
    }
    if (!s->compiled) {
        jv_free(dot);
        *out = expr_error(e, "expressions were not compiled");
        return CV_EFAULT;
    }
    /* [idx, ., $context, $input, ..., $authorization, scope], cut after the
     * last slot this expression reads (its leaf binds only what it uses) */
    int slots = 2;
    for (int i = 0; i < CV_VAR_COUNT; i++)
        if (e->uses & (1u << i))
            slots = i + 3;
    if (e->scoped)
        slots = 11;
    jv in = jv_array_sized(slots);
    in = jv_array_append(in, jv_number(idx));
    in = jv_array_append(in, dot);
    for (int i = 0; i + 2 < slots && i < CV_VAR_COUNT; i++)
        in = jv_array_append(in, (e->uses & (1u << i)) ? var_value(env, i) : jv_null());
    if (e->scoped)
        in = jv_array_append(in, env && jv_get_kind(env->scope) == JV_KIND_OBJECT ? jv_copy(env->scope)
                                                                                  : jv_object());

    struct chunk *ch = &s->chunks[e->chunk];
    struct pooled_state *ps = checkout(s, ch);
    if (!ps) {
        jv_free(in);
        *out = expr_error(e, "out of memory compiling expressions");
        return CV_EFAULT;
    }
    jq_start(ps->jq, in, 0);
    jv r = jq_next(ps->jq);
    int rc = 0, from_jq = 0;
    if (jv_is_valid(r)) {
        *out = r;
        from_jq = 1;
    } else if (e->loose) {
        jv_free(r);
        *out = jv_string(e->text); /* loose mode: a failed evaluation is the text itself */
    } else if (jv_invalid_has_msg(jv_copy(r))) {
        jv msg = jv_invalid_get_msg(r);
        jv text = jv_get_kind(msg) == JV_KIND_STRING ? msg : jv_dump_string(msg, 0);
        *out = expr_error(e, jv_string_value(text));
        jv_free(text);
        rc = CV_EFAULT;
    } else {
        jv_free(r);
        *out = jv_null(); /* no result */
    }
    /* Release our values from the state on this thread: jq 1.6 reference
     * counts are not atomic, and the state may next run on another thread.
     * For the same reason the result must not keep the state's constants:
     * unshare it while the state is still ours (see "Threads" at the top). */
    jq_start(ps->jq, jv_null(), 0);
    if (from_jq)
        *out = unshare_value(*out, 1);
    checkin(s, ch, ps);
    return rc;
}

int cv__jv_truthy(jv v)
{
    jv_kind k = jv_get_kind(v);
    jv_free(v);
    return !(k == JV_KIND_NULL || k == JV_KIND_FALSE || k == JV_KIND_INVALID);
}
