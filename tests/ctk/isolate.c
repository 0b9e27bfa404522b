/*
 * isolate.c — runs each conformance case in its own child process.
 *
 * The engine under test is young: a crash, an abort, a hang or a sanitizer
 * report in one case must show up as that case's FAIL line, not end the run.
 * So each case body runs in a forked child (its own process group) that
 * writes "1", "0" or "-" and a reason to a pipe and then exits normally (so
 * LeakSanitizer gets to check it). The parent waits at most the case's time
 * limit, polling in 20 ms steps, and kills the whole group when time is up.
 * The parent itself never creates a runtime, so it has no threads to lose in
 * fork(). With isolation off (--no-fork) the body runs in-process, which is
 * what a debugger wants.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctk.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Reads what is available without blocking; returns 1 at end of file. */
static int drain(int fd, struct ctk_buf *msg)
{
    char chunk[4096];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r > 0) {
            ctk_buf_append(msg, chunk, (size_t)r);
            continue;
        }
        if (r == 0)
            return 1;
        if (errno == EINTR)
            continue;
        return 0; /* EAGAIN */
    }
}

int ctk_run_case(ctk_case_fn fn, void *arg, int isolate, int timeout_s, struct ctk_buf *why)
{
    if (!isolate)
        return fn(arg, why);

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        ctk_buf_printf(why, "pipe: %s", strerror(errno));
        return 0;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        ctk_buf_printf(why, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return 0;
    }
    if (pid == 0) {
        close(fds[0]);
        setpgid(0, 0);
        struct ctk_buf r = {0};
        int res = fn(arg, &r);
        const char *tag = res > 0 ? "1" : res < 0 ? "-" : "0";
        write_all(fds[1], tag, 1);
        write_all(fds[1], ctk_buf_str(&r), r.len);
        close(fds[1]);
        ctk_buf_cleanup(&r);
        fflush(stdout);
        exit(0);
    }
    setpgid(pid, pid); /* also from here, so the group exists before any kill */
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);

    struct ctk_buf msg = {0};
    long long deadline = now_ms() + (long long)timeout_s * 1000;
    int status = 0, exited = 0, eof = 0, timed_out = 0;
    while (!exited) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (!eof && poll(&pfd, 1, 20) > 0)
            eof = drain(fds[0], &msg);
        else if (eof)
            poll(NULL, 0, 20);
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            exited = 1;
        else if (now_ms() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            exited = 1;
            timed_out = 1;
        }
    }
    if (!eof)
        drain(fds[0], &msg);
    close(fds[0]);
    /* No group kill once the child is reaped: its id may then be reused. */

    int res = 0;
    if (timed_out) {
        ctk_buf_printf(why, "timed out after %d s", timeout_s);
        if (msg.len)
            ctk_buf_printf(why, " (it had reported: %s)", ctk_buf_str(&msg) + 1);
    } else if (msg.len == 0) {
        if (WIFSIGNALED(status))
            ctk_buf_printf(why, "the engine crashed: signal %d (%s)", WTERMSIG(status),
                           strsignal(WTERMSIG(status)));
        else
            ctk_buf_printf(why, "the case process exited with status %d without a result",
                           WEXITSTATUS(status));
    } else {
        char tag = msg.p[0];
        res = tag == '1' ? 1 : tag == '-' ? -1 : 0;
        ctk_buf_printf(why, "%s", msg.p + 1);
        int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!clean) {
            if (res == 1)
                res = 0;
            if (WIFSIGNALED(status))
                ctk_buf_printf(why, "%scrashed after reporting: signal %d (%s)",
                               why->len ? "; " : "", WTERMSIG(status),
                               strsignal(WTERMSIG(status)));
            else
                ctk_buf_printf(why, "%sexited with status %d after reporting (a sanitizer "
                                    "report on stderr?)",
                               why->len ? "; " : "", WEXITSTATUS(status));
        }
    }
    ctk_buf_cleanup(&msg);
    return res;
}
