/*
 * process.h — `run: shell` and `run: script` as child processes.
 */
#ifndef CV_EFFECTS_PROCESS_H
#define CV_EFFECTS_PROCESS_H

#include "effects/effects.h"

/*
 * Runs a child process. `args` (consumed) is the evaluated `run` object:
 *   {shell: {command, arguments, environment}, stdin, return, await}
 *   {script: {language, code | source, arguments, environment}, stdin, return, await}
 * (`stdin` may also appear inside shell/script; both places are accepted.)
 * `input` (consumed) is the task's transformed input, returned when
 * `await: false`. Shell commands run with /bin/sh -c; array arguments become
 * $1, $2...; object arguments become KEY=VALUE words. Scripts: language
 * js/javascript runs with node (as an ES module), python with python3; a
 * missing interpreter is a runtime error naming it. The child gets a clean
 * environment (PATH, HOME, LANG from the host plus `environment`).
 * `return`: stdout (default) | stderr | code | all ({code, stdout, stderr}) | none.
 * A non-zero exit raises a runtime error (status 500, detail = stderr) when
 * `return` is stdout or stderr; with code/all/none it is just reported.
 * Output larger than 16 MiB is a runtime error. On cancel or deadline the
 * process group is killed (SIGTERM, then SIGKILL after 1 s).
 * Returns 0 (*out = output), CV_EFAULT (*out = error), or CV_ECANCELED.
 */
int cv__process_run(const cv_effect_env *env, jv args, jv input, jv *out);

/* How cv__process_start reports: what cv__process_run returns (out owned by the callee). */
typedef void (*cv_process_done_fn)(void *ud, int rc, jv out);

/*
 * The same child started now (args and input borrowed) and watched by the
 * I/O thread of env->http (no thread waits for it; the grace between
 * SIGTERM and SIGKILL does not block either): returns 0 and `done` is called
 * exactly once, on the I/O thread, with cv__process_run's result. `env` must
 * stay valid until then. CV_EUNSUPPORTED (nothing started) when there is no
 * I/O thread; CV_ENOMEM.
 */
int cv__process_start(const cv_effect_env *env, jv args, jv input, cv_process_done_fn done, void *ud);

#endif
