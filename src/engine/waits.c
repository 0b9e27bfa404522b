/*
 * waits.c — one worker's index of the instances it evicted to the store
 * (engine_int.h, DESIGN.md decision 5: a waiting instance holds nothing but
 * an index entry).
 *
 * An evicted instance is a `waiter`: its id, its wake time in a binary heap,
 * and links into `buckets` of a hash table, one per key of what its listens
 * wait for (cv__instance_wait_keys):
 *   "*"                 events of any type;
 *   "t" TYPE            every event of TYPE;
 *   "c" F "\x1f" VALUES  events of F's type whose correlation values (F's
 *                       `from`s on the event) are VALUES; F is the filter's
 *                       address, a `group` per F (with its type) says which
 *                       `from`s to evaluate for an event of that type.
 * So an event reloads the instances keyed on any type, on its type alone,
 * and, per correlated filter of its type, those expecting its values: one
 * lookup each, however many listen with other values. Everything here
 * belongs to one worker thread; nothing is locked.
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hnode {
    struct hnode *next;
    unsigned hash;
    const char *key;
};

struct htab {
    struct hnode **slots;
    size_t cap, n;
};

struct group;
struct bucket;

struct wlink {
    struct waiter *w;
    struct bucket *b;
    struct group *g; /* the correlated filter of a "c" key, else NULL */
    struct wlink *prev, *next; /* in b */
    struct wlink *wnext;       /* the waiter's links */
};

struct waiter {
    struct hnode h; /* key: id */
    char id[37];
    int heap_pos; /* -1: no timer */
    int64_t wake;
    struct wlink *links;
    struct wlink first; /* the first link lives here (most listens have one key) */
};

struct bucket {
    struct hnode h; /* key: key */
    struct wlink *head;
    char key[];
};

struct group {
    const cv_workflow *wf;
    const struct cv_event_filter *f;
    char *type;
    int refs;
    struct group *next;
};

struct cv_waits {
    struct htab ids, buckets;
    struct waiter **heap;
    int nheap, capheap;
    struct group *groups;
};

/* ---- a chained hash table of string keys ---------------------------------------------- */

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct hnode *ht_find(const struct htab *t, const char *key)
{
    if (!t->cap)
        return NULL;
    unsigned h = hash_str(key);
    for (struct hnode *n = t->slots[h & (t->cap - 1)]; n; n = n->next)
        if (n->hash == h && !strcmp(n->key, key))
            return n;
    return NULL;
}

