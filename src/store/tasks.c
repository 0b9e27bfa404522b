/*
 * tasks.c — the rules of review tasks (DESIGN.md decision 9, docs/tasks.md),
 * the same for every backend: what a task definition may hold, who may
 * claim, release, complete or reassign a task and when, how a completion is
 * validated against the task's form, the completion event it publishes and
 * the feedback examples it leaves. Backends only store what these functions
 * decide (update_task calls them inside its write transaction), so that the
 * rules cannot drift between SQLite and PostgreSQL. Nothing here does I/O.
 */
#include "store/store.h"
#include "store/store_int.h"

#include "common/util.h"
#include "conveyor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static jv get(jv o, const char *key)
{
    return jv_get_kind(o) == JV_KIND_OBJECT ? jv_object_get(jv_copy(o), jv_string(key)) : jv_invalid();
}

static jv_kind kind_of(jv o, const char *key)
{
    jv v = get(o, key);
    jv_kind k = jv_get_kind(v);
    jv_free(v);
    return k;
}

/* A string member's value copied into buf ("" when absent or not a string). */
static const char *str_of(jv o, const char *key, char *buf, size_t n)
{
    jv v = get(o, key);
    buf[0] = 0;
    if (jv_get_kind(v) == JV_KIND_STRING)
        snprintf(buf, n, "%s", jv_string_value(v));
    jv_free(v);
    return buf;
}

static jv iso(int64_t ms)
{
    char b[32];
    cv__rfc3339(ms, b);
    return jv_string(b);
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

/* YYYY-MM-DD, a real calendar date: 0, else -1. *days = days since 1970. */
static int parse_date(const char *s, int64_t *days)
{
    int y, m, d;
    if (strlen(s) < 10 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &m) || s[7] != '-' ||
        digits(s + 8, 2, &d) || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return -1;
    *days = days_from_civil(y, m, d);
    return 0;
}

/*
 * An RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)) as wall
 * milliseconds: 0, else -1.
 */
int cv__task_parse_time(const char *s, int64_t *ms)
{
    int64_t days;
    int hh, mi, ss, frac = 0;
    if (!s || parse_date(s, &days) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || digits(s + 11, 2, &hh) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &ss) || hh > 23 || mi > 59 ||
        ss > 60)
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n < 3)
                frac = frac * 10 + (*p - '0');
            n++;
            p++;
        }
        if (!n)
            return -1;
        for (; n < 3; n++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om))
            return -1;
        off = (oh * 60 + om) * 60000LL * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    *ms = ((days * 24 + hh) * 60 + mi) * 60000LL + ss * 1000LL + frac - off;
    return 0;
}

/* The wall ms of a time member (ISO text), or `dflt` when absent/bad. */
static int64_t time_of(jv o, const char *key, int64_t dflt)
{
    char b[64];
    int64_t ms;
    if (!*str_of(o, key, b, sizeof b) || cv__task_parse_time(b, &ms))
        return dflt;
    return ms;
}

int64_t cv__task_due_ms(jv task)
{
    return time_of(task, "due", 0);
}

static jv history_add(jv task, int64_t now, const char *who, const char *action, jv extra)
{
    jv h = get(task, "history");
    if (jv_get_kind(h) != JV_KIND_ARRAY) {
        jv_free(h);
        h = jv_array();
    }
    jv ev = JV_OBJECT(jv_string("at"), iso(now), jv_string("who"), who ? jv_string(who) : jv_null(),
                      jv_string("action"), jv_string(action));
    if (jv_get_kind(extra) == JV_KIND_OBJECT)
        ev = jv_object_merge(ev, extra);
    else
        jv_free(extra);
    return jv_object_set(task, jv_string("history"), jv_array_append(h, ev));
}

jv cv__task_cancelled(jv task, int64_t now)
{
    task = jv_object_set(task, jv_string("status"), jv_string(CV_TASK_CANCELLED));
    task = jv_object_set(task, jv_string("claimExpiresAt"), jv_null());
    return history_add(task, now, NULL, "cancelled", jv_invalid());
}

