/*
 * tabdata.c — the tabular scorer's data (tabular.h): reading rows of named
 * values from JSON lines or CSV, inferring or checking the feature schema,
 * encoding a row into the booster's columns (numbers as they are,
 * categories one-hot, missing values NaN), and reading the binary label.
 *
 * The CSV reader follows dataset.c's rules (RFC 4180, the same messages) but
 * keeps every column: dataset.c's reader keeps one text and one label
 * (its parser is private to it; sharing it would mean changing the text
 * model's file, owned elsewhere). Every message about the data names the
 * file and the line where the row starts.
 */
#include "ml/tabular.h"

#include "conveyor.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void set_err(jv *err, const char *fmt, ...) JV_PRINTF_LIKE(2, 3);
static void set_err(jv *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    jv_free(*err);
    *err = jv_string_vfmt(fmt, ap);
    va_end(ap);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------------ */
/* Reading a table                                                           */
/* ------------------------------------------------------------------------ */

static int table_add(struct cv_table *t, int *cap, jv row, int line)
{
    if (t->n == *cap) {
        int nc = *cap ? *cap * 2 : 256;
        jv *r = realloc(t->rows, (size_t)nc * sizeof *r);
        if (r)
            t->rows = r;
        int *l = realloc(t->lines, (size_t)nc * sizeof *l);
        if (l)
            t->lines = l;
        if (!r || !l) {
            jv_free(row);
            return CV_ENOMEM;
        }
        *cap = nc;
    }
    t->rows[t->n] = row;
    t->lines[t->n] = line;
    t->n++;
    return 0;
}

static int read_jsonl(const char *path, const char *buf, size_t len, struct cv_table *t, jv *err)
{
    size_t pos = 0;
    int line = 0, cap = 0;
    jv keys = jv_object(); /* every key seen */
    while (pos < len) {
        line++;
        const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        size_t a = 0;
        while (a < n && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r'))
            a++;
        if (a == n)
            continue;
        jv o = jv_parse_sized(s, (int)n);
        if (!jv_is_valid(o)) {
            jv msg = jv_invalid_get_msg(o);
            set_err(err, "%s:%d: not valid JSON (%s)", path, line,
                    jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "?");
            jv_free(msg);
            jv_free(keys);
            return CV_EINVAL;
        }
        if (jv_get_kind(o) != JV_KIND_OBJECT) {
            jv_free(o);
            jv_free(keys);
            set_err(err, "%s:%d: not a JSON object (JSON lines: one object per line)", path, line);
            return CV_EINVAL;
        }
        jv_object_foreach(o, k, v)
        {
            jv_free(v);
            keys = jv_object_set(keys, k, jv_true());
        }
        if (table_add(t, &cap, o, line)) {
            jv_free(keys);
            return CV_ENOMEM;
        }
    }
    jv names = jv_keys(keys); /* sorted */
    int nk = jv_array_length(jv_copy(names));
    t->columns = calloc((size_t)nk + 1, sizeof *t->columns);
    if (!t->columns) {
        jv_free(names);
        return CV_ENOMEM;
    }
    t->ncolumns = nk;
    for (int i = 0; i < nk; i++) {
        jv k = jv_array_get(jv_copy(names), i);
        t->columns[i] = strdup(jv_string_value(k));
        jv_free(k);
        if (!t->columns[i]) {
            jv_free(names);
            return CV_ENOMEM;
        }
    }
    jv_free(names);
    return 0;
}

/* One CSV record: fields as jv strings into *fields (an array). Returns 1 for
 * a record, 0 at the end, or a CV_* code with *err. Skips empty lines. */
struct csv {
    const char *b;
    size_t len, pos;
    int line;
};

static int csv_next(struct csv *c, const char *path, int *start, jv *fields, jv *err)
{
    *fields = jv_array();
    while (c->pos < c->len && (c->b[c->pos] == '\n' || c->b[c->pos] == '\r')) {
        if (c->b[c->pos] == '\n')
            c->line++;
        c->pos++;
    }
    if (c->pos >= c->len)
        return 0;
    *start = c->line;
    const char *b = c->b;
    for (;;) {
        if (c->pos < c->len && b[c->pos] == '"') {
            size_t s = ++c->pos;
            int opened = c->line;
            jv f = jv_string("");
            for (;;) {
                if (c->pos >= c->len) {
                    jv_free(f);
                    set_err(err, "%s:%d: a quoted field is not closed", path, opened);
                    return CV_EINVAL;
                }
                char ch = b[c->pos];
                if (ch == '"') {
                    f = jv_string_append_buf(f, b + s, (int)(c->pos - s));
                    if (c->pos + 1 < c->len && b[c->pos + 1] == '"') {
                        f = jv_string_append_buf(f, "\"", 1);
                        c->pos += 2;
                        s = c->pos;
                        continue;
                    }
                    break;
                }
                if (ch == '\n')
                    c->line++;
                c->pos++;
            }
            *fields = jv_array_append(*fields, f);
            c->pos++;
            if (c->pos < c->len && b[c->pos] != ',' && b[c->pos] != '\n' &&
                !(b[c->pos] == '\r' && (c->pos + 1 == c->len || b[c->pos + 1] == '\n'))) {
                set_err(err, "%s:%d: characters after a closing quote (a quote inside a field is written \"\")", path,
                        c->line);
                return CV_EINVAL;
            }
        } else {
            size_t s = c->pos;
            while (c->pos < c->len && b[c->pos] != ',' && b[c->pos] != '\n')
                c->pos++;
            size_t e = c->pos;
            if (e > s && b[e - 1] == '\r' && (e == c->len || b[e] == '\n'))
                e--;
            *fields = jv_array_append(*fields, jv_string_sized(b + s, (int)(e - s)));
        }
        if (c->pos < c->len && b[c->pos] == ',') {
            c->pos++;
            continue;
        }
        if (c->pos < c->len && b[c->pos] == '\r')
            c->pos++;
        if (c->pos < c->len && b[c->pos] == '\n') {
            c->pos++;
            c->line++;
        }
        return 1;
    }
}

static int read_csv(const char *path, const char *buf, size_t len, struct cv_table *t, jv *err)
{
    struct csv c = {.b = buf, .len = len, .line = 1};
    int start = 1, cap = 0;
    jv header;
    int code = csv_next(&c, path, &start, &header, err);
    if (code == 0) {
        jv_free(header);
        set_err(err, "%s: empty file (a CSV file starts with a header row)", path);
        return CV_EINVAL;
    }
    if (code < 0) {
        jv_free(header);
        return code;
    }
    int nc = jv_array_length(jv_copy(header));
    t->columns = calloc((size_t)nc + 1, sizeof *t->columns);
    if (!t->columns) {
        jv_free(header);
        return CV_ENOMEM;
    }
    t->ncolumns = nc;
    for (int i = 0; i < nc; i++) {
        jv h = jv_array_get(jv_copy(header), i);
        t->columns[i] = strdup(jv_string_value(h));
        jv_free(h);
        if (!t->columns[i]) {
            jv_free(header);
            return CV_ENOMEM;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(t->columns[j], t->columns[i])) {
                set_err(err, "%s:%d: column \"%s\" appears twice in the header", path, start, t->columns[i]);
                jv_free(header);
                return CV_EINVAL;
            }
    }
    jv fields;
    while ((code = csv_next(&c, path, &start, &fields, err)) == 1) {
        int n = jv_array_length(jv_copy(fields));
        if (n != nc) {
            set_err(err, "%s:%d: %d fields where the header has %d", path, start, n, nc);
            jv_free(fields);
            jv_free(header);
            return CV_EINVAL;
        }
        jv row = jv_object();
        for (int i = 0; i < n; i++) {
            jv f = jv_array_get(jv_copy(fields), i);
            if (jv_string_length_bytes(jv_copy(f)) > 0)
                row = jv_object_set(row, jv_string(t->columns[i]), f);
            else
                jv_free(f);
        }
        jv_free(fields);
        if (table_add(t, &cap, row, start)) {
            jv_free(header);
            return CV_ENOMEM;
        }
    }
    jv_free(fields);
    jv_free(header);
    return code < 0 ? code : 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

int cv_table_read(const char *path, struct cv_table *out, jv *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, "%s: %s", path, strerror(errno));
        return CV_EIO;
    }
    size_t cap = 1 << 16, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        set_err(err, "%s: %s", path, buf ? "read error" : "out of memory");
        return buf ? CV_EIO : CV_ENOMEM;
    }
    cv_ml_sha256_hex(buf, len, out->sha256);
    const char *b = buf;
    size_t n = len;
    if (n >= 3 && !memcmp(b, "\xEF\xBB\xBF", 3)) {
        b += 3;
        n -= 3;
    }
    int csv;
    if (ends_with(path, ".csv"))
        csv = 1;
    else if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson") || ends_with(path, ".json"))
        csv = 0;
    else {
        size_t i = 0;
        while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
            i++;
        csv = !(i < n && b[i] == '{');
    }
    out->csv = csv;
    out->path = strdup(path);
    if (!out->path) {
        free(buf);
        set_err(err, "out of memory");
        return CV_ENOMEM;
    }
    int code = csv ? read_csv(path, b, n, out, err) : read_jsonl(path, b, n, out, err);
    free(buf);
    if (!code && out->n == 0) {
        set_err(err, "%s: no rows", path);
        code = CV_EINVAL;
    }
    if (code == CV_ENOMEM)
        set_err(err, "%s: out of memory", path);
    if (code) {
        char keep[65];
        memcpy(keep, out->sha256, sizeof keep);
        cv_table_cleanup(out);
        memcpy(out->sha256, keep, sizeof keep);
    }
    return code;
}

