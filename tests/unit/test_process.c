/*
 * test_process.c — unit tests for src/effects/process.c (`run: shell` and
 * `run: script`): outputs and return modes, the non-zero exit rule, the
 * environment, arguments, stdin, deadlines and cancellation (the process
 * group is gone afterwards), output caps, scripts (node, python), detached
 * processes, and that no zombie, descriptor or temporary file is left behind.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "conveyor.h"
#include "effects/http.h"
#include "effects/process.h"

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[256];
static struct cv_http_ctx *ioctx; /* its I/O thread watches the children of run_env */

/* Every test runs with TMPDIR pointing at a private, initially empty directory. */
static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cv-test-process-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    setenv("TMPDIR", tmpdir, 1);
    ioctx = cv__http_ctx_new();
    cr_assert_not_null(cv__http_ctx_io(ioctx)); /* started now: its descriptors are there before any count */
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int count_fds(void)
{
    return count_entries("/proc/self/fd");
}

static void teardown(void)
{
    cv__http_ctx_free(ioctx);
    ioctx = NULL;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", tmpdir);
}

/* No child of this process is left, not even a zombie. */
static void assert_no_children(void)
{
    int st;
    pid_t r = waitpid(-1, &st, WNOHANG);
    cr_assert(r == -1 && errno == ECHILD, "a child process was left behind (waitpid → %d)", (int)r);
}

/* A child's end, reported by the I/O thread. */
struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, rc, calls;
    jv out;
};

static void waiter_done(void *ud, int rc, jv out)
{
    struct waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->calls++;
    w->done = 1;
    w->rc = rc;
    w->out = out;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    cr_assert_eq(w->calls, 1);
}

/* Runs `args_json` with input {"in": true} as the engine does: watched by
 * the I/O thread (cv__process_start); returns the code and sets *out.
 * (cv__process_run, the blocking form, is called directly by a few tests.) */
static int run_env(const cv_effect_env *env, const char *args_json, jv *out)
{
    jv args = jv_parse(args_json), input = jv_parse("{\"in\": true}");
    cr_assert(jv_is_valid(args), "bad test JSON: %s", args_json);
    cv_effect_env e = *env;
    e.http = ioctx;
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, jv_null()};
    cr_assert_eq(cv__process_start(&e, args, input, waiter_done, &w), CV_OK);
    jv_free(args);
    jv_free(input);
    waiter_wait(&w);
    *out = w.out;
    return w.rc;
}

static int run(const char *args_json, jv *out)
{
    cv_effect_env env = {0};
    return run_env(&env, args_json, out);
}

static void assert_json(jv got, const char *want_json)
{
    jv want = jv_parse(want_json);
    jv dumped = jv_dump_string(jv_copy(got), 0);
    char *g = strdup(jv_string_value(dumped));
    jv_free(dumped);
    int eq = jv_equal(jv_copy(got), jv_copy(want));
    jv_free(got);
    jv_free(want);
    cr_assert(eq, "got %s, want %s", g, want_json);
    free(g);
}

/* Expects a runtime/config/timeout error; returns the descriptor (caller frees). */
static jv expect_error(int rc, jv out, const char *type, int status)
{
    cr_assert_eq(rc, CV_EFAULT);
    jv t = jv_object_get(jv_copy(out), jv_string("type"));
    jv s = jv_object_get(jv_copy(out), jv_string("status"));
    cr_assert_str_eq(jv_string_value(t), type);
    cr_assert_eq((int)jv_number_value(s), status);
    jv title = jv_object_get(jv_copy(out), jv_string("title"));
    cr_assert_eq(jv_get_kind(title), JV_KIND_STRING, "error without a title");
    jv_free(title);
    jv_free(t);
    jv_free(s);
    return out;
}

static const char *detail_of(jv err, char *buf, size_t n)
{
    jv d = jv_object_get(jv_copy(err), jv_string("detail"));
    snprintf(buf, n, "%s", jv_get_kind(d) == JV_KIND_STRING ? jv_string_value(d) : "");
    jv_free(d);
    return buf;
}

/* Is `pid` gone (or only a zombie waiting for init)? */
static int process_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

TestSuite(process, .init = setup, .fini = teardown, .timeout = 30);

/* ---- the specification's example -------------------------------------- */