/* ------------------------------------------------------------------------ */
/* Definitions                                                               */
/* ------------------------------------------------------------------------ */

static const char *const field_types[] = {"text", "longtext", "number", "money", "date", "enum", "boolean"};

static int known_type(const char *t)
{
    for (size_t i = 0; i < sizeof field_types / sizeof *field_types; i++)
        if (!strcmp(t, field_types[i]))
            return 1;
    return 0;
}

/* Checks a form (borrowed): NULL when well-formed, else why (static text or buf). */
static const char *form_problem(jv form, char *buf, size_t n)
{
    if (jv_get_kind(form) != JV_KIND_OBJECT)
        return "form must be an object {decisions?, fields}";
    jv dec = get(form, "decisions");
    int bad = 0;
    if (jv_is_valid(dec)) {
        bad = jv_get_kind(dec) != JV_KIND_ARRAY || jv_array_length(jv_copy(dec)) == 0;
        if (!bad)
            jv_array_foreach(dec, i, d)
            {
                bad |= jv_get_kind(d) != JV_KIND_STRING;
                jv_free(d);
            }
    }
    jv_free(dec);
    if (bad)
        return "form.decisions must be a non-empty array of strings";
    jv fields = get(form, "fields");
    if (jv_get_kind(fields) != JV_KIND_ARRAY) {
        jv_free(fields);
        return "form.fields must be an array of fields {name, type, ...}";
    }
    const char *why = NULL;
    jv seen = jv_object();
    jv_array_foreach(fields, i, f)
    {
        char name[128], type[32];
        if (!why) {
            if (jv_get_kind(f) != JV_KIND_OBJECT || !*str_of(f, "name", name, sizeof name)) {
                snprintf(buf, n, "form.fields[%d] needs a name", i);
                why = buf;
            } else if (!known_type(str_of(f, "type", type, sizeof type))) {
                snprintf(buf, n,
                         "form field '%s': type must be text, longtext, number, money, date, enum or boolean", name);
                why = buf;
            } else if (jv_is_valid(jv_object_get(jv_copy(seen), jv_string(name)))) {
                snprintf(buf, n, "form field '%s' is declared twice", name);
                why = buf;
            } else if (!strcmp(type, "enum")) {
                jv opts = get(f, "options");
                int ok = jv_get_kind(opts) == JV_KIND_ARRAY && jv_array_length(jv_copy(opts)) > 0;
                jv_free(opts);
                if (!ok) {
                    snprintf(buf, n, "form field '%s': an enum needs options (a non-empty array)", name);
                    why = buf;
                }
            }
            if (!why)
                seen = jv_object_set(seen, jv_string(name), jv_true());
        }
        jv_free(f);
    }
    jv_free(seen);
    jv_free(fields);
    return why;
}

