/*
 * process.c — `run: shell` and `run: script`: every child process conveyor
 * starts goes through cv__process_run, which owns the whole life of the child:
 * its argv and clean environment, its stdin, the capture of stdout/stderr,
 * the deadline and cancellation (the child runs in its own process group and
 * the whole group is killed), reaping (no zombies) and the removal of the
 * temporary script file. Nothing else in the library may fork or exec.
 *
 * Design choices, and why:
 * - posix_spawn (glibc: clone + exec, no page-table copy) for awaited
 *   processes; fork is used only for `await: false`, where a double fork with
 *   a small monitor process is needed so that the grandchild is reaped by
 *   init and the temporary script is still removed when it ends.
 * - stdin is handed over as a sealed-off memory file (memfd) holding the whole
 *   value, not through a pipe: the child reads it at its own pace, there is no
 *   writer loop, and a child that never reads its stdin cannot make us take
 *   SIGPIPE/EPIPE, without touching the process-wide signal disposition. It
 *   also works unchanged for detached processes.
 * - stdout and stderr come back through O_CLOEXEC pipes read with poll();
 *   the child's exit is observed through a pidfd when the kernel has one
 *   (otherwise by polling every 10-100 ms), and the leader is only reaped at
 *   the end so that killing its process group can never hit a reused pid.
 * - The child's signal mask and dispositions are reset, so a host that
 *   ignores SIGPIPE (most servers) does not pass that on to `yes | head`.
 */
#include "effects/process.h"
#include "common/util.h"
#include "conveyor.h"
#include "effects/http.h"
#include "effects/io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Largest stdout or stderr kept from one process. */
#define OUTPUT_CAP ((size_t)16 << 20)
/* How long to wait after SIGTERM before SIGKILL. */
#define TERM_GRACE_MS 1000
/* How long to keep reading after the process exited while a background child
 * of it still holds the pipes open. */
#define EOF_GRACE_MS 1000
/* Longest poll() sleep, so that cancellation is seen promptly. */
#define TICK_MS 100

enum ret_mode { RET_STDOUT, RET_STDERR, RET_CODE, RET_ALL, RET_NONE };

/* ------------------------------------------------------------------------ */
/* Small growable containers                                                 */
/* ------------------------------------------------------------------------ */

struct strv {
    char **v;
    size_t n, cap;
};

static int strv_push(struct strv *s, char *owned)
{
    if (!owned)
        return -1;
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **nv = realloc(s->v, cap * sizeof *nv);
        if (!nv) {
            free(owned);
            return -1;
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = owned;
    s->v[s->n] = NULL;
    return 0;
}

static int strv_add(struct strv *s, const char *str)
{
    return strv_push(s, strdup(str));
}

static void strv_free(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* "a" "=" "b" in one malloc'd string. */
static char *join3(const char *a, const char *sep, const char *b)
{
    size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
    char *r = malloc(la + ls + lb + 1);
    if (r) {
        memcpy(r, a, la);
        memcpy(r + la, sep, ls);
        memcpy(r + la + ls, b, lb + 1);
    }
    return r;
}

struct obuf {
    char *p;
    size_t len, cap;
    int fd; /* read end, -1 once at EOF */
};

/* ------------------------------------------------------------------------ */
/* Turning the evaluated `run` object into argv, envp and stdin               */
/* ------------------------------------------------------------------------ */

struct spec {
    struct strv argv, envp;
    jv stdin_data;      /* a string, or null for /dev/null */
    enum ret_mode ret;
    int await;
    int has_tmp;
    char tmpdir[PATH_MAX], tmpfile[PATH_MAX];
};

static int config_error(jv *out, const char *detail)
{
    *out = cv__error_new(CV_ERR_CONFIGURATION, 400, "Invalid run configuration", detail);
    return CV_EFAULT;
}

static int runtime_error(jv *out, const char *title, const char *detail)
{
    *out = cv__error_new(CV_ERR_RUNTIME, 500, title, detail);
    return CV_EFAULT;
}

/*
 * Renders a value (consumed) as one argv word or environment value: strings
 * as they are, integral numbers without ".0", everything else as JSON text
 * (jq's own formatting). Returns a malloc'd string or NULL on OOM.
 */
static char *value_text(jv v)
{
    char *r;
    if (jv_get_kind(v) == JV_KIND_STRING) {
        r = strdup(jv_string_value(v));
    } else if (jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) == floor(jv_number_value(v)) &&
               fabs(jv_number_value(v)) < 9.2e18) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, (int64_t)jv_number_value(v));
        r = strdup(buf);
    } else {
        jv s = jv_dump_string(jv_copy(v), 0);
        r = strdup(jv_string_value(s));
        jv_free(s);
    }
    jv_free(v);
    return r;
}

