/*
 * tabxgb.c — checking an XGBoost booster (UBJSON bytes, as XGBoost 1.7's
 * XGBoosterSaveModelToBuffer writes them) before XGBoost's own loader sees it
 * (tabular_int.h, cv__tab_booster_check).
 *
 * Why: a tabular model file's checksum proves that it was not damaged by
 * accident, not that it was written by conveyor, and XGBoost trusts its
 * model files: an absurd array length makes it allocate without bound, a
 * child index out of range makes prediction read outside its arrays, a
 * chain of nodes millions deep overflows TreeSHAP's recursion. So the bytes
 * are decoded here, strictly, into a jv (only the UBJSON forms XGBoost
 * writes; every length bounded by the bytes left; nesting at most
 * MAX_DEPTH), and the parts of the model that XGBoost indexes with are
 * checked (split features below the learner's feature count, itself at
 * most the schema's columns). Anything else is refused with a message; only then does XGBoost
 * load the same bytes. Nothing else in conveyor reads XGBoost's format.
 *
 * UBJSON (ubjson.org) as XGBoost writes it: big-endian numbers; markers
 * i U I l L (integers of 1, 1, 2, 4, 8 bytes), d D (float32, float64),
 * S (string: an integer length, then the bytes), T F Z, '{' key value ...
 * '}' where a key is an integer length and bytes, '[' value ... ']',
 * counted arrays '[' '#' count followed by count values, and typed arrays
 * '[' '$' T '#' count followed by count bare values of type T.
 */
#include "ml/tabular_int.h"

#include "conveyor.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64       /* UBJSON nesting */
#define MAX_TREE_DEPTH 64  /* conveyor trains depth <= 16 */
#define MAX_NODES (1 << 20) /* per tree */

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

/* ------------------------------------------------------------------------ */
/* A strict UBJSON decoder                                                   */
/* ------------------------------------------------------------------------ */

struct ub {
    const unsigned char *b;
    size_t len, pos;
    const char *why; /* the first problem; NULL while all is well */
};

static int fail(struct ub *u, const char *why)
{
    if (!u->why)
        u->why = why;
    return -1;
}