int cv_task_new(jv def, int64_t now, jv *out, jv *err)
{
    char buf[256];
    const char *why = NULL;
    if (jv_get_kind(def) != JV_KIND_OBJECT) {
        jv_free(def);
        *err = jv_string("a task is a JSON object");
        return CV_EINVAL;
    }
    if (kind_of(def, "title") != JV_KIND_STRING)
        why = "title (a string) is required";
    jv_kind k;
    if (!why && (k = kind_of(def, "id")) != JV_KIND_INVALID && k != JV_KIND_STRING)
        why = "id must be a string";
    if (!why) {
        static const char *const strs[] = {"description", "assignee", "role", "instance", "task", "due"};
        for (size_t i = 0; i < sizeof strs / sizeof *strs && !why; i++) {
            k = kind_of(def, strs[i]);
            if (k != JV_KIND_INVALID && k != JV_KIND_NULL && k != JV_KIND_STRING) {
                snprintf(buf, sizeof buf, "%s must be a string", strs[i]);
                why = buf;
            }
        }
    }
    if (!why && (k = kind_of(def, "priority")) != JV_KIND_INVALID && k != JV_KIND_NUMBER && k != JV_KIND_NULL)
        why = "priority must be a number (higher first)";
    char due[64];
    int64_t ms;
    if (!why && *str_of(def, "due", due, sizeof due) && cv__task_parse_time(due, &ms))
        why = "due must be an RFC 3339 date-time (2026-12-04T18:00:00Z)";
    if (!why && (k = kind_of(def, "escalate")) != JV_KIND_INVALID && k != JV_KIND_NULL && k != JV_KIND_OBJECT)
        why = "escalate must be an object";
    if (!why && (k = kind_of(def, "workflow")) != JV_KIND_INVALID && k != JV_KIND_NULL && k != JV_KIND_OBJECT)
        why = "workflow must be an object {namespace, name, version}";
    jv form = get(def, "form");
    if (!jv_is_valid(form) || jv_get_kind(form) == JV_KIND_NULL) {
        jv_free(form);
        form = JV_OBJECT(jv_string("fields"), jv_array());
    }
    if (!why)
        why = form_problem(form, buf, sizeof buf);
    if (why) {
        jv_free(form);
        jv_free(def);
        *err = jv_string(why);
        return CV_EINVAL;
    }
    if (kind_of(form, "decisions") == JV_KIND_INVALID)
        form = jv_object_set(form, jv_string("decisions"), JV_ARRAY(jv_string("approve"), jv_string("reject")));
    def = jv_object_set(def, jv_string("form"), form);
    if (kind_of(def, "id") != JV_KIND_STRING) {
        char id[37];
        cv__uuid4(id);
        def = jv_object_set(def, jv_string("id"), jv_string(id));
    }
    static const char *const nulls[] = {"instance",  "task",      "workflow",       "description", "assignee",
                                        "role",      "due",       "escalate",       "claimedBy",   "claimExpiresAt",
                                        "completion", "completedAt"};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
        if (kind_of(def, nulls[i]) == JV_KIND_INVALID)
            def = jv_object_set(def, jv_string(nulls[i]), jv_null());
    if (kind_of(def, "priority") != JV_KIND_NUMBER)
        def = jv_object_set(def, jv_string("priority"), jv_number(0));
    if (kind_of(def, "data") == JV_KIND_INVALID)
        def = jv_object_set(def, jv_string("data"), jv_object());
    def = jv_object_set(def, jv_string("status"), jv_string(CV_TASK_OPEN));
    def = jv_object_set(def, jv_string("openedAt"), iso(now));
    def = jv_object_set(def, jv_string("history"), jv_array());
    def = history_add(def, now, NULL, "opened", jv_invalid());
    *out = def;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Validation of a completion                                                */
/* ------------------------------------------------------------------------ */

static jv field_error(jv errors, const char *field, const char *fmt, ...) JV_PRINTF_LIKE(3, 4);
static jv field_error(jv errors, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jv msg = jv_string_vfmt(fmt, ap);
    va_end(ap);
    return jv_array_append(errors, JV_OBJECT(jv_string("field"), jv_string(field), jv_string("message"), msg));
}

/* Why value `v` (borrowed) does not fit field `f` (borrowed), or NULL. */
static const char *value_problem(jv f, jv v, char *buf, size_t n)
{
    char type[32];
    str_of(f, "type", type, sizeof type);
    jv_kind k = jv_get_kind(v);
    if (!strcmp(type, "text") || !strcmp(type, "longtext")) {
        if (k != JV_KIND_STRING)
            return "must be text";
        if (!strcmp(type, "text") && strchr(jv_string_value(v), '\n'))
            return "must be one line (this field is not long text)";
        return NULL;
    }
    if (!strcmp(type, "number"))
        return k == JV_KIND_NUMBER ? NULL : "must be a number";
    if (!strcmp(type, "boolean"))
        return k == JV_KIND_TRUE || k == JV_KIND_FALSE ? NULL : "must be true or false";
    if (!strcmp(type, "date")) {
        int64_t d;
        if (k != JV_KIND_STRING || strlen(jv_string_value(v)) != 10 || parse_date(jv_string_value(v), &d))
            return "must be a date YYYY-MM-DD";
        return NULL;
    }
    if (!strcmp(type, "money")) {
        if (k != JV_KIND_OBJECT)
            return "must be an amount with its currency {\"amount\": 12.5, \"currency\": \"EUR\"}";
        jv a = get(v, "amount"), c = get(v, "currency");
        const char *why = NULL;
        if (jv_get_kind(a) != JV_KIND_NUMBER)
            why = "amount must be a number";
        else if (jv_get_kind(c) != JV_KIND_STRING || strlen(jv_string_value(c)) != 3 ||
                 strspn(jv_string_value(c), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
            why = "currency must be an ISO 4217 code (three capital letters)";
        else if (jv_object_length(jv_copy(v)) != 2)
            why = "must hold amount and currency only";
        jv_free(a);
        jv_free(c);
        return why;
    }
    if (!strcmp(type, "enum")) {
        jv opts = get(f, "options");
        int found = 0;
        jv_array_foreach(opts, i, o)
        {
            /* an option is a value, or {value, label} */
            jv val = jv_get_kind(o) == JV_KIND_OBJECT ? get(o, "value") : jv_copy(o);
            found |= jv_equal(val, jv_copy(v));
            jv_free(o);
        }
        jv_free(opts);
        if (found)
            return NULL;
        snprintf(buf, n, "must be one of the field's options");
        return buf;
    }
    return "has an unknown type";
}

void cv_task_validate(jv form, jv body, jv *errors, jv *fields)
{
    jv errs = jv_array();
    jv out = jv_object();
    char buf[128];
    if (jv_get_kind(body) != JV_KIND_OBJECT) {
        *errors = field_error(errs, "", "the completion is an object {decision, fields, comment}");
        *fields = out;
        return;
    }
    jv_object_foreach(body, key, val)
    {
        const char *kk = jv_string_value(key);
        if (strcmp(kk, "decision") && strcmp(kk, "fields") && strcmp(kk, "comment"))
            errs = field_error(errs, kk, "unknown member (a completion holds decision, fields, comment)");
        jv_free(key);
        jv_free(val);
    }
    jv decision = get(body, "decision"), decisions = get(form, "decisions");
    if (jv_get_kind(decision) != JV_KIND_STRING) {
        errs = field_error(errs, "decision", "is required (one of the form's decisions)");
    } else {
        int ok = 0;
        jv_array_foreach(decisions, i, d)
        {
            ok |= jv_equal(d, jv_copy(decision));
        }
        if (!ok) {
            jv list = jv_dump_string(jv_copy(decisions), 0);
            errs = field_error(errs, "decision", "must be one of %s", jv_string_value(list));
            jv_free(list);
        }
    }
    jv_free(decision);
    jv_free(decisions);
    jv_kind ck = kind_of(body, "comment");
    if (ck != JV_KIND_INVALID && ck != JV_KIND_NULL && ck != JV_KIND_STRING)
        errs = field_error(errs, "comment", "must be text");
    jv given = get(body, "fields");
    if (!jv_is_valid(given) || jv_get_kind(given) == JV_KIND_NULL) {
        jv_free(given);
        given = jv_object();
    }
    if (jv_get_kind(given) != JV_KIND_OBJECT) {
        errs = field_error(errs, "fields", "must be an object of field values");
        jv_free(given);
        given = jv_object();
    }
    jv decl = get(form, "fields");
    jv known = jv_object();
    jv_array_foreach(decl, i, f)
    {
        char name[128];
        str_of(f, "name", name, sizeof name);
        known = jv_object_set(known, jv_string(name), jv_true());
        jv v = get(given, name);
        if (!jv_is_valid(v)) {
            jv_free(v);
            v = get(f, "value"); /* the prefilled value stands when not given */
        }
        jv req = get(f, "required");
        int required = jv_get_kind(req) == JV_KIND_TRUE;
        jv_free(req);
        jv_kind vk = jv_get_kind(v);
        if (vk == JV_KIND_INVALID || vk == JV_KIND_NULL ||
            (vk == JV_KIND_STRING && !*jv_string_value(v))) {
            if (required)
                errs = field_error(errs, name, "is required");
            else
                out = jv_object_set(out, jv_string(name), jv_null());
            jv_free(v);
        } else {
            const char *why = value_problem(f, v, buf, sizeof buf);
            if (why) {
                errs = field_error(errs, name, "%s", why);
                jv_free(v);
            } else {
                out = jv_object_set(out, jv_string(name), v);
            }
        }
        jv_free(f);
    }
    jv_free(decl);
    jv_object_foreach(given, key, val)
    {
        if (!jv_is_valid(jv_object_get(jv_copy(known), jv_copy(key))))
            errs = field_error(errs, jv_string_value(key), "is not a field of this form");
        jv_free(key);
        jv_free(val);
    }
    jv_free(known);
    jv_free(given);
    *errors = errs;
    *fields = out;
}

/* ------------------------------------------------------------------------ */
/* Transitions                                                               */
/* ------------------------------------------------------------------------ */

struct change {
    const char *user;
    int64_t now, claim_ms, retention_ms;
    jv body; /* borrowed */
};

/* 1 when the task is claimed by someone other than `user` and the claim
 * still runs at `now`; *by names the claimer. */
static int claimed_by_other(jv task, const char *user, int64_t now, char *by, size_t n)
{
    char st[32];
    str_of(task, "status", st, sizeof st);
    str_of(task, "claimedBy", by, n);
    if (strcmp(st, CV_TASK_CLAIMED) || !*by || !strcmp(by, user))
        return 0;
    return time_of(task, "claimExpiresAt", 0) > now;
}

/* CV_ECONFLICT for a task that has ended; 0 otherwise. */
static int ended(jv task, jv *err)
{
    char st[32], id[64], at[64], by[128];
    str_of(task, "status", st, sizeof st);
    str_of(task, "id", id, sizeof id);
    if (!strcmp(st, CV_TASK_COMPLETED)) {
        jv c = get(task, "completion");
        str_of(c, "reviewer", by, sizeof by);
        jv_free(c);
        *err = jv_string_fmt("task %s was completed by %s at %s", id, by, str_of(task, "completedAt", at, sizeof at));
        return CV_ECONFLICT;
    }
    if (!strcmp(st, CV_TASK_CANCELLED)) {
        *err = jv_string_fmt("task %s was cancelled (its instance was cancelled or has ended)", id);
        return CV_ECONFLICT;
    }
    return 0;
}

static int do_claim(jv task, void *ctx, jv *out, jv *events, jv *feedback, jv *err)
{
    struct change *c = ctx;
    char by[128], id[64], until[64];
    (void)events;
    (void)feedback;
    int rc = ended(task, err);
    if (!rc && claimed_by_other(task, c->user, c->now, by, sizeof by)) {
        *err = jv_string_fmt("task %s is claimed by %s until %s", str_of(task, "id", id, sizeof id), by,
                             str_of(task, "claimExpiresAt", until, sizeof until));
        rc = CV_ECONFLICT;
    }
    if (rc) {
        jv_free(task);
        return rc;
    }
    str_of(task, "claimedBy", by, sizeof by);
    char st[32];
    str_of(task, "status", st, sizeof st);
    const char *action = !strcmp(st, CV_TASK_CLAIMED) && !strcmp(by, c->user) ? "claim renewed"
                         : !strcmp(st, CV_TASK_CLAIMED) && *by                   ? "claim taken over"
                                                                                 : "claimed";
    jv extra = *by && strcmp(by, c->user) ? JV_OBJECT(jv_string("from"), jv_string(by)) : jv_invalid();
    task = jv_object_set(task, jv_string("status"), jv_string(CV_TASK_CLAIMED));
    task = jv_object_set(task, jv_string("claimedBy"), jv_string(c->user));
    task = jv_object_set(task, jv_string("claimExpiresAt"), iso(c->now + c->claim_ms));
    *out = history_add(task, c->now, c->user, action, extra);
    return 0;
}

static int do_release(jv task, void *ctx, jv *out, jv *events, jv *feedback, jv *err)
{
    struct change *c = ctx;
    char by[128], id[64], st[32];
    (void)events;
    (void)feedback;
    int rc = ended(task, err);
    str_of(task, "status", st, sizeof st);
    if (!rc && strcmp(st, CV_TASK_CLAIMED)) {
        *err = jv_string_fmt("task %s is not claimed", str_of(task, "id", id, sizeof id));
        rc = CV_ECONFLICT;
    }
    if (!rc && claimed_by_other(task, c->user, c->now, by, sizeof by)) {
        *err = jv_string_fmt("task %s is claimed by %s, not by %s", str_of(task, "id", id, sizeof id), by, c->user);
        rc = CV_ECONFLICT;
    }
    if (rc) {
        jv_free(task);
        return rc;
    }
    task = jv_object_set(task, jv_string("status"), jv_string(CV_TASK_OPEN));
    task = jv_object_set(task, jv_string("claimedBy"), jv_null());
    task = jv_object_set(task, jv_string("claimExpiresAt"), jv_null());
    *out = history_add(task, c->now, c->user, "released", jv_invalid());
    return 0;
}

static int do_reassign(jv task, void *ctx, jv *out, jv *events, jv *feedback, jv *err)
{
    struct change *c = ctx;
    (void)events;
    (void)feedback;
    int rc = ended(task, err);
    jv_kind ak = kind_of(c->body, "assignee"), rk = kind_of(c->body, "role");
    if (!rc && (jv_get_kind(c->body) != JV_KIND_OBJECT ||
                (ak != JV_KIND_STRING && ak != JV_KIND_NULL && ak != JV_KIND_INVALID) ||
                (rk != JV_KIND_STRING && rk != JV_KIND_NULL && rk != JV_KIND_INVALID) ||
                (ak == JV_KIND_INVALID && rk == JV_KIND_INVALID))) {
        *err = jv_string("a reassignment is {assignee?, role?} (strings or null, at least one)");
        rc = CV_EINVAL;
    }
    if (rc) {
        jv_free(task);
        return rc;
    }
    jv extra = jv_object();
    if (ak != JV_KIND_INVALID) {
        task = jv_object_set(task, jv_string("assignee"), get(c->body, "assignee"));
        extra = jv_object_set(extra, jv_string("assignee"), get(c->body, "assignee"));
    }
    if (rk != JV_KIND_INVALID) {
        task = jv_object_set(task, jv_string("role"), get(c->body, "role"));
        extra = jv_object_set(extra, jv_string("role"), get(c->body, "role"));
    }
    task = jv_object_set(task, jv_string("status"), jv_string(CV_TASK_OPEN));
    task = jv_object_set(task, jv_string("claimedBy"), jv_null());
    task = jv_object_set(task, jv_string("claimExpiresAt"), jv_null());
    *out = history_add(task, c->now, c->user, "reassigned", extra);
    return 0;
}

/* The due time passed (the engine's timer): reassigned as the escalation
 * says ({assignee?, role?}, may be empty), status escalated, claim dropped.
 * A task that ended is left alone (CV_ECONFLICT). */
static int do_escalate(jv task, void *ctx, jv *out, jv *events, jv *feedback, jv *err)
{
    struct change *c = ctx;
    (void)events;
    (void)feedback;
    int rc = ended(task, err);
    if (rc) {
        jv_free(task);
        return rc;
    }
    jv extra = jv_object();
    static const char *const keys[] = {"assignee", "role"};
    for (int i = 0; i < 2; i++) {
        jv_kind k = kind_of(c->body, keys[i]);
        if (k == JV_KIND_STRING || k == JV_KIND_NULL) {
            task = jv_object_set(task, jv_string(keys[i]), get(c->body, keys[i]));
            extra = jv_object_set(extra, jv_string(keys[i]), get(c->body, keys[i]));
        }
    }
    task = jv_object_set(task, jv_string("status"), jv_string(CV_TASK_ESCALATED));
    task = jv_object_set(task, jv_string("claimedBy"), jv_null());
    task = jv_object_set(task, jv_string("claimExpiresAt"), jv_null());
    *out = history_add(task, c->now, NULL, "escalated", extra);
    return 0;
}

static int do_complete(jv task, void *ctx, jv *out, jv *events, jv *feedback, jv *err)
{
    struct change *c = ctx;
    char by[128], id[64];
    int rc = ended(task, err);
    if (!rc && claimed_by_other(task, c->user, c->now, by, sizeof by)) {
        *err = jv_string_fmt("task %s is claimed by %s: only they can complete it", str_of(task, "id", id, sizeof id),
                             by);
        rc = CV_ECONFLICT;
    }
    if (rc) {
        jv_free(task);
        return rc;
    }
    jv form = get(task, "form");
    jv errors, fields;
    cv_task_validate(form, c->body, &errors, &fields);
    if (jv_array_length(jv_copy(errors)) > 0) {
        jv first = jv_array_get(jv_copy(errors), 0);
        jv f = get(first, "field"), m = get(first, "message");
        int n = jv_array_length(jv_copy(errors));
        jv detail = jv_string_fmt("the completion does not fit the form: %s%s%s%s", jv_string_value(f),
                                  *jv_string_value(f) ? " " : "", jv_string_value(m),
                                  n > 1 ? " (and more: see errors)" : "");
        jv_free(first);
        jv_free(f);
        jv_free(m);
        *err = JV_OBJECT(jv_string("detail"), detail, jv_string("errors"), errors);
        jv_free(fields);
        jv_free(form);
        jv_free(task);
        return CV_EINVAL;
    }
    jv_free(errors);
    jv comment = get(c->body, "comment");
    if (!jv_is_valid(comment)) {
        jv_free(comment);
        comment = jv_null();
    }
    jv completion = JV_OBJECT(jv_string("decision"), get(c->body, "decision"), jv_string("fields"), jv_copy(fields),
                              jv_string("reviewer"), jv_string(c->user), jv_string("comment"), jv_copy(comment));
    task = jv_object_set(task, jv_string("status"), jv_string(CV_TASK_COMPLETED));
    task = jv_object_set(task, jv_string("completion"), jv_copy(completion));
    task = jv_object_set(task, jv_string("completedAt"), iso(c->now));
    task = jv_object_set(task, jv_string("claimExpiresAt"), jv_null());
    task = history_add(task, c->now, c->user, "completed",
                       JV_OBJECT(jv_string("decision"), get(c->body, "decision")));

    /* the outcome, on the bus: the instance's listen picks it up */
    char evid[37];
    cv__uuid4(evid);
    jv data = JV_OBJECT(jv_string("task"), get(task, "id"), jv_string("instance"), get(task, "instance"),
                        jv_string("decision"), get(completion, "decision"), jv_string("fields"), jv_copy(fields),
                        jv_string("reviewer"), jv_string(c->user), jv_string("comment"), comment);
    data = jv_object_set(data, jv_string("openedAt"), get(task, "openedAt"));
    data = jv_object_set(data, jv_string("completedAt"), iso(c->now));
    jv ev = JV_OBJECT(jv_string("specversion"), jv_string("1.0"), jv_string("id"), jv_string(evid),
                      jv_string("source"), jv_string("conveyor"), jv_string("type"),
                      jv_string(CV_TASK_COMPLETED_TYPE), jv_string("subject"), get(task, "id"), jv_string("time"),
                      iso(c->now));
    ev = jv_object_set(ev, jv_string("datacontenttype"), jv_string("application/json"));
    ev = jv_object_set(ev, jv_string("data"), data);
    *events = JV_ARRAY(JV_OBJECT(jv_string("event"), ev, jv_string("expiresAt"),
                                 jv_number((double)(c->now + c->retention_ms))));

    /* every reviewed model prediction is a labeled example; a changed one
     * is an override */
    jv fb = jv_array();
    jv decl = get(form, "fields");
    jv_array_foreach(decl, i, f)
    {
        jv model = get(f, "model"), predicted = get(f, "predicted");
        if (jv_get_kind(model) == JV_KIND_STRING && jv_is_valid(predicted)) {
            char name[128];
            str_of(f, "name", name, sizeof name);
            jv corrected = jv_object_get(jv_copy(fields), jv_string(name));
            jv input = get(f, "input");
            if (!jv_is_valid(input)) {
                jv_free(input);
                input = get(task, "data");
            }
            int overridden = !jv_equal(jv_copy(predicted), jv_copy(corrected));
            jv ex = JV_OBJECT(jv_string("task"), get(task, "id"), jv_string("instance"), get(task, "instance"),
                              jv_string("field"), jv_string(name), jv_string("model"), jv_copy(model),
                              jv_string("input"), input, jv_string("predicted"), jv_copy(predicted));
            ex = jv_object_set(ex, jv_string("corrected"), corrected);
            ex = jv_object_set(ex, jv_string("overridden"), jv_bool(overridden));
            ex = jv_object_set(ex, jv_string("reviewer"), jv_string(c->user));
            ex = jv_object_set(ex, jv_string("at"), iso(c->now));
            fb = jv_array_append(fb, ex);
        }
        jv_free(model);
        jv_free(predicted);
        jv_free(f);
    }
    jv_free(decl);
    jv_free(form);
    jv_free(fields);
    jv_free(completion);
    *feedback = fb;
    *out = task;
    return 0;
}

int cv_store_task_claim(cv_store *s, const char *id, const char *user, int64_t now, int64_t claim_ms, jv *out,
                        jv *err)
{
    if (!user || !*user) {
        *err = jv_string("claiming needs a user");
        return CV_EINVAL;
    }
    struct change c = {.user = user, .now = now, .claim_ms = claim_ms, .body = jv_null()};
    return cv_store_update_task(s, id, do_claim, &c, out, err);
}

int cv_store_task_release(cv_store *s, const char *id, const char *user, int64_t now, jv *out, jv *err)
{
    if (!user || !*user) {
        *err = jv_string("releasing needs a user");
        return CV_EINVAL;
    }
    struct change c = {.user = user, .now = now, .body = jv_null()};
    return cv_store_update_task(s, id, do_release, &c, out, err);
}

int cv_store_task_complete(cv_store *s, const char *id, const char *user, jv body, int64_t now,
                           int64_t retention_ms, jv *out, jv *err)
{
    if (!user || !*user) {
        jv_free(body);
        *err = jv_string("completing needs a user (the reviewer)");
        return CV_EINVAL;
    }
    struct change c = {.user = user, .now = now, .retention_ms = retention_ms, .body = body};
    int rc = cv_store_update_task(s, id, do_complete, &c, out, err);
    jv_free(body);
    return rc;
}

int cv_store_task_reassign(cv_store *s, const char *id, const char *user, jv body, int64_t now, jv *out, jv *err)
{
    struct change c = {.user = user && *user ? user : NULL, .now = now, .body = body};
    int rc = cv_store_update_task(s, id, do_reassign, &c, out, err);
    jv_free(body);
    return rc;
}

int cv__task_escalate_rule(jv task, jv to, int64_t now, jv *out, jv *err)
{
    struct change c = {.now = now, .body = to};
    jv events = jv_invalid(), feedback = jv_invalid();
    int rc = do_escalate(task, &c, out, &events, &feedback, err);
    jv_free(events);
    jv_free(feedback);
    jv_free(to);
    return rc;
}

int cv_store_task_escalate(cv_store *s, const char *id, jv to, int64_t now, jv *out, jv *err)
{
    struct change c = {.now = now, .body = to};
    int rc = cv_store_update_task(s, id, do_escalate, &c, out, err);
    jv_free(to);
    return rc;
}