void cv_table_cleanup(struct cv_table *t)
{
    if (!t)
        return;
    for (int i = 0; t->rows && i < t->n; i++)
        jv_free(t->rows[i]);
    free(t->rows);
    free(t->lines);
    for (int i = 0; t->columns && i < t->ncolumns; i++)
        free(t->columns[i]);
    free(t->columns);
    free(t->path);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------------ */
/* Values                                                                    */
/* ------------------------------------------------------------------------ */

enum vkind { V_MISSING, V_NUMBER, V_TEXT, V_BAD };

/* Classifies a value (borrowed). V_NUMBER sets *num; V_TEXT and V_NUMBER set
 * *text (a new jv string: the category text). */
static enum vkind classify(jv v, int csv, double *num, jv *text)
{
    *text = jv_invalid();
    switch (jv_get_kind(v)) {
    case JV_KIND_INVALID:
    case JV_KIND_NULL:
        return V_MISSING;
    case JV_KIND_NUMBER:
        *num = jv_number_value(v);
        *text = jv_dump_string(jv_copy(v), 0);
        return V_NUMBER;
    case JV_KIND_TRUE:
    case JV_KIND_FALSE:
        *text = jv_string(jv_get_kind(v) == JV_KIND_TRUE ? "true" : "false");
        return V_TEXT;
    case JV_KIND_STRING: {
        const char *s = jv_string_value(v);
        if (csv && !*s)
            return V_MISSING;
        *text = jv_copy(v);
        if (csv) {
            while (*s == ' ' || *s == '\t')
                s++;
            char *end = NULL;
            errno = 0;
            double d = strtod(s, &end);
            if (end != s) {
                while (*end == ' ' || *end == '\t')
                    end++;
                /* hex, inf and nan are refused: data files mean decimal numbers */
                if (!*end && isfinite(d) && !strpbrk(s, "xXnN")) {
                    *num = d;
                    return V_NUMBER;
                }
            }
        }
        return V_TEXT;
    }
    default:
        return V_BAD;
    }
}

static const char *kind_name(jv v)
{
    switch (jv_get_kind(v)) {
    case JV_KIND_OBJECT:
        return "an object";
    case JV_KIND_ARRAY:
        return "an array";
    case JV_KIND_STRING:
        return "a text";
    case JV_KIND_TRUE:
    case JV_KIND_FALSE:
        return "a boolean";
    default:
        return "a value";
    }
}

/* ------------------------------------------------------------------------ */
/* The schema                                                                */
/* ------------------------------------------------------------------------ */

void cv_tab_schema_cleanup(struct cv_tab_schema *s)
{
    if (!s)
        return;
    for (int i = 0; s->f && i < s->n; i++) {
        free(s->f[i].name);
        for (int c = 0; s->f[i].cats && c < s->f[i].ncats; c++)
            free(s->f[i].cats[c]);
        free(s->f[i].cats);
    }
    free(s->f);
    memset(s, 0, sizeof *s);
}

/* Sets f's categories from a jv array of strings (consumed): sorted, unique. */
static int set_cats(struct cv_tab_feature *f, jv list, jv *err)
{
    int n = jv_array_length(jv_copy(list));
    if (n > CV_TAB_MAX_CATEGORIES) {
        set_err(err,
                "feature \"%s\" has more than %d categories: an id-like column? leave it out with a declared "
                "schema (--schema)",
                f->name, CV_TAB_MAX_CATEGORIES);
        jv_free(list);
        return CV_EINVAL;
    }
    f->cats = calloc((size_t)n + 1, sizeof *f->cats);
    if (!f->cats) {
        jv_free(list);
        return CV_ENOMEM;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        jv c = jv_array_get(jv_copy(list), i);
        if (jv_get_kind(c) != JV_KIND_STRING) {
            jv_free(c);
            jv_free(list);
            set_err(err, "feature \"%s\": categories are texts", f->name);
            f->ncats = k;
            return CV_EINVAL;
        }
        f->cats[k] = strdup(jv_string_value(c));
        jv_free(c);
        if (!f->cats[k]) {
            f->ncats = k;
            jv_free(list);
            return CV_ENOMEM;
        }
        k++;
    }
    jv_free(list);
    qsort(f->cats, (size_t)k, sizeof *f->cats, str_cmp);
    int u = 0;
    for (int i = 0; i < k; i++) {
        if (u && !strcmp(f->cats[u - 1], f->cats[i]))
            free(f->cats[i]);
        else
            f->cats[u++] = f->cats[i];
    }
    f->ncats = u;
    return 0;
}

/* Looks at feature `name`'s values over the rows: whether all present ones
 * are numbers, and the set of texts (an object used as a set). */
static int scan(const struct cv_table *t, const int *rows, int nrows, const char *name, int *all_numeric,
                jv *texts, jv *err)
{
    *all_numeric = 1;
    *texts = jv_object();
    for (int i = 0; i < nrows; i++) {
        int r = rows ? rows[i] : i;
        jv v = jv_object_get(jv_copy(t->rows[r]), jv_string(name));
        double d;
        jv text;
        enum vkind k = classify(v, t->csv, &d, &text);
        if (k == V_BAD) {
            set_err(err, "%s:%d: feature \"%s\" is %s (a feature is a number or a text)", t->path ? t->path : "?",
                    t->lines[r], name,
                    kind_name(v));
            jv_free(v);
            jv_free(*texts);
            *texts = jv_invalid();
            return CV_EINVAL;
        }
        jv_free(v);
        if (k == V_TEXT)
            *all_numeric = 0;
        if (k != V_MISSING)
            *texts = jv_object_set(*texts, text, jv_true());
        else
            jv_free(text);
        /* an id-like text column: stop collecting once it is clearly too many to
         * be a category (set_cats says so); checked now and then, as counting
         * a jv object's members walks it */
        if (!*all_numeric && i % 1024 == 1023 && jv_object_length(jv_copy(*texts)) > CV_TAB_MAX_CATEGORIES)
            break;
    }
    return 0;
}

static void layout(struct cv_tab_schema *s)
{
    int col = 0;
    for (int i = 0; i < s->n; i++) {
        s->f[i].col = col;
        col += s->f[i].type == CV_TAB_NUMERIC ? 1 : s->f[i].ncats;
    }
    s->ncols = col;
}

int cv_tab_schema_infer(const struct cv_table *t, const int *rows, int nrows, const char *label_field,
                        jv declared, struct cv_tab_schema *out, jv *err)
{
    memset(out, 0, sizeof *out);
    if (!rows)
        nrows = t->n;
    int code = 0;
    int decl = jv_get_kind(declared) == JV_KIND_ARRAY;
    if (!decl && jv_get_kind(declared) != JV_KIND_NULL) {
        jv_free(declared);
        set_err(err, "a declared schema is an array of {\"name\", \"type\"} objects");
        return CV_EINVAL;
    }
    int nf = decl ? jv_array_length(jv_copy(declared)) : t->ncolumns;
    out->f = calloc((size_t)nf + 1, sizeof *out->f);
    if (!out->f) {
        jv_free(declared);
        return CV_ENOMEM;
    }
    for (int i = 0; i < nf && !code; i++) {
        struct cv_tab_feature *f = &out->f[out->n];
        jv d = decl ? jv_array_get(jv_copy(declared), i) : jv_null();
        const char *name;
        jv jname = jv_invalid(), jtype = jv_invalid(), jcats = jv_invalid();
        if (decl) {
            if (jv_get_kind(d) == JV_KIND_OBJECT) {
                jname = jv_object_get(jv_copy(d), jv_string("name"));
                jtype = jv_object_get(jv_copy(d), jv_string("type"));
                jcats = jv_object_get(jv_copy(d), jv_string("categories"));
            }
            if (jv_get_kind(jname) != JV_KIND_STRING || jv_get_kind(jtype) != JV_KIND_STRING ||
                (strcmp(jv_string_value(jtype), "numeric") && strcmp(jv_string_value(jtype), "categorical")) ||
                (jv_is_valid(jcats) && jv_get_kind(jcats) != JV_KIND_ARRAY)) {
                set_err(err, "declared feature %d: needs \"name\" and \"type\" (\"numeric\" or \"categorical\"), and "
                             "\"categories\" if any as an array of texts",
                        i + 1);
                code = CV_EINVAL;
            }
            name = jv_get_kind(jname) == JV_KIND_STRING ? jv_string_value(jname) : "";
        } else {
            name = t->columns[i];
        }
        if (!code && label_field && !strcmp(name, label_field)) {
            if (decl) {
                set_err(err, "declared feature \"%s\" is the label", name);
                code = CV_EINVAL;
            }
            goto next;
        }
        if (!code && decl) {
            int present = 0;
            for (int c = 0; c < t->ncolumns; c++)
                present |= !strcmp(t->columns[c], name);
            for (int j = 0; j < out->n; j++)
                if (!strcmp(out->f[j].name, name)) {
                    set_err(err, "feature \"%s\" is declared twice", name);
                    code = CV_EINVAL;
                }
            if (!present && !code) {
                set_err(err, "declared feature \"%s\" is not in the data", name);
                code = CV_EINVAL;
            }
        }
        if (code)
            goto next;
        f->name = strdup(name);
        if (!f->name) {
            code = CV_ENOMEM;
            goto next;
        }
        out->n++;
        int numeric;
        jv texts;
        if (decl && jv_get_kind(jcats) == JV_KIND_ARRAY) {
            numeric = 0;
            texts = jv_invalid();
        } else {
            code = scan(t, rows, nrows, name, &numeric, &texts, err);
            if (code)
                goto next;
        }
        if (decl)
            numeric = !strcmp(jv_string_value(jtype), "numeric");
        if (numeric) {
            if (decl && !jv_is_valid(texts)) {
                set_err(err, "feature \"%s\" is numeric: it has no categories", name);
                code = CV_EINVAL;
            }
            f->type = CV_TAB_NUMERIC;
            jv_free(texts);
        } else {
            f->type = CV_TAB_CATEGORICAL;
            code = set_cats(f, jv_is_valid(texts) ? jv_keys(texts) : jv_copy(jcats), err);
            if (!code && f->ncats == 0) {
                set_err(err, "categorical feature \"%s\" has no values", name);
                code = CV_EINVAL;
            }
        }
    next:
        jv_free(d);
        jv_free(jname);
        jv_free(jtype);
        jv_free(jcats);
    }
    jv_free(declared);
    if (!code && out->n == 0) {
        set_err(err, "no features (every column is the label?)");
        code = CV_EINVAL;
    }
    if (code) {
        if (code == CV_ENOMEM)
            set_err(err, "out of memory");
        cv_tab_schema_cleanup(out);
        return code;
    }
    layout(out);
    return 0;
}

jv cv_tab_schema_json(const struct cv_tab_schema *s)
{
    jv a = jv_array();
    for (int i = 0; i < s->n; i++) {
        const struct cv_tab_feature *f = &s->f[i];
        jv o = jv_object_set(jv_object(), jv_string("name"), jv_string(f->name));
        o = jv_object_set(o, jv_string("type"), jv_string(f->type == CV_TAB_NUMERIC ? "numeric" : "categorical"));
        if (f->type == CV_TAB_CATEGORICAL) {
            jv c = jv_array();
            for (int k = 0; k < f->ncats; k++)
                c = jv_array_append(c, jv_string(f->cats[k]));
            o = jv_object_set(o, jv_string("categories"), c);
        }
        a = jv_array_append(a, o);
    }
    return a;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */
/* ------------------------------------------------------------------------ */

int cv_tab_encode(const struct cv_tab_schema *s, jv row, int csv, float *x, int *unknown, jv *err)
{
    if (jv_get_kind(row) != JV_KIND_OBJECT) {
        set_err(err, "features are an object of name: value");
        return CV_EINVAL;
    }
    for (int i = 0; i < s->n; i++) {
        const struct cv_tab_feature *f = &s->f[i];
        jv v = jv_object_get(jv_copy(row), jv_string(f->name));
        double d = 0;
        jv text;
        enum vkind k = classify(v, csv, &d, &text);
        int code = 0;
        if (k == V_BAD) {
            set_err(err, "feature \"%s\" is %s (a feature is a number or a text)", f->name, kind_name(v));
            code = CV_EINVAL;
        } else if (f->type == CV_TAB_NUMERIC) {
            if (k == V_TEXT) {
                jv shown = jv_dump_string(jv_copy(text), 0);
                set_err(err, "feature \"%s\" is numeric; got %.80s", f->name, jv_string_value(shown));
                jv_free(shown);
                code = CV_EINVAL;
            } else {
                x[f->col] = k == V_MISSING ? NAN : (float)d;
            }
        } else {
            int hit = -1;
            if (k != V_MISSING) {
                const char *key = jv_string_value(text);
                char **p = bsearch(&key, f->cats, (size_t)f->ncats, sizeof *f->cats, str_cmp);
                hit = p ? (int)(p - f->cats) : -1;
                if (!p && unknown)
                    (*unknown)++;
            }
            for (int c = 0; c < f->ncats; c++)
                x[f->col + c] = hit < 0 ? NAN : c == hit ? 1.0f : 0.0f;
        }
        jv_free(text);
        jv_free(v);
        if (code)
            return code;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Labels                                                                    */
/* ------------------------------------------------------------------------ */

/* The label text of a value (borrowed), as cv_dataset_read reads it; NULL
 * for anything else. Malloc'ed. */
static char *label_text(jv v)
{
    switch (jv_get_kind(v)) {
    case JV_KIND_STRING:
        return strdup(jv_string_value(v));
    case JV_KIND_NUMBER:
    case JV_KIND_TRUE:
    case JV_KIND_FALSE: {
        jv s = jv_dump_string(jv_copy(v), 0);
        char *r = strdup(jv_string_value(s));
        jv_free(s);
        return r;
    }
    default:
        return NULL;
    }
}

int cv_tab_labels(const struct cv_table *t, const char *path, const int *rows, int nrows, const char *label_field,
                  const char *positive, char *names[2], int *y, jv *err)
{
    if (!rows)
        nrows = t->n;
    int given = names[0] != NULL;
    char *seen[3] = {NULL, NULL, NULL};
    int nseen = 0, code = 0;
    for (int i = 0; i < nrows && !code; i++) {
        int r = rows ? rows[i] : i;
        jv v = jv_object_get(jv_copy(t->rows[r]), jv_string(label_field));
        char *l = label_text(v);
        if (!l || !*l) {
            set_err(err,
                    !jv_is_valid(v) ? "%s:%d: no field \"%s\" (the label)"
                    : l             ? "%s:%d: field \"%s\" (the label) is empty"
                                    : "%s:%d: field \"%s\" (the label) is not a string, number or boolean",
                    path, t->lines[r], label_field);
            code = CV_EINVAL;
        } else if (given) {
            if (!strcmp(l, names[0]))
                y[i] = 0;
            else if (!strcmp(l, names[1]))
                y[i] = 1;
            else {
                set_err(err, "%s:%d: label \"%s\" is not one of the model's (\"%s\", \"%s\")", path, t->lines[r], l,
                        names[0], names[1]);
                code = CV_EINVAL;
            }
        } else {
            int k = 0;
            while (k < nseen && strcmp(seen[k], l))
                k++;
            if (k == nseen) {
                if (nseen == 2) {
                    set_err(err,
                            "%s:%d: a third label \"%s\" (after \"%s\" and \"%s\"): the tabular scorer is a binary "
                            "classifier",
                            path, t->lines[r], l, seen[0], seen[1]);
                    code = CV_EINVAL;
                } else {
                    seen[nseen++] = l;
                    l = NULL;
                }
            }
            y[i] = k;
        }
        free(l);
        jv_free(v);
    }
    if (!code && !given) {
        if (nseen < 2) {
            set_err(err, "%s: every row has the label \"%s\": a scorer needs two labels", path,
                    nseen ? seen[0] : "");
            code = CV_EINVAL;
        } else {
            int swap = strcmp(seen[0], seen[1]) > 0; /* ids follow byte order: the second is positive */
            if (positive) {
                if (!strcmp(positive, seen[0]))
                    swap = 1; /* seen[0] becomes id 1 */
                else if (!strcmp(positive, seen[1]))
                    swap = 0;
                else {
                    set_err(err, "%s: --positive \"%s\" is not a label of the data (\"%s\", \"%s\")", path, positive,
                            seen[0], seen[1]);
                    code = CV_EINVAL;
                }
            }
            if (!code) {
                if (swap)
                    for (int i = 0; i < nrows; i++)
                        y[i] = 1 - y[i];
                names[0] = seen[swap ? 1 : 0];
                names[1] = seen[swap ? 0 : 1];
                seen[0] = seen[1] = NULL;
            }
        }
    }
    free(seen[0]);
    free(seen[1]);
    return code;
}
