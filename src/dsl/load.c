/*
 * load.c — the public entry points that turn text into a cv_workflow:
 * parse (json/yaml.c) → validate (validate.c) → build and compile (build.c).
 * Every problem becomes a located diagnostic {file, line, column, path,
 * message}; nothing here prints.
 */
#include "conveyor.h"
#include "dsl/model.h"
#include "dsl/validate.h"
#include "json/yaml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DOCUMENT_BYTES (64u << 20)

static jv make_diag(const char *file, int line, int col, const char *path, const char *msg)
{
    jv d = jv_object();
    d = jv_object_set(d, jv_string("file"), jv_string(file ? file : "<input>"));
    d = jv_object_set(d, jv_string("line"), jv_number(line));
    d = jv_object_set(d, jv_string("column"), jv_number(col));
    d = jv_object_set(d, jv_string("path"), jv_string(path ? path : ""));
    return jv_object_set(d, jv_string("message"), jv_string(msg));
}

static char *strdup_or(jv v /* consumed */, const char *dflt)
{
    char *r = strdup(jv_get_kind(v) == JV_KIND_STRING ? jv_string_value(v) : dflt);
    jv_free(v);
    return r;
}

int cv_workflow_load(const char *text, size_t len, const char *name, cv_workflow **out, jv *diags)
{
    *out = NULL;
    jv errs = jv_array();
    jv doc, locs;
    int rc = cv__yaml_parse(text, len, name, &doc, &locs, &errs);
    if (rc) {
        if (diags)
            *diags = errs;
        else
            jv_free(errs);
        return CV_EPARSE;
    }
    jv_free(errs);
    return cv__workflow_from_jv(doc, locs, name, out, diags);
}

int cv__workflow_from_jv(jv doc, jv locs, const char *name, cv_workflow **out, jv *diags)
{
    int rc;
    *out = NULL;
    jv errs = jv_array();
    if (jv_get_kind(locs) != JV_KIND_OBJECT) {
        jv_free(locs);
        locs = jv_object();
    }
    if (cv__dsl_validate(doc, locs, name, &errs) > 0) {
        jv_free(doc);
        jv_free(locs);
        if (diags)
            *diags = errs;
        else
            jv_free(errs);
        return CV_EVALIDATE;
    }
    struct cv_workflow *wf = calloc(1, sizeof *wf);
    if (!wf) {
        jv_free(doc);
        jv_free(locs);
        jv_free(errs);
        return CV_ENOMEM;
    }
    wf->doc = doc;
    wf->locs = locs;
    wf->file = strdup(name ? name : "<input>");
    jv d = jv_object_get(jv_copy(doc), jv_string("document"));
    wf->ns = strdup_or(jv_object_get(jv_copy(d), jv_string("namespace")), "default");
    wf->name = strdup_or(jv_object_get(jv_copy(d), jv_string("name")), "workflow");
    wf->version = strdup_or(jv_object_get(d, jv_string("version")), "0.0.0");

    jv berrs = jv_array();
    rc = cv__workflow_build(wf, &berrs);
    if (rc) {
        /* {pointer, message} → located diagnostics */
        jv_array_foreach(berrs, i, e)
        {
            jv ptr = jv_object_get(jv_copy(e), jv_string("pointer"));
            jv msg = jv_object_get(e, jv_string("message"));
            int line = 0, col = 0;
            cv__locate(wf->locs, jv_string_value(ptr), &line, &col);
            char *path = cv__pointer_to_path(wf->doc, jv_string_value(ptr));
            errs = jv_array_append(errs, make_diag(name, line, col, path ? path : jv_string_value(ptr),
                                                   jv_string_value(msg)));
            free(path);
            jv_free(ptr);
            jv_free(msg);
        }
        jv_free(berrs);
        cv_workflow_free(wf);
        if (diags)
            *diags = errs;
        else
            jv_free(errs);
        return rc == CV_ENOMEM ? CV_ENOMEM : CV_EVALIDATE;
    }
    jv_free(berrs);
    jv_free(errs);
    if (diags)
        *diags = jv_array();
    *out = wf;
    return CV_OK;
}

int cv_workflow_load_file(const char *path, cv_workflow **out, jv *diags)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (diags)
            *diags = JV_ARRAY(make_diag(path, 0, 0, "", strerror(errno)));
        return CV_EIO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 131072;
            char *n = realloc(buf, cap);
            if (!n) {
                free(buf);
                fclose(f);
                return CV_ENOMEM;
            }
            buf = n;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
        if (len > MAX_DOCUMENT_BYTES) {
            free(buf);
            fclose(f);
            if (diags)
                *diags = JV_ARRAY(make_diag(path, 0, 0, "", "document larger than 64 MiB"));
            return CV_EPARSE;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        if (diags)
            *diags = JV_ARRAY(make_diag(path, 0, 0, "", "read error"));
        return CV_EIO;
    }
    int rc = cv_workflow_load(buf, len, path, out, diags);
    free(buf);
    return rc;
}

void cv_workflow_free(cv_workflow *wf)
{
    if (!wf)
        return;
    cv__workflow_release(wf);
    jv_free(wf->doc);
    jv_free(wf->locs);
    free(wf->file);
    free(wf->ns);
    free(wf->name);
    free(wf->version);
    free(wf);
}

const char *cv_workflow_namespace(const cv_workflow *wf) { return wf->ns; }
const char *cv_workflow_name(const cv_workflow *wf) { return wf->name; }
const char *cv_workflow_version(const cv_workflow *wf) { return wf->version; }
jv cv_workflow_document(const cv_workflow *wf) { return jv_copy(wf->doc); }

char *cv_diag_format(jv d)
{
    jv file = jv_object_get(jv_copy(d), jv_string("file"));
    jv line = jv_object_get(jv_copy(d), jv_string("line"));
    jv col = jv_object_get(jv_copy(d), jv_string("column"));
    jv path = jv_object_get(jv_copy(d), jv_string("path"));
    jv msg = jv_object_get(d, jv_string("message"));
    const char *f = jv_get_kind(file) == JV_KIND_STRING ? jv_string_value(file) : "<input>";
    const char *p = jv_get_kind(path) == JV_KIND_STRING ? jv_string_value(path) : "";
    const char *m = jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "error";
    int l = jv_get_kind(line) == JV_KIND_NUMBER ? (int)jv_number_value(line) : 0;
    int c = jv_get_kind(col) == JV_KIND_NUMBER ? (int)jv_number_value(col) : 0;
    char *r = NULL;
    int n;
    if (*p)
        n = asprintf(&r, "%s:%d:%d: %s: %s", f, l, c, p, m);
    else
        n = asprintf(&r, "%s:%d:%d: %s", f, l, c, m);
    if (n < 0)
        r = NULL;
    jv_free(file);
    jv_free(line);
    jv_free(col);
    jv_free(path);
    jv_free(msg);
    return r;
}
