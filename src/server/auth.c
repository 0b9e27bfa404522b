/*
 * auth.c — the one authorization seam of the API (server.h). Every route of
 * server.c asks cv__authorize before doing anything; only this file decides.
 * This version has no tokens: loopback callers may do everything, others
 * only read health and readiness.
 */
#include "server/server.h"

#include <string.h>

int cv__authorize(const struct cv_caller *caller, const char *action, const char *ns)
{
    (void)ns; /* namespaces matter once roles exist */
    if (!strcmp(action, "health.read") || !strcmp(action, "ready.read"))
        return 0;
    if (caller && caller->loopback)
        return 0;
    return CV_EUNSUPPORTED;
}