static int ht_put(struct htab *t, struct hnode *node)
{
    if (t->n + 1 > t->cap / 2) { /* grow: load factor at most 1/2 */
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct hnode **slots = calloc(cap, sizeof *slots);
        if (!slots)
            return CV_ENOMEM;
        for (size_t i = 0; i < t->cap; i++)
            for (struct hnode *n = t->slots[i], *next; n; n = next) {
                next = n->next;
                n->next = slots[n->hash & (cap - 1)];
                slots[n->hash & (cap - 1)] = n;
            }
        free(t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    node->hash = hash_str(node->key);
    struct hnode **slot = &t->slots[node->hash & (t->cap - 1)];
    node->next = *slot;
    *slot = node;
    t->n++;
    return 0;
}

static void ht_del(struct htab *t, struct hnode *node)
{
    for (struct hnode **p = &t->slots[node->hash & (t->cap - 1)]; *p; p = &(*p)->next)
        if (*p == node) {
            *p = node->next;
            t->n--;
            return;
        }
}

/* ---- the timer heap ------------------------------------------------------------------------ */

static void heap_swap(struct cv_waits *ws, int a, int b)
{
    struct waiter *t = ws->heap[a];
    ws->heap[a] = ws->heap[b];
    ws->heap[b] = t;
    ws->heap[a]->heap_pos = a;
    ws->heap[b]->heap_pos = b;
}

static void heap_up(struct cv_waits *ws, int i)
{
    while (i > 0 && ws->heap[(i - 1) / 2]->wake > ws->heap[i]->wake) {
        heap_swap(ws, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct cv_waits *ws, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < ws->nheap && ws->heap[l]->wake < ws->heap[m]->wake)
            m = l;
        if (r < ws->nheap && ws->heap[r]->wake < ws->heap[m]->wake)
            m = r;
        if (m == i)
            return;
        heap_swap(ws, i, m);
        i = m;
    }
}

static void heap_remove(struct cv_waits *ws, struct waiter *w)
{
    int i = w->heap_pos;
    if (i < 0)
        return;
    w->heap_pos = -1;
    ws->nheap--;
    if (i == ws->nheap)
        return;
    ws->heap[i] = ws->heap[ws->nheap];
    ws->heap[i]->heap_pos = i;
    heap_up(ws, i);
    heap_down(ws, ws->heap[i]->heap_pos);
}

/* ---- waiters and their keys ------------------------------------------------------------------ */

struct cv_waits *cv__waits_new(void) { return calloc(1, sizeof(struct cv_waits)); }

static void unlink_all(struct cv_waits *ws, struct waiter *w)
{
    while (w->links) {
        struct wlink *l = w->links;
        w->links = l->wnext;
        if (l->prev)
            l->prev->next = l->next;
        else
            l->b->head = l->next;
        if (l->next)
            l->next->prev = l->prev;
        if (!l->b->head) { /* an empty bucket goes */
            ht_del(&ws->buckets, &l->b->h);
            free(l->b);
        }
        if (l->g && --l->g->refs == 0) {
            for (struct group **p = &ws->groups; *p; p = &(*p)->next)
                if (*p == l->g) {
                    *p = l->g->next;
                    break;
                }
            free(l->g->type);
            free(l->g);
        }
        if (l != &w->first)
            free(l);
    }
}

static void waiter_free(struct cv_waits *ws, struct waiter *w)
{
    unlink_all(ws, w);
    heap_remove(ws, w);
    ht_del(&ws->ids, &w->h);
    free(w);
}

void cv__waits_free(struct cv_waits *ws)
{
    if (!ws)
        return;
    for (size_t i = 0; i < ws->ids.cap; i++)
        while (ws->ids.slots[i])
            waiter_free(ws, (struct waiter *)ws->ids.slots[i]);
    free(ws->ids.slots);
    free(ws->buckets.slots);
    free(ws->heap);
    free(ws);
}

/* Links `w` into the bucket `key` (created if need be). 0 or CV_ENOMEM. */
static int link_key(struct cv_waits *ws, struct waiter *w, const char *key, struct group *g)
{
    struct bucket *b = (struct bucket *)ht_find(&ws->buckets, key);
    for (struct wlink *l = w->links; b && l; l = l->wnext)
        if (l->b == b)
            return 0; /* two filters with one key: once is enough */
    struct wlink *l = w->links ? calloc(1, sizeof *l) : &w->first;
    if (!l)
        return CV_ENOMEM;
    if (!b) {
        size_t kn = strlen(key) + 1;
        b = malloc(sizeof *b + kn);
        if (b) {
            memcpy(b->key, key, kn);
            b->h.key = b->key;
            b->head = NULL;
        }
        if (!b || ht_put(&ws->buckets, &b->h)) {
            free(b);
            if (l != &w->first)
                free(l);
            return CV_ENOMEM;
        }
    }
    l->w = w;
    l->b = b;
    l->g = g;
    if (g)
        g->refs++;
    l->prev = NULL;
    l->next = b->head;
    if (b->head)
        b->head->prev = l;
    b->head = l;
    l->wnext = w->links;
    w->links = l;
    return 0;
}

struct addctx {
    struct cv_waits *ws;
    struct waiter *w;
    int rc;
};

static void add_key(void *ud, const char *type, const cv_workflow *wf, const struct cv_event_filter *f,
                    const char *values)
{
    struct addctx *a = ud;
    if (a->rc)
        return;
    if (!type) {
        a->rc = link_key(a->ws, a->w, "*", NULL);
        return;
    }
    if (!f) {
        size_t n = strlen(type) + 2;
        char *key = malloc(n);
        if (!key) {
            a->rc = CV_ENOMEM;
            return;
        }
        snprintf(key, n, "t%s", type);
        a->rc = link_key(a->ws, a->w, key, NULL);
        free(key);
        return;
    }
    struct group *g = a->ws->groups;
    while (g && g->f != f)
        g = g->next;
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g || !(g->type = strdup(type))) {
            free(g);
            a->rc = CV_ENOMEM;
            return;
        }
        g->wf = wf;
        g->f = f;
        g->next = a->ws->groups;
        a->ws->groups = g;
    }
    size_t n = strlen(values) + 40;
    char *key = malloc(n);
    if (!key) {
        a->rc = CV_ENOMEM;
    } else {
        snprintf(key, n, "c%p\x1f%s", (const void *)f, values);
        a->rc = link_key(a->ws, a->w, key, g);
        free(key);
    }
    if (g->refs == 0) { /* not linked after all */
        for (struct group **p = &a->ws->groups; *p; p = &(*p)->next)
            if (*p == g) {
                *p = g->next;
                break;
            }
        free(g->type);
        free(g);
    }
}