/* Builds the child's environment: PATH, HOME, LANG, TMPDIR from the host, then
 * `environment` (borrowed) on top (a key given there replaces the host's). */
static int build_env(struct spec *sp, jv environment, jv *out)
{
    static const char *inherit[] = {"PATH", "HOME", "LANG", "TMPDIR"};
    int kind = jv_get_kind(environment);
    if (kind != JV_KIND_INVALID && kind != JV_KIND_NULL && kind != JV_KIND_OBJECT)
        return config_error(out, "`environment` must be an object");
    for (size_t i = 0; i < sizeof inherit / sizeof inherit[0]; i++) {
        if (kind == JV_KIND_OBJECT) {
            if (jv_object_has(jv_copy(environment), jv_string(inherit[i])))
                continue;
        }
        const char *val = getenv(inherit[i]);
        if (!val && strcmp(inherit[i], "PATH") == 0)
            val = "/usr/local/bin:/usr/bin:/bin";
        if (val && strv_push(&sp->envp, join3(inherit[i], "=", val)))
            return CV_ENOMEM;
    }
    if (kind != JV_KIND_OBJECT)
        return CV_OK;
    int rc = CV_OK;
    jv_object_foreach(environment, key, val)
    {
        const char *k = jv_string_value(key);
        if (rc == CV_OK && (!*k || strchr(k, '='))) {
            rc = config_error(out, "environment variable names must be non-empty and contain no '='");
        } else if (rc == CV_OK && jv_get_kind(val) != JV_KIND_NULL) {
            char *text = value_text(jv_copy(val));
            char *kv = text ? join3(k, "=", text) : NULL;
            free(text);
            if (strv_push(&sp->envp, kv))
                rc = CV_ENOMEM;
        }
        jv_free(key);
        jv_free(val);
    }
    return rc;
}

/* Appends `arguments` (consumed): an array → one word each, an object →
 * KEY=VALUE words in insertion order; non-string values as JSON text. */
static int add_arguments(struct spec *sp, jv arguments, jv *out)
{
    int rc = CV_OK;
    switch (jv_get_kind(arguments)) {
    case JV_KIND_INVALID:
    case JV_KIND_NULL:
        break;
    case JV_KIND_ARRAY:
        jv_array_foreach(arguments, i, item)
        {
            if (rc == CV_OK && strv_push(&sp->argv, value_text(item)))
                rc = CV_ENOMEM;
            else if (rc != CV_OK)
                jv_free(item);
        }
        break;
    case JV_KIND_OBJECT:
        jv_object_foreach(arguments, key, val)
        {
            if (rc == CV_OK) {
                char *text = value_text(jv_copy(val));
                char *kv = text ? join3(jv_string_value(key), "=", text) : NULL;
                free(text);
                if (strv_push(&sp->argv, kv))
                    rc = CV_ENOMEM;
            }
            jv_free(key);
            jv_free(val);
        }
        break;
    default:
        rc = config_error(out, "`arguments` must be an array or an object");
        break;
    }
    jv_free(arguments);
    return rc;
}

/* The value of PATH in the child's environment. */
static const char *env_path(const struct spec *sp)
{
    for (size_t i = 0; i < sp->envp.n; i++)
        if (strncmp(sp->envp.v[i], "PATH=", 5) == 0)
            return sp->envp.v[i] + 5;
    return "";
}

