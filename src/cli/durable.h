/*
 * durable.h — the CLI's runs kept in a store (`run --db`, `resume`).
 */
#ifndef CV_CLI_DURABLE_H
#define CV_CLI_DURABLE_H

#include "conveyor.h"

/*
 * Deploys `wf` (read from `file`) into the store at `db`, creates an instance
 * with `input` (consumed), runs it with every checkpoint kept, and records its
 * end. Returns cv_run_ex's code, or -1 when the store could not be used (a
 * message was printed). *report as for cv_run.
 */
int cv__cli_run_durable(cv_runtime *rt, const char *db, const char *file, const cv_workflow *wf, jv input,
                        jv *report);

/*
 * Continues the given instances (or every unfinished one when nids is 0)
 * from their last checkpoint. Prints each output like `run` (one JSON line
 * {id, status, output, error} per instance when there are several). Returns
 * the exit status: 0 all completed, 1 otherwise.
 */
int cv__cli_resume(cv_runtime *rt, const char *db, char **ids, int nids);

#endif