Test(process, shell_example_stdin_and_arguments)
{
    int fds = count_fds();
    jv out;
    int rc = run("{\"shell\": {\"stdin\": \"Hello World\","
                 " \"command\": \"input=$(cat)\\necho \\\"STDIN was: $input\\\"\\n"
                 "echo \\\"ARGS are $1 $2\\\"\\n\","
                 " \"arguments\": [\"Foo\", \"Bar\"]}}",
                 &out);
    cr_assert_eq(rc, CV_OK);
    assert_json(out, "\"STDIN was: Hello World\\nARGS are Foo Bar\\n\"");
    assert_no_children();
    cr_assert_eq(count_fds(), fds, "descriptors leaked");
}

/* ---- return modes and the non-zero exit rule -------------------------- */

Test(process, return_modes)
{
    const char *cmd = "\"command\": \"echo out; echo err >&2\"";
    char buf[256];
    jv out;
    snprintf(buf, sizeof buf, "{\"shell\": {%s}}", cmd);
    cr_assert_eq(run(buf, &out), CV_OK);
    assert_json(out, "\"out\\n\"");
    snprintf(buf, sizeof buf, "{\"shell\": {%s}, \"return\": \"stdout\"}", cmd);
    cr_assert_eq(run(buf, &out), CV_OK);
    assert_json(out, "\"out\\n\"");
    snprintf(buf, sizeof buf, "{\"shell\": {%s}, \"return\": \"stderr\"}", cmd);
    cr_assert_eq(run(buf, &out), CV_OK);
    assert_json(out, "\"err\\n\"");
    snprintf(buf, sizeof buf, "{\"shell\": {%s}, \"return\": \"code\"}", cmd);
    cr_assert_eq(run(buf, &out), CV_OK);
    assert_json(out, "0");
    snprintf(buf, sizeof buf, "{\"shell\": {%s}, \"return\": \"all\"}", cmd);
    cr_assert_eq(run(buf, &out), CV_OK);
    assert_json(out, "{\"code\": 0, \"stdout\": \"out\\n\", \"stderr\": \"err\\n\"}");
    snprintf(buf, sizeof buf, "{\"shell\": {%s}, \"return\": \"none\"}", cmd);
    cr_assert_eq(run(buf, &out), CV_OK);
    assert_json(out, "null");
    assert_no_children();
}

Test(process, nonzero_exit_is_an_error_for_stdout_and_stderr)
{
    const char *modes[] = {"\"stdout\"", "\"stderr\"", "null"};
    for (int i = 0; i < 3; i++) {
        char buf[256], d[256];
        snprintf(buf, sizeof buf,
                 "{\"shell\": {\"command\": \"echo partial; echo boom >&2; exit 3\"}, \"return\": %s}",
                 modes[i]);
        jv out;
        int rc = run(buf, &out);
        jv err = expect_error(rc, out, CV_ERR_RUNTIME, 500);
        cr_assert_str_eq(detail_of(err, d, sizeof d), "boom\n");
        jv title = jv_object_get(jv_copy(err), jv_string("title"));
        cr_assert(strstr(jv_string_value(title), "3") != NULL, "title names the exit code");
        jv_free(title);
        jv_free(err);
    }
}

Test(process, nonzero_exit_is_reported_with_code_all_none)
{
    jv out;
    cr_assert_eq(run("{\"shell\": {\"command\": \"echo x; echo y >&2; exit 7\"}, \"return\": \"code\"}", &out),
                 CV_OK);
    assert_json(out, "7");
    cr_assert_eq(run("{\"shell\": {\"command\": \"echo x; echo y >&2; exit 7\"}, \"return\": \"all\"}", &out),
                 CV_OK);
    assert_json(out, "{\"code\": 7, \"stdout\": \"x\\n\", \"stderr\": \"y\\n\"}");
    cr_assert_eq(run("{\"shell\": {\"command\": \"exit 7\"}, \"return\": \"none\"}", &out), CV_OK);
    assert_json(out, "null");
    /* death by a signal reads as 128 + signal, like a shell */
    cr_assert_eq(run("{\"shell\": {\"command\": \"kill -9 $$\"}, \"return\": \"code\"}", &out), CV_OK);
    assert_json(out, "137");
}

/* ---- environment, arguments, stdin ------------------------------------- */