/* Finds an executable `name` in `path` (colon-separated); malloc'd or NULL. */
static char *path_lookup(const char *path, const char *name)
{
    const char *p = path;
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if (n > 0 && n < PATH_MAX - 64) {
            char cand[PATH_MAX];
            snprintf(cand, sizeof cand, "%.*s/%s", (int)n, p, name);
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
                return strdup(cand);
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    return NULL;
}

/* Writes the script's code (borrowed string) to a private temporary file. */
static int write_script(struct spec *sp, jv code, const char *ext, jv *out)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    /* the directory name leaves room for "/script.ext" in tmpfile */
    int n = snprintf(sp->tmpdir, sizeof sp->tmpdir - 16, "%s/conveyor-script-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof sp->tmpdir - 16)
        return runtime_error(out, "Cannot write the script", "TMPDIR is too long");
    if (!mkdtemp(sp->tmpdir))
        return runtime_error(out, "Cannot write the script", strerror(errno));
    sp->has_tmp = 1;
    if (snprintf(sp->tmpfile, sizeof sp->tmpfile, "%.*s/script.%s", (int)(sizeof sp->tmpdir - 16),
                 sp->tmpdir, ext) >= (int)sizeof sp->tmpfile)
        return runtime_error(out, "Cannot write the script", "TMPDIR is too long");
    int fd = open(sp->tmpfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return runtime_error(out, "Cannot write the script", strerror(errno));
    const char *p = jv_string_value(code);
    size_t left = (size_t)jv_string_length_bytes(jv_copy(code));
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return runtime_error(out, "Cannot write the script", strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) < 0)
        return runtime_error(out, "Cannot write the script", strerror(errno));
    return CV_OK;
}

static void remove_script(struct spec *sp)
{
    if (!sp->has_tmp)
        return;
    unlink(sp->tmpfile);
    rmdir(sp->tmpdir);
    sp->has_tmp = 0;
}

static int prepare_shell(const cv_effect_env *env, struct spec *sp, jv shell, jv *out)
{
    jv cmd = jv_object_get(jv_copy(shell), jv_string("command"));
    int rc;
    if (jv_get_kind(cmd) != JV_KIND_STRING) {
        rc = config_error(out, "`run.shell.command` must be a string");
    } else if (strv_add(&sp->argv, "/bin/sh") || strv_add(&sp->argv, "-c") ||
               strv_add(&sp->argv, jv_string_value(cmd)) ||
               strv_add(&sp->argv, "conveyor-shell")) { /* $0; arguments start at $1 */
        rc = CV_ENOMEM;
    } else {
        rc = add_arguments(sp, jv_object_get(jv_copy(shell), jv_string("arguments")), out);
    }
    jv_free(cmd);
    return rc;
}

/* jv_object_get() that leaves the argument borrowed: the caller frees the result. */
static jv get(jv obj, const char *key)
{
    if (jv_get_kind(obj) != JV_KIND_OBJECT)
        return jv_invalid();
    return jv_object_get(jv_copy(obj), jv_string(key));
}

static int prepare_script(const cv_effect_env *env, struct spec *sp, jv script, jv *out)
{
    jv lang = get(script, "language");
    jv code = get(script, "code");
    jv source = get(script, "source");
    const char *interp = NULL, *ext = NULL, *hint = NULL;
    int rc = CV_OK;
    char *interp_path = NULL;

    if (jv_get_kind(lang) != JV_KIND_STRING) {
        rc = config_error(out, "`run.script.language` must be a string");
        goto out;
    }
    const char *l = jv_string_value(lang);
    if (strcmp(l, "js") == 0 || strcmp(l, "javascript") == 0) {
        interp = "node", ext = "mjs", hint = "install Node.js to run js scripts";
    } else if (strcmp(l, "python") == 0 || strcmp(l, "python3") == 0) {
        interp = "python3", ext = "py", hint = "install Python 3 to run python scripts";
    } else {
        *out = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Invalid run configuration",
                              "unsupported script language '%s' (supported: js, javascript, python)", l);
        rc = CV_EFAULT;
        goto out;
    }

    if (jv_get_kind(code) != JV_KIND_STRING) {
        if (jv_get_kind(source) != JV_KIND_OBJECT) {
            rc = config_error(out, "`run.script` needs `code` (a string) or `source` ({endpoint})");
            goto out;
        }
        jv endpoint = get(source, "endpoint");
        if (jv_get_kind(endpoint) == JV_KIND_OBJECT) {
            jv uri = get(endpoint, "uri");
            jv_free(endpoint);
            endpoint = uri;
        }
        if (jv_get_kind(endpoint) != JV_KIND_STRING) {
            jv_free(endpoint);
            rc = config_error(out, "`run.script.source.endpoint` must be a URI or {uri}");
            goto out;
        }
        jv fetched = jv_null();
        rc = cv__fetch_text(env, jv_string_value(endpoint), &fetched);
        jv_free(endpoint);
        if (rc) {
            *out = fetched;
            goto out;
        }
        if (jv_get_kind(fetched) != JV_KIND_STRING) {
            jv_free(fetched);
            rc = runtime_error(out, "Cannot load the script", "the script source is not text");
            goto out;
        }
        jv_free(code);
        code = fetched;
    }

    interp_path = path_lookup(env_path(sp), interp);
    if (!interp_path) {
        *out = cv__error_newf(CV_ERR_RUNTIME, 500, "Interpreter not found",
                              "%s was not found on PATH: %s", interp, hint);
        rc = CV_EFAULT;
        goto out;
    }
    rc = write_script(sp, code, ext, out);
    if (rc)
        goto out;
    if (strv_add(&sp->argv, interp_path) || strv_add(&sp->argv, sp->tmpfile)) {
        rc = CV_ENOMEM;
        goto out;
    }
    rc = add_arguments(sp, get(script, "arguments"), out);
out:
    free(interp_path);
    jv_free(lang);
    jv_free(code);
    jv_free(source);
    return rc;
}

