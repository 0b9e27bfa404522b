/*
 * dataset.c — labeled text data for training, evaluation and prediction
 * (ml.h): the JSON lines and CSV readers, the data's SHA-256 (the model
 * card's training data digest) and the seeded stratified hold-out split.
 *
 * Every message about the data names the file and the line where the row
 * starts ("claims.csv:17: no value for column \"label\""), because these
 * files are written by people and scripts and must be easy to fix.
 */
#include "ml/ml.h"

#include "conveyor.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void cv_ml_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32) {
        memset(hex, '0', 64);
    } else {
        static const char digits[] = "0123456789abcdef";
        for (int i = 0; i < 32; i++) {
            hex[2 * i] = digits[md[i] >> 4];
            hex[2 * i + 1] = digits[md[i] & 15];
        }
    }
    hex[64] = 0;
}

/* ------------------------------------------------------------------------ */
/* Rows being collected                                                      */
/* ------------------------------------------------------------------------ */

struct rows {
    int n, cap;
    char **texts, **labels; /* labels: strings until they become ids */
    int *lines;
};

static int rows_add(struct rows *r, char *text, char *label, int line)
{
    if (r->n == r->cap) {
        int nc = r->cap ? r->cap * 2 : 256;
        char **t = realloc(r->texts, (size_t)nc * sizeof *t);
        if (t)
            r->texts = t;
        char **l = realloc(r->labels, (size_t)nc * sizeof *l);
        if (l)
            r->labels = l;
        int *li = realloc(r->lines, (size_t)nc * sizeof *li);
        if (li)
            r->lines = li;
        if (!t || !l || !li) {
            free(text);
            free(label);
            return CV_ENOMEM;
        }
        r->cap = nc;
    }
    r->texts[r->n] = text;
    r->labels[r->n] = label;
    r->lines[r->n] = line;
    r->n++;
    return 0;
}