Test(process, environment_is_clean_plus_given_values)
{
    setenv("CV_TEST_HOST_SECRET", "leaked", 1);
    setenv("LANG", "C.UTF-8", 1);
    jv out;
    int rc = run("{\"shell\": {\"command\": \"echo \\\"$FOO|$N|$PI|$B|${CV_TEST_HOST_SECRET-unset}|$LANG\\\"; "
                 "test -n \\\"$PATH\\\" && echo path-ok\","
                 " \"environment\": {\"FOO\": \"bar baz\", \"N\": 42, \"PI\": 1.5, \"B\": true}}}",
                 &out);
    cr_assert_eq(rc, CV_OK);
    assert_json(out, "\"bar baz|42|1.5|true|unset|C.UTF-8\\npath-ok\\n\"");
    /* a given value replaces the host's; null removes it */
    rc = run("{\"shell\": {\"command\": \"echo \\\"$LANG|${HOME-nohome}\\\"\","
             " \"environment\": {\"LANG\": \"fr_FR.UTF-8\", \"HOME\": null}}}",
             &out);
    cr_assert_eq(rc, CV_OK);
    assert_json(out, "\"fr_FR.UTF-8|nohome\\n\"");
}

Test(process, object_and_non_string_arguments)
{
    jv out;
    int rc = run("{\"shell\": {\"command\": \"printf '%s|' \\\"$@\\\"\","
                 " \"arguments\": {\"b\": \"x y\", \"a\": 1, \"c\": {\"k\": [1]}}}}",
                 &out);
    cr_assert_eq(rc, CV_OK);
    assert_json(out, "\"b=x y|a=1|c={\\\"k\\\":[1]}|\"");
    rc = run("{\"shell\": {\"command\": \"printf '%s|' \\\"$@\\\"\","
             " \"arguments\": [\"a b\", 2, 2.5, true, null, [1]]}}",
             &out);
    cr_assert_eq(rc, CV_OK);
    assert_json(out, "\"a b|2|2.5|true|null|[1]|\"");
    rc = run("{\"shell\": {\"command\": \"echo $#\"}}", &out);
    cr_assert_eq(rc, CV_OK);
    assert_json(out, "\"0\\n\"");
}

Test(process, stdin_forms)
{
    jv out;
    /* a JSON value is passed as JSON text */
    cr_assert_eq(run("{\"shell\": {\"command\": \"cat\", \"stdin\": {\"a\": [1, \"x\"]}}}", &out), CV_OK);
    assert_json(out, "\"{\\\"a\\\":[1,\\\"x\\\"]}\"");
    /* stdin next to `shell` is accepted too */
    cr_assert_eq(run("{\"shell\": {\"command\": \"cat\"}, \"stdin\": \"outer\"}", &out), CV_OK);
    assert_json(out, "\"outer\"");
    /* no stdin: the child reads end-of-file at once */
    cr_assert_eq(run("{\"shell\": {\"command\": \"cat; echo end\"}}", &out), CV_OK);
    assert_json(out, "\"end\\n\"");
}

Test(process, invalid_utf8_is_replaced)
{
    jv out;
    cr_assert_eq(run("{\"shell\": {\"command\": \"printf 'a\\\\377b'\"}}", &out), CV_OK);
    assert_json(out, "\"a\\ufffdb\"");
}

/* ---- deadline and cancellation ----------------------------------------- */

static pid_t read_pid(FILE *f)
{
    int p = 0;
    if (fscanf(f, "%d", &p) != 1)
        return 0;
    return p;
}

Test(process, deadline_kills_the_whole_group)
{
    char pidfile[300], args[1200];
    snprintf(pidfile, sizeof pidfile, "%s/pids", tmpdir);
    snprintf(args, sizeof args,
             "{\"shell\": {\"command\": \"sleep 100 & echo $! > %s; echo $$ >> %s; wait\"}}", pidfile,
             pidfile);
    cv_effect_env env = {.deadline_ms = cv__now_ms() + 300};
    jv out;
    int rc = run_env(&env, args, &out);
    jv err = expect_error(rc, out, CV_ERR_TIMEOUT, 408);
    jv_free(err);
    FILE *f = fopen(pidfile, "r");
    cr_assert_not_null(f, "the command did not start");
    pid_t sleeper = read_pid(f), shell = read_pid(f);
    fclose(f);
    cr_assert(sleeper > 0 && shell > 0);
    cr_assert(process_gone(shell), "the shell survived the timeout");
    /* the background `sleep` is in the same group: it got the signal too */
    for (int i = 0; i < 100 && !process_gone(sleeper); i++)
        usleep(20000);
    cr_assert(process_gone(sleeper), "the group's sleep survived the timeout");
    assert_no_children();
}

Test(process, deadline_already_passed)
{
    cv_effect_env env = {.deadline_ms = cv__now_ms() - 1};
    jv out;
    jv err = expect_error(run_env(&env, "{\"shell\": {\"command\": \"echo hi\"}}", &out), out,
                          CV_ERR_TIMEOUT, 408);
    jv_free(err);
}