/*
 * Fills *sp from the evaluated `run` object (borrowed). On a configuration or
 * runtime problem returns CV_EFAULT with *out set; CV_ENOMEM on OOM.
 */
static int prepare(const cv_effect_env *env, jv args, struct spec *sp, jv *out)
{
    int rc = CV_OK;
    jv shell = get(args, "shell"), script = get(args, "script");
    jv which = jv_get_kind(shell) == JV_KIND_OBJECT ? shell : script;
    jv ret = get(args, "return"), await = get(args, "await");
    jv in = get(which, "stdin");

    if (jv_get_kind(which) != JV_KIND_OBJECT) {
        rc = config_error(out, "`run` needs a `shell` or `script` object");
        goto out;
    }

    /* `return` */
    if (jv_get_kind(ret) == JV_KIND_INVALID || jv_get_kind(ret) == JV_KIND_NULL) {
        sp->ret = RET_STDOUT;
    } else {
        static const char *names[] = {"stdout", "stderr", "code", "all", "none"};
        size_t i = 0;
        if (jv_get_kind(ret) == JV_KIND_STRING)
            for (; i < 5 && strcmp(jv_string_value(ret), names[i]) != 0; i++)
                ;
        if (jv_get_kind(ret) != JV_KIND_STRING || i == 5) {
            rc = config_error(out, "`run.return` must be one of stdout, stderr, code, all, none");
            goto out;
        }
        sp->ret = (enum ret_mode)i;
    }

    /* `await` */
    if (jv_get_kind(await) == JV_KIND_FALSE) {
        sp->await = 0;
    } else if (jv_get_kind(await) == JV_KIND_TRUE || jv_get_kind(await) == JV_KIND_INVALID ||
               jv_get_kind(await) == JV_KIND_NULL) {
        sp->await = 1;
    } else {
        rc = config_error(out, "`run.await` must be a boolean");
        goto out;
    }

    /* `stdin`: inside shell/script, or next to it */
    if (jv_get_kind(in) == JV_KIND_INVALID || jv_get_kind(in) == JV_KIND_NULL) {
        jv_free(in);
        in = get(args, "stdin");
    }
    if (jv_get_kind(in) == JV_KIND_STRING) {
        sp->stdin_data = jv_copy(in);
    } else if (jv_get_kind(in) != JV_KIND_INVALID && jv_get_kind(in) != JV_KIND_NULL) {
        sp->stdin_data = jv_dump_string(jv_copy(in), 0);
    }

    jv environment = get(which, "environment");
    rc = build_env(sp, environment, out);
    jv_free(environment);
    if (rc)
        goto out;

    if (jv_get_kind(shell) == JV_KIND_OBJECT)
        rc = prepare_shell(env, sp, shell, out);
    else
        rc = prepare_script(env, sp, script, out);
out:
    jv_free(shell);
    jv_free(script);
    jv_free(ret);
    jv_free(await);
    jv_free(in);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Starting the child                                                        */
/* ------------------------------------------------------------------------ */

/* A file descriptor holding the whole stdin value, positioned at 0, or
 * /dev/null. O_CLOEXEC; the spawn's dup2 clears it on the child's copy. */
static int stdin_fd(jv data)
{
    if (jv_get_kind(data) != JV_KIND_STRING)
        return open("/dev/null", O_RDONLY | O_CLOEXEC);
    int fd = memfd_create("conveyor-stdin", MFD_CLOEXEC);
    if (fd < 0) {
        const char *tmp = getenv("TMPDIR");
        fd = open(tmp && *tmp ? tmp : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
            return -1;
    }
    const char *p = jv_string_value(data);
    size_t left = (size_t)jv_string_length_bytes(jv_copy(data));
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Restores default signal handling in a freshly forked child (async-signal-safe). */
static void child_reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * `await: false`: starts the process in its own session and returns at once.
 * The first child exits immediately (we reap it); a monitor grandchild runs
 * the command (or, with a script, forks it, waits and removes the file) and
 * is reparented to init. Only async-signal-safe calls after fork().
 */
static int spawn_detached(struct spec *sp, int in_fd, jv *out)
{
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0)
        return runtime_error(out, "Cannot start the process", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(null_fd);
        return runtime_error(out, "Cannot start the process", strerror(e));
    }
    if (pid == 0) {
        setsid();
        pid_t m = fork();
        if (m != 0)
            _exit(m < 0 ? 127 : 0);
        child_reset_signals();
        dup2(in_fd, 0);
        dup2(null_fd, 1);
        dup2(null_fd, 2);
#ifdef SYS_close_range
        syscall(SYS_close_range, 3, ~0U, 0);
#endif
        if (!sp->has_tmp) {
            execve(sp->argv.v[0], sp->argv.v, sp->envp.v);
            _exit(127);
        }
        pid_t g = fork();
        if (g == 0) {
            execve(sp->argv.v[0], sp->argv.v, sp->envp.v);
            _exit(127);
        }
        if (g > 0)
            while (waitpid(g, NULL, 0) < 0 && errno == EINTR)
                ;
        unlink(sp->tmpfile);
        rmdir(sp->tmpdir);
        _exit(0);
    }
    close(null_fd);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    sp->has_tmp = 0; /* the monitor removes it now */
    return CV_OK;
}

static int spawn_awaited(struct spec *sp, int in_fd, int out_fd, int err_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t all, none;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    sigemptyset(&none);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    /* descriptors other code in the host opened without O_CLOEXEC */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    int rc = posix_spawn(pid, sp->argv.v[0], &fa, &at, sp->argv.v, sp->envp.v);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Watching the child                                                        */
/* ------------------------------------------------------------------------ */

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#else
    return -1;
#endif
}

/* Has the leader exited? Leaves it unreaped, so its pid (and group id) stays ours. */
static int has_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == ECHILD; /* SIGCHLD ignored by the host: already gone */
    return si.si_pid == pid;
}

/* Reaps the leader; returns its exit code (128 + signal when killed). */
static int reap(pid_t pid)
{
    int st = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* SIGTERM to the group, SIGKILL after TERM_GRACE_MS, then reap the leader. */
static void kill_group(pid_t pid, int pidfd)
{
    kill(-pid, SIGTERM);
    int64_t end = cv__now_ms() + TERM_GRACE_MS;
    while (!has_exited(pid) && cv__now_ms() < end) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        poll(&p, pidfd >= 0 ? 1 : 0, 10);
    }
    kill(-pid, SIGKILL); /* the rest of the group, or a leader ignoring SIGTERM */
    reap(pid);
}

/* Reads what is available on b->fd: 0, 1 when over the cap, 2 when out of memory. */
static int drain(struct obuf *b)
{
    for (;;) {
        if (b->cap - b->len < 4096) {
            size_t cap = b->cap ? b->cap * 2 : 16384;
            if (cap > OUTPUT_CAP + 8192)
                cap = OUTPUT_CAP + 8192;
            if (cap <= b->len + 1)
                return 1;
            char *np = realloc(b->p, cap);
            if (!np)
                return 2;
            b->p = np;
            b->cap = cap;
        }
        ssize_t r = read(b->fd, b->p + b->len, b->cap - b->len);
        if (r > 0) {
            b->len += (size_t)r;
            if (b->len > OUTPUT_CAP)
                return 1;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return 0;
        close(b->fd); /* EOF or error */
        b->fd = -1;
        return 0;
    }
}

enum outcome { DONE, TIMED_OUT, CANCELLED, TOO_LARGE, FAILED };

/*
 * Runs the loop that collects output until the leader has exited and both
 * pipes are at EOF (or EOF_GRACE_MS after the exit, when a background child
 * keeps them open). Kills the group on deadline, cancellation or overflow.
 * Always reaps the leader; *code is its exit code on DONE.
 */
static enum outcome watch(const cv_effect_env *env, pid_t pid, struct obuf *o, struct obuf *e,
                          int *code)
{
    int pidfd = open_pidfd(pid);
    int exited = 0;
    int64_t exited_at = 0;
    enum outcome res = DONE;
    for (;;) {
        if (env && env->cancel && atomic_load(env->cancel)) {
            res = CANCELLED;
            break;
        }
        int64_t now = cv__now_ms();
        if (env && env->deadline_ms && now >= env->deadline_ms) {
            res = TIMED_OUT;
            break;
        }
        if (!exited && has_exited(pid)) {
            exited = 1;
            exited_at = now;
        }
        if (exited && ((o->fd < 0 && e->fd < 0) || now - exited_at >= EOF_GRACE_MS))
            break;

        struct pollfd p[3];
        int n = 0;
        if (o->fd >= 0)
            p[n++] = (struct pollfd){.fd = o->fd, .events = POLLIN};
        if (e->fd >= 0)
            p[n++] = (struct pollfd){.fd = e->fd, .events = POLLIN};
        int watch_pid = !exited && pidfd >= 0;
        if (watch_pid)
            p[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        int64_t wait = TICK_MS;
        if (!exited && pidfd < 0 && o->fd < 0 && e->fd < 0)
            wait = 10; /* nothing to wake us when it exits: poll its status more often */
        if (env && env->deadline_ms && env->deadline_ms - now < wait)
            wait = env->deadline_ms - now;
        if (exited && EOF_GRACE_MS - (now - exited_at) < wait)
            wait = EOF_GRACE_MS - (now - exited_at);
        if (wait < 0)
            wait = 0;
        if (poll(p, (nfds_t)n, (int)wait) < 0 && errno != EINTR) {
            res = FAILED;
            break;
        }
        int d = o->fd >= 0 ? drain(o) : 0;
        if (!d && e->fd >= 0)
            d = drain(e);
        if (d) {
            res = d == 1 ? TOO_LARGE : FAILED;
            break;
        }
    }
    if (res == DONE) {
        *code = reap(pid);
    } else {
        kill_group(pid, pidfd);
    }
    if (pidfd >= 0)
        close(pidfd);
    return res;
}

/* ------------------------------------------------------------------------ */
/* The effect                                                                */
/* ------------------------------------------------------------------------ */

static jv as_string(struct obuf *b)
{
    return jv_string_sized(b->p ? b->p : "", (int)b->len); /* invalid UTF-8 → U+FFFD */
}

/*
 * Starts the child of `args` (borrowed). Returns 0 with *pid > 0 and o/e
 * reading its pipes while an awaited child runs; 0 with *pid == 0 and *out =
 * *input (taken) when a detached one was started; otherwise the code with
 * *out (CV_EFAULT: the error). Whatever happens, release with child_release.
 */
static int child_start(const cv_effect_env *env, jv args, jv *input, struct spec *sp, struct obuf *o,
                       struct obuf *e, pid_t *pid, jv *out)
{
    int pout[2] = {-1, -1}, perr[2] = {-1, -1}, in_fd = -1;
    int rc;
    *pid = 0;
    *out = jv_null();
    if (env && env->cancel && atomic_load(env->cancel))
        return CV_ECANCELED;
    rc = prepare(env, args, sp, out);
    if (rc)
        return rc;
    in_fd = stdin_fd(sp->stdin_data);
    if (in_fd < 0)
        return runtime_error(out, "Cannot start the process", "cannot prepare stdin");

    if (!sp->await) {
        rc = spawn_detached(sp, in_fd, out);
        if (rc == CV_OK) {
            *out = *input;
            *input = jv_invalid();
        }
        goto out;
    }

    if (env && env->deadline_ms && cv__now_ms() >= env->deadline_ms) {
        *out = cv__error_new(CV_ERR_TIMEOUT, 408, "Timeout",
                             "the task's deadline passed before the process started");
        rc = CV_EFAULT;
        goto out;
    }
    if (pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
        rc = runtime_error(out, "Cannot start the process", strerror(errno));
        goto out;
    }
    fcntl(pout[0], F_SETFL, O_NONBLOCK);
    fcntl(perr[0], F_SETFL, O_NONBLOCK);

    int serr = spawn_awaited(sp, in_fd, pout[1], perr[1], pid);
    close(pout[1]);
    close(perr[1]);
    close(in_fd);
    pout[1] = perr[1] = in_fd = -1;
    if (serr) {
        *pid = 0;
        *out = cv__error_newf(CV_ERR_RUNTIME, 500, "Cannot start the process", "%s: %s",
                              sp->argv.v[0], strerror(serr));
        rc = CV_EFAULT;
        goto out;
    }
    o->fd = pout[0];
    e->fd = perr[0];
    pout[0] = perr[0] = -1;
    rc = CV_OK;
out:
    for (int i = 0; i < 2; i++) {
        if (pout[i] >= 0)
            close(pout[i]);
        if (perr[i] >= 0)
            close(perr[i]);
    }
    if (in_fd >= 0)
        close(in_fd);
    return rc;
}

/* The effect's result once an awaited child ended (`res`, exit `code`). */
static int child_result(const struct spec *sp, struct obuf *o, struct obuf *e, enum outcome res, int code,
                        jv *out)
{
    *out = jv_null();
    switch (res) {
    case DONE:
        break;
    case CANCELLED:
        return CV_ECANCELED;
    case TIMED_OUT:
        *out = cv__error_new(CV_ERR_TIMEOUT, 408, "Timeout",
                             "the process did not finish before the task's deadline");
        return CV_EFAULT;
    case TOO_LARGE:
        return runtime_error(out, "Process output too large",
                             "stdout or stderr exceeded 16 MiB; the process was killed");
    case FAILED:
        return runtime_error(out, "Process failed", "reading the process's output failed");
    }

    if (code != 0 && (sp->ret == RET_STDOUT || sp->ret == RET_STDERR)) {
        jv detail = as_string(e);
        char title[64];
        snprintf(title, sizeof title, "Process exited with code %d", code);
        if (jv_string_length_bytes(jv_copy(detail)) == 0) {
            jv_free(detail);
            detail = jv_string("the process wrote nothing to stderr");
        }
        *out = cv__error_new(CV_ERR_RUNTIME, 500, title, jv_string_value(detail));
        jv_free(detail);
        return CV_EFAULT;
    }
    switch (sp->ret) {
    case RET_STDOUT:
        *out = as_string(o);
        break;
    case RET_STDERR:
        *out = as_string(e);
        break;
    case RET_CODE:
        *out = jv_number(code);
        break;
    case RET_ALL:
        *out = jv_object();
        *out = jv_object_set(*out, jv_string("code"), jv_number(code));
        *out = jv_object_set(*out, jv_string("stdout"), as_string(o));
        *out = jv_object_set(*out, jv_string("stderr"), as_string(e));
        break;
    case RET_NONE:
        *out = jv_null();
        break;
    }
    return CV_OK;
}

static void child_release(struct spec *sp, struct obuf *o, struct obuf *e)
{
    remove_script(sp);
    strv_free(&sp->argv);
    strv_free(&sp->envp);
    jv_free(sp->stdin_data);
    sp->stdin_data = jv_null();
    if (o->fd >= 0)
        close(o->fd);
    if (e->fd >= 0)
        close(e->fd);
    o->fd = e->fd = -1;
    free(o->p);
    free(e->p);
    o->p = e->p = NULL;
}

int cv__process_run(const cv_effect_env *env, jv args, jv input, jv *out)
{
    struct spec sp;
    memset(&sp, 0, sizeof sp);
    sp.stdin_data = jv_null();
    struct obuf o = {.fd = -1}, e = {.fd = -1};
    pid_t pid = 0;
    int rc = child_start(env, args, &input, &sp, &o, &e, &pid, out);
    if (!rc && pid > 0) {
        int code = -1;
        enum outcome res = watch(env, pid, &o, &e, &code);
        rc = child_result(&sp, &o, &e, res, code, out);
    }
    if (rc == CV_ENOMEM || rc == CV_ECANCELED) {
        jv_free(*out);
        *out = jv_null();
    }
    child_release(&sp, &o, &e);
    jv_free(args);
    jv_free(input);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The effect on the I/O thread                                              */
/* ------------------------------------------------------------------------ */

/* An awaited child watched by the I/O thread: the steps of watch() as a
 * state machine, without ever blocking (the grace before SIGKILL included). */
struct proc_op {
    struct cv_io_watch w; /* first: the I/O thread hands it back */
    const cv_effect_env *env;
    struct spec sp;
    struct obuf o, e;
    pid_t pid;
    int pidfd;
    int exited;
    int64_t exited_at;
    int killing; /* SIGTERM sent: SIGKILL at kill_at unless it ended */
    int64_t kill_at;
    enum outcome res;
    int rc; /* a result known at the start (pid == 0) */
    jv out;
    cv_process_done_fn done;
    void *ud;
};

static int proc_fds(struct cv_io_watch *w, struct curl_waitfd *fds, int max)
{
    struct proc_op *op = (struct proc_op *)w;
    int n = 0;
    if (op->killing) { /* not read any more: only its end matters */
        if (op->pidfd >= 0 && n < max)
            fds[n++] = (struct curl_waitfd){.fd = op->pidfd, .events = CURL_WAIT_POLLIN};
        return n;
    }
    if (op->o.fd >= 0 && n < max)
        fds[n++] = (struct curl_waitfd){.fd = op->o.fd, .events = CURL_WAIT_POLLIN};
    if (op->e.fd >= 0 && n < max)
        fds[n++] = (struct curl_waitfd){.fd = op->e.fd, .events = CURL_WAIT_POLLIN};
    if (op->pidfd >= 0 && !op->exited && n < max)
        fds[n++] = (struct curl_waitfd){.fd = op->pidfd, .events = CURL_WAIT_POLLIN};
    return n;
}

static void proc_end(struct proc_op *op, int rc, jv out)
{
    if (op->pidfd >= 0)
        close(op->pidfd);
    child_release(&op->sp, &op->o, &op->e);
    cv_process_done_fn done = op->done;
    void *ud = op->ud;
    free(op);
    done(ud, rc, out);
}

static void proc_kill(struct proc_op *op, enum outcome res, int64_t now)
{
    op->res = res;
    op->killing = 1;
    op->kill_at = now + TERM_GRACE_MS;
    kill(-op->pid, SIGTERM);
}

static int proc_step(struct cv_io_watch *w, int64_t now, int stopping, int64_t *wake)
{
    struct proc_op *op = (struct proc_op *)w;
    if (!op->pid) { /* known at the start */
        proc_end(op, op->rc, op->out);
        return 1;
    }
    if (op->killing) {
        if (stopping || now >= op->kill_at || has_exited(op->pid)) {
            kill(-op->pid, SIGKILL); /* the rest of the group, or a leader ignoring SIGTERM */
            reap(op->pid);
            jv out;
            int rc = child_result(&op->sp, &op->o, &op->e, op->res, -1, &out);
            proc_end(op, rc, out);
            return 1;
        }
        *wake = now + 10 < op->kill_at ? now + 10 : op->kill_at;
        return 0;
    }
    int d = op->o.fd >= 0 ? drain(&op->o) : 0;
    if (!d && op->e.fd >= 0)
        d = drain(&op->e);
    const cv_effect_env *env = op->env;
    if (stopping || (env->cancel && atomic_load(env->cancel))) {
        proc_kill(op, CANCELLED, now);
        if (stopping)
            return proc_step(w, now, stopping, wake);
    } else if (d) {
        proc_kill(op, d == 1 ? TOO_LARGE : FAILED, now);
    } else if (env->deadline_ms && now >= env->deadline_ms) {
        proc_kill(op, TIMED_OUT, now);
    }
    if (op->killing) {
        *wake = now + 10;
        return 0;
    }
    if (!op->exited && has_exited(op->pid)) {
        op->exited = 1;
        op->exited_at = now;
    }
    if (op->exited && ((op->o.fd < 0 && op->e.fd < 0) || now - op->exited_at >= EOF_GRACE_MS)) {
        int code = reap(op->pid);
        jv out;
        int rc = child_result(&op->sp, &op->o, &op->e, DONE, code, &out);
        proc_end(op, rc, out);
        return 1;
    }
    /* the next look without a descriptor ready: cancel checks, the deadline,
     * the end of the grace after its exit, or its status when there is no pidfd */
    int64_t next = now + TICK_MS;
    if (!op->exited && op->pidfd < 0)
        next = now + 10;
    if (env->deadline_ms && env->deadline_ms < next)
        next = env->deadline_ms;
    if (op->exited && op->exited_at + EOF_GRACE_MS < next)
        next = op->exited_at + EOF_GRACE_MS;
    *wake = next;
    return 0;
}

int cv__process_start(const cv_effect_env *env, jv args, jv input, cv_process_done_fn done, void *ud)
{
    struct cv_io *loop = env->http ? cv__http_ctx_io(env->http) : NULL;
    if (!loop)
        return CV_EUNSUPPORTED;
    struct proc_op *op = calloc(1, sizeof *op);
    if (!op)
        return CV_ENOMEM;
    op->env = env;
    op->done = done;
    op->ud = ud;
    op->w.fds = proc_fds;
    op->w.step = proc_step;
    op->sp.stdin_data = jv_null();
    op->o.fd = op->e.fd = op->pidfd = -1;
    jv in = jv_copy(input);
    op->rc = child_start(env, args, &in, &op->sp, &op->o, &op->e, &op->pid, &op->out);
    jv_free(in);
    if (op->rc == CV_ENOMEM || op->rc == CV_ECANCELED) {
        jv_free(op->out);
        op->out = jv_null();
    }
    if (!op->rc && op->pid > 0)
        op->pidfd = open_pidfd(op->pid);
    else
        op->pid = 0; /* ended already: reported at the first step */
    cv__io_watch(loop, &op->w);
    return CV_OK;
}
