/*
 * durable.c — `conveyor run --db FILE` and `conveyor resume --db FILE`:
 * a run whose every checkpoint is kept in a store, so that a run killed at
 * any moment continues where its last checkpoint left it.
 *
 * The definition is deployed into the store (immutable per version), the
 * instance is created there, and each time the instance is about to block
 * (an effect in flight, a timer, fork branches) its position is written in
 * one durable transaction. The end (completed or faulted) is the last
 * checkpoint. `resume` reads the unfinished instances back and continues
 * them with cv_run_ex: effects that were in flight are issued again with the
 * same idempotency key (at least once); everything already checkpointed is
 * not repeated.
 */
#include "cli/durable.h"

#include "common/util.h"
#include "engine/engine_int.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TYPE_PREFIX "io.serverlessworkflow."

struct ckctx {
    cv_store *st;
    const char *db;
};

static void print_err(const char *what, jv err)
{
    char shown[512];
    fprintf(stderr, "conveyor: %s: %s\n", cv__url_without_password(what, shown, sizeof shown),
            jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "store error");
    jv_free(err);
}

static jv event(const char *type, jv data)
{
    jv e = jv_object_set(jv_object(), jv_string("type"), jv_string_fmt(TYPE_PREFIX "%s.v1", type));
    if (jv_is_valid(data))
        e = jv_object_set(e, jv_string("data"), data);
    else
        jv_free(data);
    return e;
}

/* The checkpoint hook: the position goes to the store, durably, or the run
 * stops here (continuing without it would make a resume repeat work). */
static void on_checkpoint(void *ud, jv state)
{
    struct ckctx *c = ud;
    jv id = jv_object_get(jv_copy(state), jv_string("id"));
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, jv_get_kind(id) == JV_KIND_STRING ? jv_string_value(id) : "");
    jv_free(id);
    cp.status = cv__state_status(state); /* running, or waiting on timers only */
    cp.state = jv_copy(state);
    jv err = jv_invalid();
    if (cv_store_checkpoint(c->st, &cp, 1, &err)) {
        print_err(c->db, err);
        fprintf(stderr, "conveyor: stopping: the run's position could not be kept; `conveyor resume --db %s` "
                        "continues from the last checkpoint\n",
                c->db);
        fflush(stderr);
        _exit(1);
    }
    jv_free(err);
}

/* Writes the end of an instance from its run report (borrowed). */
static int finish(cv_store *st, const char *db, const char *id, jv report)
{
    jv status = jv_object_get(jv_copy(report), jv_string("status"));
    int ok = jv_get_kind(status) == JV_KIND_STRING && !strcmp(jv_string_value(status), "completed");
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, id);
    cp.status = ok ? CV_ST_COMPLETED : CV_ST_FAULTED;
    cp.state = jv_null();
    if (ok) {
        cp.output = jv_object_get(jv_copy(report), jv_string("output"));
        cp.history = JV_ARRAY(event("workflow.completed", JV_OBJECT(jv_string("output"), jv_copy(cp.output))));
    } else {
        cp.error = jv_object_get(jv_copy(report), jv_string("error"));
        cp.history = JV_ARRAY(event("workflow.faulted", JV_OBJECT(jv_string("error"), jv_copy(cp.error))));
    }
    jv_free(status);
    jv notes = jv_object_get(jv_copy(report), jv_string("notes")); /* predictions, before the end */
    if (jv_get_kind(notes) == JV_KIND_ARRAY && jv_array_length(jv_copy(notes)) > 0)
        cp.history = jv_array_concat(notes, cp.history);
    else
        jv_free(notes);
    jv err = jv_invalid();
    int rc = cv_store_checkpoint(st, &cp, 1, &err);
    if (rc)
        print_err(db, err);
    else
        jv_free(err);
    return rc;
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0, r;
    char *buf = malloc(cap + 1);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *b2 = realloc(buf, (cap *= 2) + 1);
            if (!b2)
                free(buf);
            buf = b2;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = n;
    }
    return buf;
}