Test(process, sigterm_ignored_then_sigkill)
{
    cv_effect_env env = {.deadline_ms = cv__now_ms() + 200};
    jv out;
    jv err = expect_error(run_env(&env, "{\"shell\": {\"command\": \"trap '' TERM; while :; do sleep 0.05; done\"}}",
                                  &out),
                          out, CV_ERR_TIMEOUT, 408);
    jv_free(err);
    assert_no_children();
}

static atomic_int cancel_flag;

static void *cancel_later(void *arg)
{
    usleep(200000);
    atomic_store(&cancel_flag, 1);
    return NULL;
}

Test(process, cancel)
{
    atomic_store(&cancel_flag, 0);
    cv_effect_env env = {.cancel = &cancel_flag};
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, NULL);
    jv out;
    int rc = run_env(&env, "{\"shell\": {\"command\": \"sleep 100\"}}", &out);
    pthread_join(t, NULL);
    jv_free(out);
    cr_assert_eq(rc, CV_ECANCELED);
    assert_no_children();
    /* already cancelled: nothing is started */
    rc = run_env(&env, "{\"shell\": {\"command\": \"echo hi\"}}", &out);
    jv_free(out);
    cr_assert_eq(rc, CV_ECANCELED);
}

/* ---- big inputs and outputs -------------------------------------------- */

Test(process, child_ignoring_large_stdin)
{
    size_t n = 8 << 20;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    jv args = jv_parse("{\"shell\": {\"command\": \"echo ignored\"}}");
    args = jv_object_set(args, jv_string("stdin"), jv_string(big));
    free(big);
    jv out;
    cr_assert_eq(cv__process_run(NULL, args, jv_null(), &out), CV_OK);
    assert_json(out, "\"ignored\\n\"");
    /* and one that reads all of it */
    big = malloc(n + 1);
    memset(big, 'y', n);
    big[n] = '\0';
    args = jv_parse("{\"shell\": {\"command\": \"wc -c\"}}");
    args = jv_object_set(args, jv_string("stdin"), jv_string(big));
    free(big);
    cr_assert_eq(cv__process_run(NULL, args, jv_null(), &out), CV_OK);
    cr_assert_eq(atoi(jv_string_value(out)), 8 << 20);
    jv_free(out);
}

Test(process, host_ignoring_sigpipe_does_not_leak_into_child)
{
    signal(SIGPIPE, SIG_IGN);
    jv out;
    cr_assert_eq(run("{\"shell\": {\"command\": \"yes | head -n 2\"}, \"return\": \"all\"}", &out), CV_OK);
    assert_json(out, "{\"code\": 0, \"stdout\": \"y\\ny\\n\", \"stderr\": \"\"}");
}

Test(process, large_output)
{
    jv out;
    cr_assert_eq(run("{\"shell\": {\"command\": \"head -c 5000000 /dev/zero | tr '\\\\0' a\"}}", &out),
                 CV_OK);
    cr_assert_eq(jv_string_length_bytes(jv_copy(out)), 5000000);
    cr_assert_eq(jv_string_value(out)[4999999], 'a');
    jv_free(out);
    /* over 16 MiB: a runtime error, and the writer is killed */
    jv err = expect_error(run("{\"shell\": {\"command\": \"cat /dev/zero\"}}", &out), out,
                          CV_ERR_RUNTIME, 500);
    jv_free(err);
    err = expect_error(run("{\"shell\": {\"command\": \"head -c 17000000 /dev/zero >&2\"},"
                           " \"return\": \"code\"}",
                           &out),
                       out, CV_ERR_RUNTIME, 500);
    jv_free(err);
    assert_no_children();
}

/* ---- scripts ------------------------------------------------------------- */

static int have(const char *prog)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