int cv__waits_add(struct cv_waits *ws, const char *id, int64_t wake, struct instance *in)
{
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        return CV_ENOMEM;
    snprintf(w->id, sizeof w->id, "%s", id);
    w->h.key = w->id;
    w->wake = wake;
    w->heap_pos = -1;
    if (ht_find(&ws->ids, id) || ht_put(&ws->ids, &w->h)) {
        free(w);
        return CV_ENOMEM;
    }
    if (in) {
        struct addctx a = {ws, w, 0};
        cv__instance_wait_keys(in, add_key, &a);
        if (a.rc) {
            waiter_free(ws, w);
            return a.rc;
        }
    }
    if (wake) {
        if (ws->nheap == ws->capheap) {
            int cap = ws->capheap ? ws->capheap * 2 : 256;
            struct waiter **h = realloc(ws->heap, (size_t)cap * sizeof *h);
            if (!h) {
                waiter_free(ws, w);
                return CV_ENOMEM;
            }
            ws->heap = h;
            ws->capheap = cap;
        }
        w->heap_pos = ws->nheap;
        ws->heap[ws->nheap++] = w;
        heap_up(ws, w->heap_pos);
    }
    return 0;
}

int cv__waits_remove(struct cv_waits *ws, const char *id)
{
    struct waiter *w = (struct waiter *)ht_find(&ws->ids, id);
    if (!w)
        return 0;
    waiter_free(ws, w);
    return 1;
}

int cv__waits_due(struct cv_waits *ws, int64_t now, char (*ids)[37], int max)
{
    int n = 0;
    while (n < max && ws->nheap && ws->heap[0]->wake <= now) {
        struct waiter *w = ws->heap[0];
        memcpy(ids[n++], w->id, sizeof w->id);
        waiter_free(ws, w);
    }
    return n;
}

int64_t cv__waits_next_wake(const struct cv_waits *ws) { return ws->nheap ? ws->heap[0]->wake : 0; }

long long cv__waits_count(const struct cv_waits *ws) { return (long long)ws->ids.n; }

int cv__waits_has(const struct cv_waits *ws, const char *id) { return ht_find(&ws->ids, id) != NULL; }

/* ---- events ---------------------------------------------------------------------------------- */

/* Ids taken out of the index into the caller's buffer. */
struct taken {
    char (*ids)[37];
    int n, max;
};

static void take(struct cv_waits *ws, struct taken *t, struct waiter *w)
{
    memcpy(t->ids[t->n++], w->id, sizeof w->id);
    waiter_free(ws, w);
}