int cv__cli_run_durable(cv_runtime *rt, const char *db, const char *file, const cv_workflow *wf, jv input,
                        jv *report)
{
    *report = jv_null();
    cv_store *st = NULL;
    jv err = jv_invalid();
    if (cv_store_open(db, &st, &err) || cv_store_claim(st, &err)) {
        print_err(db, err);
        cv_store_close(st);
        jv_free(input);
        return -1;
    }
    jv_free(err);
    size_t len = 0;
    char *text = read_text(file, &len);
    int rc = -1;
    char id[64] = "";
    int existed = 0;
    const char *ns = cv_workflow_namespace(wf), *name = cv_workflow_name(wf), *version = cv_workflow_version(wf);
    if (!text) {
        fprintf(stderr, "conveyor: %s: %s\n", file, strerror(errno));
        jv_free(input);
        goto out;
    }
    err = jv_invalid();
    if (cv_store_put_workflow(st, ns, name, version, text, &err)) {
        print_err(db, err);
        fprintf(stderr, "conveyor: %s/%s:%s is already in %s with different content: give the changed document "
                        "a new version\n",
                ns, name, version, db);
        jv_free(input);
        goto out;
    }
    jv_free(err);
    err = jv_invalid();
    if (cv_store_create_instance(st, ns, name, version, jv_copy(input), NULL, id, &existed, &err)) {
        print_err(db, err);
        jv_free(input);
        goto out;
    }
    jv_free(err);
    fprintf(stderr, "conveyor: instance %s in %s\n", id, db);
    struct ckctx c = {st, db};
    cv_runtime_on_checkpoint(rt, on_checkpoint, &c);
    cv__runtime_set_model_store(rt, st); /* `call: classify` reads models from it */
    cv_run_options o = {.id = id, .resume = jv_invalid()};
    rc = cv_run_ex(rt, wf, input, &o, report);
    cv_runtime_on_checkpoint(rt, NULL, NULL);
    cv__runtime_set_model_store(rt, NULL);
    if (finish(st, db, id, *report))
        rc = -1;
out:
    free(text);
    cv_store_close(st);
    return rc;
}

/* Continues one instance; prints its result like `run` (one JSON line each
 * when `lines`). Returns 0 completed, 1 faulted, -1 could not run. */