static const unsigned char *take(struct ub *u, size_t n)
{
    if (u->why || u->len - u->pos < n) {
        fail(u, "truncated");
        return NULL;
    }
    const unsigned char *p = u->b + u->pos;
    u->pos += n;
    return p;
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Bytes of a bare value of an integer or float marker; 0 for others. */
static int width_of(unsigned char m)
{
    switch (m) {
    case 'i':
    case 'U':
        return 1;
    case 'I':
        return 2;
    case 'l':
    case 'd':
        return 4;
    case 'L':
    case 'D':
        return 8;
    default:
        return 0;
    }
}

/* A bare number of marker m as a double (integers exactly up to 2^53). */
static int bare_number(struct ub *u, unsigned char m, double *out)
{
    int w = width_of(m);
    const unsigned char *p = w ? take(u, (size_t)w) : NULL;
    if (!p)
        return fail(u, "a number is truncated or has an unknown type");
    uint64_t v = be(p, w);
    switch (m) {
    case 'i':
        *out = (int8_t)v;
        break;
    case 'U':
        *out = (uint8_t)v;
        break;
    case 'I':
        *out = (int16_t)v;
        break;
    case 'l':
        *out = (int32_t)v;
        break;
    case 'L':
        *out = (double)(int64_t)v;
        break;
    case 'd': {
        uint32_t x = (uint32_t)v;
        float f;
        memcpy(&f, &x, 4);
        *out = f;
        break;
    }
    default: {
        double f;
        memcpy(&f, &v, 8);
        *out = f;
    }
    }
    return 0;
}

/* A length: an integer marker and its value, 0 <= length <= bytes left. */
static int length(struct ub *u, size_t unit, size_t *out)
{
    const unsigned char *m = take(u, 1);
    double v = 0;
    if (!m || !strchr("iUIlL", *m) || !*m || bare_number(u, *m, &v))
        return fail(u, "a length is not an integer");
    if (!(v >= 0) || v > (double)(u->len - u->pos) / (double)(unit ? unit : 1))
        return fail(u, "a length is larger than the bytes left");
    *out = (size_t)v;
    return 0;
}

static int value(struct ub *u, int depth, jv *out);

static int text(struct ub *u, jv *out)
{
    size_t n = 0;
    if (length(u, 1, &n))
        return -1;
    const unsigned char *p = take(u, n);
    if (!p)
        return -1;
    *out = jv_string_sized((const char *)p, (int)n);
    return 0;
}

static int array(struct ub *u, int depth, jv *out)
{
    jv a = jv_array();
    const unsigned char *m = u->pos < u->len ? u->b + u->pos : NULL;
    if (m && *m == '$') { /* typed: '$' T '#' count */
        u->pos++;
        const unsigned char *t = take(u, 1), *h = take(u, 1);
        size_t n = 0;
        if (!t || !h || *h != '#' || !width_of(*t) || length(u, (size_t)width_of(*t), &n)) {
            jv_free(a);
            return fail(u, "a typed array is malformed");
        }
        for (size_t i = 0; i < n; i++) {
            double v = 0;
            if (bare_number(u, *t, &v)) {
                jv_free(a);
                return -1;
            }
            a = jv_array_append(a, jv_number(v));
        }
        *out = a;
        return 0;
    }
    if (m && *m == '#') { /* counted: '#' count, then count values, no ']' */
        u->pos++;
        size_t n = 0;
        if (length(u, 1, &n)) {
            jv_free(a);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            jv v;
            if (value(u, depth + 1, &v)) {
                jv_free(a);
                return -1;
            }
            a = jv_array_append(a, v);
        }
        *out = a;
        return 0;
    }
    for (;;) {
        if (u->pos >= u->len) {
            jv_free(a);
            return fail(u, "an array is not closed");
        }
        if (u->b[u->pos] == ']') {
            u->pos++;
            *out = a;
            return 0;
        }
        jv v;
        if (value(u, depth + 1, &v)) {
            jv_free(a);
            return -1;
        }
        a = jv_array_append(a, v);
    }
}

static int object(struct ub *u, int depth, jv *out)
{
    jv o = jv_object();
    for (;;) {
        if (u->pos >= u->len) {
            jv_free(o);
            return fail(u, "an object is not closed");
        }
        if (u->b[u->pos] == '}') {
            u->pos++;
            *out = o;
            return 0;
        }
        jv k, v;
        if (text(u, &k)) {
            jv_free(o);
            return -1;
        }
        if (value(u, depth + 1, &v)) {
            jv_free(k);
            jv_free(o);
            return -1;
        }
        o = jv_object_set(o, k, v);
    }
}

static int value(struct ub *u, int depth, jv *out)
{
    if (depth > MAX_DEPTH)
        return fail(u, "nested too deeply");
    const unsigned char *m = take(u, 1);
    if (!m)
        return -1;
    double v = 0;
    switch (*m) {
    case '{':
        return object(u, depth, out);
    case '[':
        return array(u, depth, out);
    case 'S':
        return text(u, out);
    case 'T':
        *out = jv_true();
        return 0;
    case 'F':
        *out = jv_false();
        return 0;
    case 'Z':
        *out = jv_null();
        return 0;
    default:
        if (!width_of(*m))
            return fail(u, "an unknown UBJSON marker");
        if (bare_number(u, *m, &v))
            return -1;
        *out = jv_number(v);
        return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* The model's structure                                                     */
/* ------------------------------------------------------------------------ */

/* o[k1][k2]... (NULL-terminated keys; o borrowed; result new) */
static jv at(jv o, ...)
{
    va_list ap;
    va_start(ap, o);
    jv v = jv_copy(o);
    for (const char *k; (k = va_arg(ap, const char *));) {
        if (jv_get_kind(v) != JV_KIND_OBJECT) {
            jv_free(v);
            v = jv_invalid();
            break;
        }
        v = jv_object_get(v, jv_string(k));
    }
    va_end(ap);
    return v;
}

/* XGBoost keeps counts as texts ("257"): a whole number 0..max, else -1 */
static long count_text(jv v, long max)
{
    long r = -1;
    if (jv_get_kind(v) == JV_KIND_STRING) {
        const char *s = jv_string_value(v);
        char *end = NULL;
        long n = strtol(s, &end, 10);
        if (*s >= '0' && *s <= '9' && !*end && n >= 0 && n <= max)
            r = n;
    }
    jv_free(v);
    return r;
}

/* v (consumed) is an array of n numbers: 0 or -1 */
static int numbers(jv v, long n)
{
    int ok = jv_get_kind(v) == JV_KIND_ARRAY && jv_array_length(jv_copy(v)) == n;
    for (long i = 0; ok && i < n; i++) {
        jv e = jv_array_get(jv_copy(v), (int)i);
        ok = jv_get_kind(e) == JV_KIND_NUMBER;
        jv_free(e);
    }
    jv_free(v);
    return ok ? 0 : -1;
}

/* ncols: the learner's features (<= the schema's columns); XGBoost sizes
 * its per-feature buffers (TreeSHAP's output, the dense feature vector)
 * with it, so every split feature must be below it */
static int check_tree(jv t, long index, int ncols, jv *err)
{
    jv param = at(t, "tree_param", NULL);
    long n = count_text(at(param, "num_nodes", NULL), MAX_NODES);
    long deleted = count_text(at(param, "num_deleted", NULL), MAX_NODES);
    long nfeat = count_text(at(param, "num_feature", NULL), 100000000);
    long leafvec = count_text(at(param, "size_leaf_vector", NULL), 0);
    jv_free(param);
    if (n < 1 || deleted != 0 || nfeat < 0 || nfeat > ncols || leafvec != 0) {
        set_err(err, "tree %ld: bad tree_param", index);
        return CV_EINVAL;
    }
    jv id = at(t, "id", NULL);
    int id_ok = jv_get_kind(id) == JV_KIND_NUMBER && jv_number_value(id) == (double)index;
    jv_free(id);
    static const char *const per_node[] = {"left_children", "right_children",   "parents",      "split_indices",
                                           "split_conditions", "default_left", "base_weights", "loss_changes",
                                           "sum_hessian",   "split_type"};
    for (size_t i = 0; i < sizeof per_node / sizeof per_node[0]; i++)
        if (numbers(at(t, per_node[i], NULL), n)) {
            set_err(err, "tree %ld: \"%s\" is not an array of %ld numbers", index, per_node[i], n);
            return CV_EINVAL;
        }
    static const char *const empty[] = {"categories", "categories_nodes", "categories_segments", "categories_sizes"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        jv c = at(t, empty[i], NULL);
        int ok = !jv_is_valid(c) || numbers(jv_copy(c), 0) == 0;
        jv_free(c);
        if (!ok) {
            set_err(err, "tree %ld: categorical splits (\"%s\"), which conveyor does not train", index, empty[i]);
            return CV_EINVAL;
        }
    }
    if (!id_ok) {
        set_err(err, "tree %ld: its id is not %ld", index, index);
        return CV_EINVAL;
    }
    jv left = at(t, "left_children", NULL), right = at(t, "right_children", NULL), par = at(t, "parents", NULL);
    jv split = at(t, "split_indices", NULL), cond = at(t, "split_conditions", NULL), st = at(t, "split_type", NULL);
    jv dl = at(t, "default_left", NULL);
    unsigned char *depth = calloc((size_t)n, 1); /* 0: not reached; else 1 + the node's depth */
    const char *why = depth ? NULL : "out of memory";
    if (depth)
        depth[0] = 1;
    /* children come after their parent (XGBoost appends them), so one pass
     * in index order reaches every node from the root, at most once */
    for (long i = 0; i < n && !why; i++) {
        int l = (int)jv_number_value(jv_array_get(jv_copy(left), (int)i));
        int r = (int)jv_number_value(jv_array_get(jv_copy(right), (int)i));
        double f = jv_number_value(jv_array_get(jv_copy(split), (int)i));
        double c = jv_number_value(jv_array_get(jv_copy(cond), (int)i));
        double s = jv_number_value(jv_array_get(jv_copy(st), (int)i));
        double d = jv_number_value(jv_array_get(jv_copy(dl), (int)i));
        if (!depth[i])
            why = "a node is not reached from the root";
        else if (!isfinite(c) || s != 0 || (d != 0 && d != 1))
            why = "a split condition, split type or default direction is invalid";
        else if ((l == -1) != (r == -1))
            why = "a node has one child";
        else if (l != -1) {
            if (l <= i || r <= i || l >= n || r >= n || l == r || depth[l] || depth[r])
                why = "a child index is out of range or repeated";
            else if (!(f >= 0 && f < ncols) || f != floor(f))
                why = "a split feature is out of range";
            else if (depth[i] >= MAX_TREE_DEPTH)
                why = "the tree is too deep";
            else if (jv_number_value(jv_array_get(jv_copy(par), l)) != (double)i ||
                     jv_number_value(jv_array_get(jv_copy(par), r)) != (double)i)
                why = "a child's parent is not its parent";
            else
                depth[l] = depth[r] = (unsigned char)(depth[i] + 1);
        }
    }
    free(depth);
    jv_free(left);
    jv_free(right);
    jv_free(par);
    jv_free(split);
    jv_free(cond);
    jv_free(st);
    jv_free(dl);
    if (why) {
        set_err(err, "tree %ld: %s", index, why);
        return CV_EINVAL;
    }
    return 0;
}

static int check_model(jv root, int ncols, jv *err)
{
    jv name = at(root, "learner", "gradient_booster", "name", NULL);
    jv obj = at(root, "learner", "objective", "name", NULL);
    int ok = jv_get_kind(name) == JV_KIND_STRING && !strcmp(jv_string_value(name), "gbtree") &&
             jv_get_kind(obj) == JV_KIND_STRING && !strcmp(jv_string_value(obj), "binary:logistic");
    jv_free(name);
    jv_free(obj);
    if (!ok) {
        set_err(err, "not a gbtree binary:logistic model");
        return CV_EINVAL;
    }
    jv lp = at(root, "learner", "learner_model_param", NULL);
    long nfeat = count_text(at(lp, "num_feature", NULL), 100000000);
    long ncls = count_text(at(lp, "num_class", NULL), 1);
    jv target = at(lp, "num_target", NULL);
    long ntarget = jv_is_valid(target) ? count_text(target, 1) : (jv_free(target), 1);
    jv_free(lp);
    if (nfeat < 0 || nfeat > ncols || ncls < 0 || ntarget != 1) {
        set_err(err, "the learner's parameters do not match the schema (%d columns, one output)", ncols);
        return CV_EINVAL;
    }
    static const char *const names[] = {"feature_names", "feature_types"};
    for (int i = 0; i < 2; i++) {
        jv a = at(root, "learner", names[i], NULL);
        ok = !jv_is_valid(a) || (jv_get_kind(a) == JV_KIND_ARRAY && jv_array_length(jv_copy(a)) == 0);
        jv_free(a);
        if (!ok) {
            set_err(err, "unexpected \"%s\"", names[i]);
            return CV_EINVAL;
        }
    }
    jv model = at(root, "learner", "gradient_booster", "model", NULL);
    jv mp = at(model, "gbtree_model_param", NULL);
    long ntrees = count_text(at(mp, "num_trees", NULL), 1000000);
    long npar = count_text(at(mp, "num_parallel_tree", NULL), 1);
    jv_free(mp);
    jv trees = at(model, "trees", NULL), info = at(model, "tree_info", NULL);
    jv_free(model);
    int code = 0;
    if (ntrees < 0 || npar != 1 || jv_get_kind(trees) != JV_KIND_ARRAY || jv_get_kind(info) != JV_KIND_ARRAY ||
        jv_array_length(jv_copy(trees)) != ntrees || jv_array_length(jv_copy(info)) != ntrees) {
        set_err(err, "the number of trees does not match the booster's parameters");
        code = CV_EINVAL;
    }
    for (long i = 0; i < ntrees && !code; i++) {
        jv g = jv_array_get(jv_copy(info), (int)i);
        ok = jv_get_kind(g) == JV_KIND_NUMBER && jv_number_value(g) == 0;
        jv_free(g);
        if (!ok) {
            set_err(err, "tree %ld belongs to an output group other than 0", i);
            code = CV_EINVAL;
            break;
        }
        jv t = jv_array_get(jv_copy(trees), (int)i);
        code = jv_get_kind(t) == JV_KIND_OBJECT ? check_tree(t, i, (int)nfeat, err) : CV_EINVAL;
        if (code && !(err && jv_get_kind(*err) == JV_KIND_STRING))
            set_err(err, "tree %ld is not an object", i);
        jv_free(t);
    }
    jv_free(trees);
    jv_free(info);
    return code;
}

int cv__tab_booster_check(const unsigned char *b, size_t len, int ncols, jv *err)
{
    struct ub u = {.b = b, .len = len};
    jv root = jv_invalid();
    if (len < 1 || b[0] != '{' || value(&u, 0, &root) || u.pos != len) {
        if (!u.why)
            u.why = len < 1 || b[0] != '{' ? "not a UBJSON object" : "bytes after the model";
        jv_free(root);
        set_err(err, "tabular model file: the booster is not valid UBJSON (%s at byte %zu)", u.why, u.pos);
        return CV_EINVAL;
    }
    jv why = jv_invalid();
    int code = check_model(root, ncols, &why);
    jv_free(root);
    if (code)
        set_err(err, "tabular model file: the booster is malformed: %s",
                jv_get_kind(why) == JV_KIND_STRING ? jv_string_value(why) : "?");
    jv_free(why);
    return code;
}