/* Takes the waiters of the bucket `key` (as many as fit). */
static void take_bucket(struct cv_waits *ws, struct taken *t, const char *key)
{
    struct bucket *b;
    while (t->n < t->max && (b = (struct bucket *)ht_find(&ws->buckets, key)) != NULL)
        take(ws, t, b->head->w); /* which unlinks it, and frees b with its last one */
}

/* Takes the waiters of every bucket whose key starts with `prefix`. */
static void take_prefix(struct cv_waits *ws, struct taken *t, const char *prefix)
{
    size_t pn = strlen(prefix);
    while (t->n < t->max) {
        struct bucket *b = NULL;
        for (size_t i = 0; i < ws->buckets.cap && !b; i++)
            for (struct hnode *h = ws->buckets.slots[i]; h && !b; h = h->next)
                if (!strncmp(h->key, prefix, pn))
                    b = (struct bucket *)h;
        if (!b)
            return;
        while (t->n < t->max) { /* b goes with its last waiter */
            int last = b->head->next == NULL;
            take(ws, t, b->head->w);
            if (last)
                break;
        }
    }
}

int cv__waits_take_all(struct cv_waits *ws, char (*ids)[37], int max)
{
    struct taken t = {ids, 0, max};
    for (size_t i = 0; i < ws->ids.cap && t.n < t.max; i++)
        while (ws->ids.slots[i] && t.n < t.max)
            take(ws, &t, (struct waiter *)ws->ids.slots[i]);
    return t.n;
}

/* A key "<c><a><b>" in buf (size n), or malloc'd when longer; NULL when out of memory. */
static char *make_key(char *buf, size_t n, const char *a, const char *b)
{
    size_t need = strlen(a) + strlen(b) + 1;
    char *k = need <= n ? buf : malloc(need);
    if (k)
        snprintf(k, need, "%s%s", a, b);
    return k;
}

int cv__waits_match(struct cv_waits *ws, jv ev, char (*ids)[37], int max)
{
    struct taken t = {ids, 0, max};
    take_bucket(ws, &t, "*");
    jv type = jv_get_kind(ev) == JV_KIND_OBJECT ? jv_object_get(jv_copy(ev), jv_string("type")) : jv_invalid();
    if (jv_get_kind(type) != JV_KIND_STRING || !ws->buckets.n || t.n == t.max) {
        jv_free(type);
        return t.n;
    }
    const char *ty = jv_string_value(type);
    char buf[512];
    char *key = make_key(buf, sizeof buf, "t", ty);
    if (!key)
        goto all;
    take_bucket(ws, &t, key);
    if (key != buf)
        free(key);
    /* per correlated filter of this type: its `from`s on the event, once.
     * Taking waiters may free groups: work from a copy of the list. */
    int ng = 0;
    for (struct group *g = ws->groups; g; g = g->next)
        ng += !strcmp(g->type, ty);
    struct group *gs = ng ? malloc((size_t)ng * sizeof *gs) : NULL;
    if (ng && !gs)
        goto all;
    ng = 0;
    for (struct group *g = ws->groups; g; g = g->next)
        if (!strcmp(g->type, ty))
            gs[ng++] = *g;
    for (int i = 0; i < ng && t.n < t.max; i++) {
        char prefix[40];
        snprintf(prefix, sizeof prefix, "c%p\x1f", (const void *)gs[i].f);
        char *vals = cv__event_corr_values(gs[i].wf, gs[i].f, ev);
        if (!vals) { /* a `from` failed on this event: every instance keyed on
                      * the filter looks at it (and faults, as in memory) */
            take_prefix(ws, &t, prefix);
            continue;
        }
        key = make_key(buf, sizeof buf, prefix, vals);
        free(vals);
        if (!key) {
            free(gs);
            goto all;
        }
        take_bucket(ws, &t, key);
        if (key != buf)
            free(key);
    }
    free(gs);
    jv_free(type);
    return t.n;
all: /* out of memory: everyone looks (correctness first) */
    jv_free(type);
    t.n += cv__waits_take_all(ws, t.ids + t.n, t.max - t.n);
    return t.n;
}