static int resume_one(cv_runtime *rt, cv_store *st, const char *db, const char *id, int lines)
{
    jv inst, err = jv_invalid();
    if (cv_store_get_instance(st, id, &inst, &err)) {
        print_err(id, err);
        return -1;
    }
    jv_free(err);
    jv status = jv_object_get(jv_copy(inst), jv_string("status"));
    const char *s = jv_get_kind(status) == JV_KIND_STRING ? jv_string_value(status) : "";
    if (strcmp(s, CV_ST_PENDING) && strcmp(s, CV_ST_RUNNING) && strcmp(s, CV_ST_WAITING)) {
        fprintf(stderr, "conveyor: instance %s is %s: nothing to resume\n", id, s);
        jv_free(status);
        jv_free(inst);
        return -1;
    }
    jv_free(status);
    jv ns = jv_object_get(jv_copy(inst), jv_string("namespace"));
    jv name = jv_object_get(jv_copy(inst), jv_string("name"));
    jv ver = jv_object_get(jv_copy(inst), jv_string("version"));
    jv def, derr = jv_invalid();
    int rc = -1;
    cv_workflow *wf = NULL;
    if (cv_store_get_workflow(st, jv_string_value(ns), jv_string_value(name), jv_string_value(ver), &def, &derr)) {
        print_err(id, derr);
        goto out;
    }
    jv_free(derr);
    jv text = jv_object_get(def, jv_string("text"));
    char label[512];
    snprintf(label, sizeof label, "%s(%s/%s:%s)", db, jv_string_value(ns), jv_string_value(name),
             jv_string_value(ver));
    jv diags = jv_invalid();
    int lrc = cv_workflow_load(jv_string_value(text), (size_t)jv_string_length_bytes(jv_copy(text)), label, &wf,
                               &diags);
    jv_free(text);
    if (lrc) {
        fprintf(stderr, "conveyor: instance %s: its definition no longer loads\n", id);
        jv_free(diags);
        goto out;
    }
    jv_free(diags);
    jv state = jv_object_get(jv_copy(inst), jv_string("state"));
    jv input = jv_object_get(jv_copy(inst), jv_string("input"));
    struct ckctx c = {st, db};
    cv_runtime_on_checkpoint(rt, on_checkpoint, &c);
    cv__runtime_set_model_store(rt, st); /* `call: classify` reads models from it */
    /* never checkpointed (killed before its first block): start from its input */
    cv_run_options o = {.id = id, .resume = jv_get_kind(state) == JV_KIND_OBJECT ? state : (jv_free(state), jv_invalid())};
    jv report;
    int r = cv_run_ex(rt, wf, jv_is_valid(input) ? input : (jv_free(input), jv_null()), &o, &report);
    cv_runtime_on_checkpoint(rt, NULL, NULL);
    cv__runtime_set_model_store(rt, NULL);
    if (r == CV_EINVAL || r == CV_ENOMEM) {
        jv e = jv_object_get(report, jv_string("error"));
        jv d = jv_dump_string(e, 0);
        fprintf(stderr, "conveyor: instance %s cannot be resumed: %s\n", id, jv_string_value(d));
        jv_free(d);
        goto out;
    }
    if (finish(st, db, id, report)) {
        jv_free(report);
        goto out;
    }
    if (lines) {
        jv line = JV_OBJECT(jv_string("id"), jv_string(id), jv_string("status"),
                            jv_object_get(jv_copy(report), jv_string("status")), jv_string("output"),
                            jv_object_get(jv_copy(report), jv_string("output")), jv_string("error"),
                            jv_object_get(jv_copy(report), jv_string("error")));
        jv_dumpf(line, stdout, 0);
        fputc('\n', stdout);
    } else if (r == CV_OK) {
        jv_dumpf(jv_object_get(jv_copy(report), jv_string("output")), stdout, JV_PRINT_PRETTY | JV_PRINT_SPACE1);
        fputc('\n', stdout);
    } else {
        jv_dumpf(jv_object_get(jv_copy(report), jv_string("error")), stderr, 0);
        fputc('\n', stderr);
    }
    rc = r == CV_OK ? 0 : 1;
    jv_free(report);
out:
    cv_workflow_free(wf);
    jv_free(ns);
    jv_free(name);
    jv_free(ver);
    jv_free(inst);
    return rc;
}

int cv__cli_resume(cv_runtime *rt, const char *db, char **ids, int nids)
{
    cv_store *st = NULL;
    jv err = jv_invalid();
    if (cv_store_open(db, &st, &err) || cv_store_claim(st, &err)) {
        print_err(db, err);
        cv_store_close(st);
        return 1;
    }
    jv_free(err);
    jv todo;
    if (nids) {
        todo = jv_array();
        for (int i = 0; i < nids; i++)
            todo = jv_array_append(todo, jv_string(ids[i]));
    } else {
        err = jv_invalid();
        if (cv_store_unfinished_instances(st, &todo, &err)) {
            print_err(db, err);
            cv_store_close(st);
            return 1;
        }
        jv_free(err);
    }
    int n = jv_array_length(jv_copy(todo)), worst = 0;
    if (n == 0)
        fprintf(stderr, "conveyor: no unfinished instance in %s\n", db);
    jv_array_foreach(todo, i, id)
    {
        int r = resume_one(rt, st, db, jv_string_value(id), n > 1);
        if (r < 0)
            worst = 1;
        else if (r > worst)
            worst = r;
        jv_free(id);
    }
    jv_free(todo);
    cv_store_close(st);
    return worst;
}