Test(process, node_script_esm)
{
    if (!have("node"))
        cr_skip_test("node is not installed");
    jv args = jv_parse("{\"script\": {\"language\": \"javascript\", \"stdin\": \"Hello Workflow\","
                       " \"environment\": {\"foo\": \"bar\"}, \"arguments\": [\"hello\", 5]}}");
    args = jv_setpath(args, jv_parse("[\"script\", \"code\"]"),
                      jv_string("import { readFileSync } from 'node:fs';\n"
                                "import os from 'node:os';\n"
                                "const stdin = readFileSync(process.stdin.fd, 'utf8');\n"
                                "console.log('stdin > ', stdin);\n"
                                "const [_, __, arg, n] = process.argv;\n"
                                "console.log('arg > ', arg, n);\n"
                                "console.log('env > ', process.env.foo);\n"
                                "console.log('eol > ', JSON.stringify(os.EOL));\n"));
    jv out;
    cr_assert_eq(cv__process_run(NULL, args, jv_null(), &out), CV_OK);
    assert_json(out, "\"stdin >  Hello Workflow\\narg >  hello 5\\nenv >  bar\\neol >  \\\"\\\\n\\\"\\n\"");
    cr_assert_eq(count_entries(tmpdir), 0, "the script's temporary file was left behind");
    /* `js` is accepted too, and a failing script is an error with its stderr */
    char d[512];
    jv err = expect_error(run("{\"script\": {\"language\": \"js\", \"code\": \"throw new Error('kaput')\"}}", &out),
                          out, CV_ERR_RUNTIME, 500);
    cr_assert(strstr(detail_of(err, d, sizeof d), "kaput") != NULL, "detail: %s", d);
    jv_free(err);
    cr_assert_eq(count_entries(tmpdir), 0);
    assert_no_children();
}

Test(process, python_script)
{
    if (!have("python3"))
        cr_skip_test("python3 is not installed");
    jv args = jv_parse("{\"script\": {\"language\": \"python\", \"stdin\": \"from stdin\","
                       " \"arguments\": [\"a1\", \"a2\"], \"environment\": {\"X\": \"y\"},"
                       " \"code\": \"import sys, os\\ndata = sys.stdin.read()\\n"
                       "print(data, sys.argv[1:], os.environ['X'])\\n\"}}");
    jv out;
    cr_assert_eq(cv__process_run(NULL, args, jv_null(), &out), CV_OK);
    assert_json(out, "\"from stdin ['a1', 'a2'] y\\n\"");
    cr_assert_eq(count_entries(tmpdir), 0);
}