static void rows_free(struct rows *r)
{
    for (int i = 0; i < r->n; i++) {
        if (r->texts)
            free(r->texts[i]);
        if (r->labels)
            free(r->labels[i]);
    }
    free(r->texts);
    free(r->labels);
    free(r->lines);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Moves the rows into d, turning label strings into ids of sorted names. */
static int rows_finish(struct rows *r, int with_labels, struct cv_dataset *d)
{
    d->n = r->n;
    d->texts = r->texts;
    d->lines = r->lines;
    r->texts = NULL;
    r->lines = NULL;
    if (!with_labels) {
        free(r->labels);
        r->labels = NULL;
        r->n = 0;
        return 0;
    }
    char **sorted = malloc((size_t)r->n * sizeof *sorted);
    d->labels = malloc((size_t)r->n * sizeof *d->labels);
    if (!sorted || !d->labels) {
        free(sorted);
        return CV_ENOMEM;
    }
    memcpy(sorted, r->labels, (size_t)r->n * sizeof *sorted);
    qsort(sorted, (size_t)r->n, sizeof *sorted, str_cmp);
    int k = 0;
    for (int i = 0; i < r->n; i++)
        if (i == 0 || strcmp(sorted[i], sorted[k - 1]))
            sorted[k++] = sorted[i];
    d->label_names = calloc((size_t)k, sizeof *d->label_names);
    if (!d->label_names) {
        free(sorted);
        return CV_ENOMEM;
    }
    d->n_labels = k;
    for (int i = 0; i < k; i++) {
        d->label_names[i] = strdup(sorted[i]);
        if (!d->label_names[i]) {
            free(sorted);
            return CV_ENOMEM;
        }
    }
    for (int i = 0; i < r->n; i++) {
        char **hit = bsearch(&r->labels[i], sorted, (size_t)k, sizeof *sorted, str_cmp);
        d->labels[i] = (int)(hit - sorted);
    }
    free(sorted);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* JSON lines                                                                */
/* ------------------------------------------------------------------------ */

/* The label of a JSON value (borrowed): a string as is, a number or a
 * boolean as its JSON text; NULL for anything else. */
static char *label_of(jv v)
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

static int read_jsonl(const char *path, const char *buf, size_t len, const char *text_field,
                      const char *label_field, struct rows *r, jv *err)
{
    size_t pos = 0;
    int line = 0;
    while (pos < len) {
        line++;
        const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        size_t a = 0;
        while (a < n && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r'))
            a++;
        if (a == n)
            continue; /* a blank line */
        jv o = jv_parse_sized(s, (int)n);
        if (!jv_is_valid(o)) {
            jv msg = jv_invalid_get_msg(o);
            set_err(err, "%s:%d: not valid JSON (%s)", path, line,
                    jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "?");
            jv_free(msg);
            return CV_EINVAL;
        }
        if (jv_get_kind(o) != JV_KIND_OBJECT) {
            jv_free(o);
            set_err(err, "%s:%d: not a JSON object (JSON lines: one object per line)", path, line);
            return CV_EINVAL;
        }
        jv t = jv_object_get(jv_copy(o), jv_string(text_field));
        if (jv_get_kind(t) != JV_KIND_STRING) {
            set_err(err, jv_is_valid(t) ? "%s:%d: field \"%s\" is not a string" : "%s:%d: no field \"%s\" (the text)",
                    path, line, text_field);
            jv_free(t);
            jv_free(o);
            return CV_EINVAL;
        }
        char *text = strdup(jv_string_value(t));
        jv_free(t);
        char *label = NULL;
        if (label_field) {
            jv l = jv_object_get(jv_copy(o), jv_string(label_field));
            label = label_of(l);
            if (!label || !*label) {
                set_err(err,
                        !jv_is_valid(l) ? "%s:%d: no field \"%s\" (the label)"
                        : label         ? "%s:%d: field \"%s\" (the label) is empty"
                                        : "%s:%d: field \"%s\" (the label) is not a string, number or boolean",
                        path, line, label_field);
                jv_free(l);
                jv_free(o);
                free(text);
                free(label);
                return CV_EINVAL;
            }
            jv_free(l);
        }
        jv_free(o);
        if (!text || (label_field && !label)) {
            free(text);
            free(label);
            return CV_ENOMEM;
        }
        int code = rows_add(r, text, label, line);
        if (code)
            return code;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* CSV (RFC 4180: comma-separated, "quoted" fields with "" for a quote,      */
/* CRLF or LF line ends, line breaks allowed inside quotes)                  */
/* ------------------------------------------------------------------------ */

struct csv {
    const char *buf;
    size_t len, pos;
    int line; /* the current line (1-based) */
    char **f; /* fields of the last record */
    int nf, capf;
};

static void csv_clear(struct csv *c)
{
    for (int i = 0; i < c->nf; i++)
        free(c->f[i]);
    c->nf = 0;
}

static int csv_push(struct csv *c, const char *s, size_t n, int unquote)
{
    if (c->nf == c->capf) {
        int nc = c->capf ? c->capf * 2 : 16;
        char **nf = realloc(c->f, (size_t)nc * sizeof *nf);
        if (!nf)
            return CV_ENOMEM;
        c->f = nf;
        c->capf = nc;
    }
    char *v = malloc(n + 1);
    if (!v)
        return CV_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        v[o++] = s[i];
        if (unquote && s[i] == '"')
            i++; /* "" stands for one quote */
    }
    v[o] = 0;
    c->f[c->nf++] = v;
    return 0;
}

/* Reads the next record into c->f. Returns 1 for a record, 0 at the end, or
 * a CV_* code with *err. Skips empty lines. *start = the record's line. */
static int csv_next(struct csv *c, const char *path, int *start, jv *err)
{
    csv_clear(c);
    while (c->pos < c->len && (c->buf[c->pos] == '\n' || c->buf[c->pos] == '\r')) {
        if (c->buf[c->pos] == '\n')
            c->line++;
        c->pos++;
    }
    if (c->pos >= c->len)
        return 0;
    *start = c->line;
    for (;;) {
        const char *b = c->buf;
        int code;
        if (c->pos < c->len && b[c->pos] == '"') {
            size_t s = ++c->pos;
            int opened = c->line;
            for (;;) {
                if (c->pos >= c->len) {
                    set_err(err, "%s:%d: a quoted field is not closed", path, opened);
                    return CV_EINVAL;
                }
                char ch = b[c->pos];
                if (ch == '"') {
                    if (c->pos + 1 < c->len && b[c->pos + 1] == '"') {
                        c->pos += 2;
                        continue;
                    }
                    break;
                }
                if (ch == '\n')
                    c->line++;
                c->pos++;
            }
            code = csv_push(c, b + s, c->pos - s, 1);
            c->pos++; /* the closing quote */
            if (!code && c->pos < c->len && b[c->pos] != ',' && b[c->pos] != '\n' &&
                !(b[c->pos] == '\r' && (c->pos + 1 == c->len || b[c->pos + 1] == '\n'))) {
                set_err(err, "%s:%d: characters after a closing quote (a quote inside a field is written \"\")",
                        path, c->line);
                return CV_EINVAL;
            }
        } else {
            size_t s = c->pos;
            while (c->pos < c->len && b[c->pos] != ',' && b[c->pos] != '\n')
                c->pos++;
            size_t e = c->pos;
            if (e > s && b[e - 1] == '\r' && (e == c->len || b[e] == '\n'))
                e--;
            code = csv_push(c, b + s, e - s, 0);
        }
        if (code) {
            set_err(err, "out of memory");
            return code;
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

static int read_csv(const char *path, const char *buf, size_t len, const char *text_field, const char *label_field,
                    struct rows *r, jv *err)
{
    struct csv c = {.buf = buf, .len = len, .line = 1};
    int start = 1, code = csv_next(&c, path, &start, err);
    int tcol = -1, lcol = -1, ncols = 0;
    if (code == 0) {
        set_err(err, "%s: empty file (a CSV file starts with a header row)", path);
        code = CV_EINVAL;
    }
    if (code < 0)
        goto out;
    ncols = c.nf;
    for (int i = 0; i < c.nf; i++) {
        if (tcol < 0 && !strcmp(c.f[i], text_field))
            tcol = i;
        if (label_field && lcol < 0 && !strcmp(c.f[i], label_field))
            lcol = i;
    }
    if (tcol < 0 || (label_field && lcol < 0)) {
        set_err(err, "%s:%d: no column \"%s\" in the header (the %s)", path, start,
                tcol < 0 ? text_field : label_field, tcol < 0 ? "text" : "label");
        code = CV_EINVAL;
        goto out;
    }
    while ((code = csv_next(&c, path, &start, err)) == 1) {
        if (c.nf != ncols) {
            set_err(err, "%s:%d: %d fields where the header has %d", path, start, c.nf, ncols);
            code = CV_EINVAL;
            goto out;
        }
        if (label_field && !*c.f[lcol]) {
            set_err(err, "%s:%d: no value for column \"%s\" (the label)", path, start, label_field);
            code = CV_EINVAL;
            goto out;
        }
        char *text = c.f[tcol], *label = label_field ? c.f[lcol] : NULL;
        c.f[tcol] = NULL;
        if (label_field)
            c.f[lcol] = NULL;
        code = rows_add(r, text, label, start);
        if (code) {
            set_err(err, "out of memory");
            goto out;
        }
    }
out:
    csv_clear(&c);
    free(c.f);
    return code < 0 ? code : 0;
}

/* ------------------------------------------------------------------------ */
/* Reading a file                                                            */
/* ------------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

int cv_dataset_read(const char *path, const char *text_field, const char *label_field, struct cv_dataset *out,
                    jv *err)
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
    if (!buf) {
        set_err(err, "%s: out of memory", path);
        return CV_ENOMEM;
    }
    if (bad) {
        free(buf);
        set_err(err, "%s: read error", path);
        return CV_EIO;
    }
    cv_ml_sha256_hex(buf, len, out->sha256);
    const char *b = buf;
    size_t n = len;
    if (n >= 3 && !memcmp(b, "\xEF\xBB\xBF", 3)) { /* a UTF-8 byte order mark */
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
    struct rows r = {0};
    int code = csv ? read_csv(path, b, n, text_field, label_field, &r, err)
                   : read_jsonl(path, b, n, text_field, label_field, &r, err);
    free(buf);
    if (!code && r.n == 0) {
        set_err(err, "%s: no rows", path);
        code = CV_EINVAL;
    }
    if (!code)
        code = rows_finish(&r, label_field != NULL, out);
    if (code == CV_ENOMEM)
        set_err(err, "%s: out of memory", path);
    rows_free(&r);
    if (code) {
        char keep[65];
        memcpy(keep, out->sha256, sizeof keep);
        cv_dataset_cleanup(out);
        memcpy(out->sha256, keep, sizeof keep);
    }
    return code;
}

void cv_dataset_cleanup(struct cv_dataset *d)
{
    if (!d)
        return;
    for (int i = 0; d->texts && i < d->n; i++)
        free(d->texts[i]);
    free(d->texts);
    free(d->labels);
    free(d->lines);
    for (int i = 0; d->label_names && i < d->n_labels; i++)
        free(d->label_names[i]);
    free(d->label_names);
    memset(d, 0, sizeof *d);
}

int cv_dataset_append(struct cv_dataset *d, int k, char *const *texts, char *const *labels)
{
    struct rows r = {0};
    int code = 0;
    for (int i = 0; i < d->n + k && !code; i++) {
        int old = i < d->n;
        char *t = strdup(old ? d->texts[i] : texts[i - d->n]);
        char *l = strdup(old ? d->label_names[d->labels[i]] : labels[i - d->n]);
        if (!t || !l) {
            free(t);
            free(l);
            code = CV_ENOMEM;
        } else {
            code = rows_add(&r, t, l, old ? d->lines[i] : 0);
        }
    }
    struct cv_dataset nd;
    memset(&nd, 0, sizeof nd);
    if (!code)
        code = rows_finish(&r, 1, &nd);
    rows_free(&r);
    if (code) {
        cv_dataset_cleanup(&nd);
        return code;
    }
    memcpy(nd.sha256, d->sha256, sizeof nd.sha256);
    cv_dataset_cleanup(d);
    *d = nd;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The stratified split                                                      */
/* ------------------------------------------------------------------------ */

/* splitmix64: a small, well-mixed generator; the split depends on its exact
 * output, so it is fixed here rather than taken from the C library. */
static uint64_t next_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (n >= 1): Lemire's multiply-shift with rejection. */
static uint32_t below(uint64_t *state, uint32_t n)
{
    uint64_t threshold = (uint64_t)(-(uint64_t)n % n);
    for (;;) {
        uint64_t x = next_u64(state) >> 32;
        uint64_t m = x * n;
        if ((uint32_t)m >= threshold)
            return (uint32_t)(m >> 32);
    }
}

static int int_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int cv_dataset_split(const struct cv_dataset *d, double holdout, uint64_t seed, int **train, int *ntrain, int **test,
                     int *ntest)
{
    *train = *test = NULL;
    *ntrain = *ntest = 0;
    if (!d->labels || !(holdout > 0 && holdout < 1))
        return CV_EINVAL;
    int *tr = malloc(((size_t)d->n + 1) * sizeof *tr), *te = malloc(((size_t)d->n + 1) * sizeof *te);
    int *members = malloc(((size_t)d->n + 1) * sizeof *members);
    if (!tr || !te || !members) {
        free(tr);
        free(te);
        free(members);
        return CV_ENOMEM;
    }
    uint64_t state = seed;
    int ntr = 0, nte = 0;
    for (int c = 0; c < d->n_labels; c++) {
        int m = 0;
        for (int i = 0; i < d->n; i++)
            if (d->labels[i] == c)
                members[m++] = i;
        for (int i = m - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)below(&state, (uint32_t)i + 1);
            int t = members[i];
            members[i] = members[j];
            members[j] = t;
        }
        int h = (int)(m * holdout + 0.5);
        if (m >= 2) {
            h = h < 1 ? 1 : h > m - 1 ? m - 1 : h;
        } else {
            h = 0;
        }
        for (int i = 0; i < m; i++) {
            if (i < h)
                te[nte++] = members[i];
            else
                tr[ntr++] = members[i];
        }
    }
    free(members);
    qsort(tr, (size_t)ntr, sizeof *tr, int_cmp);
    qsort(te, (size_t)nte, sizeof *te, int_cmp);
    *train = tr;
    *test = te;
    *ntrain = ntr;
    *ntest = nte;
    return 0;
}
