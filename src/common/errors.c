/*
 * errors.c — the library's status codes and the specification's error
 * descriptors. Every workflow-level error is built here, so that its shape
 * ({type, status, title, detail, instance}) is the same everywhere.
 */
#include "conveyor.h"
#include "effects/effects.h"

#include <stdarg.h>
#include <stdio.h>

const char *cv_strerror(int code)
{
    switch (code) {
#define CV_ERR_CASE(name, c, text) \
    case c:                        \
        return text;
        CV_ERRNO_MAP(CV_ERR_CASE)
#undef CV_ERR_CASE
    }
    return "unknown error";
}

jv cv__error_new(const char *type, int status, const char *title, const char *detail)
{
    jv e = jv_object();
    e = jv_object_set(e, jv_string("type"), jv_string(type));
    e = jv_object_set(e, jv_string("status"), jv_number(status));
    if (title)
        e = jv_object_set(e, jv_string("title"), jv_string(title));
    if (detail)
        e = jv_object_set(e, jv_string("detail"), jv_string(detail));
    return e;
}

jv cv__error_newf(const char *type, int status, const char *title, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return cv__error_new(type, status, title, buf);
}