Test(process, script_from_source)
{
    if (!have("python3"))
        cr_skip_test("python3 is not installed");
    char path[300], args[1200];
    snprintf(path, sizeof path, "%s/../cv-test-src-%d.py", tmpdir, (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("import sys\nprint('from source', *sys.argv[1:])\n", f);
    fclose(f);
    snprintf(args, sizeof args,
             "{\"script\": {\"language\": \"python\", \"source\": {\"endpoint\": \"file://%s\"},"
             " \"arguments\": [\"x\"]}}",
             path);
    jv out;
    int rc = run(args, &out);
    unlink(path);
    cr_assert_eq(rc, CV_OK);
    assert_json(out, "\"from source x\\n\"");
    /* {uri} form, and a missing file is the fetch's error */
    snprintf(args, sizeof args,
             "{\"script\": {\"language\": \"python\", \"source\": {\"endpoint\": {\"uri\": \"file://%s\"}}}}",
             path);
    rc = run(args, &out);
    cr_assert_eq(rc, CV_EFAULT);
    jv_free(out);
}

Test(process, missing_interpreter)
{
    char args[1200], d[256];
    /* PATH is the child's PATH: the host's unless `environment` replaces it */
    snprintf(args, sizeof args,
             "{\"script\": {\"language\": \"js\", \"code\": \"1\", \"environment\": {\"PATH\": \"%s\"}}}",
             tmpdir);
    jv out;
    jv err = expect_error(run(args, &out), out, CV_ERR_RUNTIME, 500);
    cr_assert_str_eq(detail_of(err, d, sizeof d),
                     "node was not found on PATH: install Node.js to run js scripts");
    jv_free(err);
    snprintf(args, sizeof args,
             "{\"script\": {\"language\": \"python\", \"code\": \"1\", \"environment\": {\"PATH\": \"%s\"}}}",
             tmpdir);
    err = expect_error(run(args, &out), out, CV_ERR_RUNTIME, 500);
    cr_assert(strstr(detail_of(err, d, sizeof d), "python3 was not found on PATH") == d);
    jv_free(err);
    cr_assert_eq(count_entries(tmpdir), 0);
}

/* ---- configuration errors ---------------------------------------------- */

Test(process, configuration_errors)
{
    const char *bad[] = {
        "{}",
        "{\"shell\": {}}",
        "{\"shell\": {\"command\": 5}}",
        "{\"shell\": {\"command\": \"true\"}, \"return\": \"everything\"}",
        "{\"shell\": {\"command\": \"true\"}, \"await\": \"yes\"}",
        "{\"shell\": {\"command\": \"true\", \"arguments\": \"a b\"}}",
        "{\"shell\": {\"command\": \"true\", \"environment\": [\"A=1\"]}}",
        "{\"shell\": {\"command\": \"true\", \"environment\": {\"A=B\": \"1\"}}}",
        "{\"script\": {\"language\": \"cobol\", \"code\": \"x\"}}",
        "{\"script\": {\"language\": \"python\"}}",
        "{\"script\": {\"code\": \"x\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jv out;
        jv err = expect_error(run(bad[i], &out), out, CV_ERR_CONFIGURATION, 400);
        jv_free(err);
    }
    cr_assert_eq(count_entries(tmpdir), 0);
    assert_no_children();
}

/* ---- await: false -------------------------------------------------------- */

Test(process, detached_returns_input_at_once)
{
    char marker[300], args[1200];
    snprintf(marker, sizeof marker, "%s/../cv-test-detached-%d", tmpdir, (int)getpid());
    unlink(marker);
    snprintf(args, sizeof args,
             "{\"shell\": {\"command\": \"cat > %s.tmp; mv %s.tmp %s\", \"stdin\": \"written later\"},"
             " \"await\": false}",
             marker, marker, marker);
    int fds = count_fds();
    jv out;
    cr_assert_eq(run(args, &out), CV_OK);
    assert_json(out, "{\"in\": true}");
    assert_no_children(); /* the detached process is not our child */
    cr_assert_eq(count_fds(), fds);
    struct stat st;
    for (int i = 0; i < 250 && stat(marker, &st) != 0; i++)
        usleep(20000);
    FILE *f = fopen(marker, "r");
    cr_assert_not_null(f, "the detached command never ran");
    char buf[64] = {0};
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    fclose(f);
    unlink(marker);
    cr_assert_str_eq(buf, "written later");
}

Test(process, detached_script_removes_its_file)
{
    if (!have("python3"))
        cr_skip_test("python3 is not installed");
    jv out;
    cr_assert_eq(run("{\"script\": {\"language\": \"python\", \"code\": \"import time\\ntime.sleep(0.1)\\n\"},"
                     " \"await\": false}",
                     &out),
                 CV_OK);
    assert_json(out, "{\"in\": true}");
    for (int i = 0; i < 250 && count_entries(tmpdir) != 0; i++)
        usleep(20000);
    cr_assert_eq(count_entries(tmpdir), 0, "the detached script's file was not removed");
}

/* ---- children on the I/O thread ------------------------------------------------ */

static int count_threads(void)
{
    return count_entries("/proc/self/task");
}

Test(process, children_on_the_io_thread_hold_no_thread)
{
    enum { N = 12 };
    static struct waiter w[N];
    cv_effect_env env = {.http = ioctx};
    int before = count_threads();
    for (int i = 0; i < N; i++) {
        char args[200];
        snprintf(args, sizeof args, "{\"shell\": {\"command\": \"sleep 0.3; echo child %d\"}}", i);
        w[i] = (struct waiter){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, jv_null()};
        jv a = jv_parse(args), in = jv_null();
        cr_assert_eq(cv__process_start(&env, a, in, waiter_done, &w[i]), CV_OK);
        jv_free(a);
    }
    /* all twelve are running (each sleeps 0.3 s): no thread was started for them */
    cr_assert_eq(count_threads(), before, "%d threads while %d children run, %d before", count_threads(), N,
                 before);
    for (int i = 0; i < N; i++) {
        waiter_wait(&w[i]);
        cr_assert_eq(w[i].rc, CV_OK);
        char want[40];
        snprintf(want, sizeof want, "child %d\n", i);
        cr_assert_str_eq(jv_string_value(w[i].out), want);
        jv_free(w[i].out);
    }
    assert_no_children();
}

Test(process, stopping_the_io_thread_kills_running_children)
{
    struct cv_http_ctx *c = cv__http_ctx_new();
    cv_effect_env env = {.http = c};
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, jv_null()};
    jv a = jv_parse("{\"shell\": {\"command\": \"trap '' TERM; sleep 100\"}}");
    cr_assert_eq(cv__process_start(&env, a, jv_null(), waiter_done, &w), CV_OK);
    jv_free(a);
    usleep(200 * 1000);
    cv__http_ctx_free(c); /* the child is killed at once (no grace at the end), and reaped */
    cr_assert_eq(w.calls, 1);
    cr_assert_eq(w.rc, CV_ECANCELED);
    jv_free(w.out);
    assert_no_children();
}
