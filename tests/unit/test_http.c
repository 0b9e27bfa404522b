/*
 * test_http.c — outbound HTTP against the offline stub (tests/stub/stub_server.py):
 * host map, call http (outputs, templates, query/headers/body, errors,
 * deadline, cancel, redirects), authentication (basic, bearer, digest,
 * oauth2, oidc), call openapi (Swagger 2 and OpenAPI 3), external resources.
 *
 * Each test starts its own stub (python3, --port 0) and maps every host to
 * it with "*=127.0.0.1:PORT", so nothing leaves the machine. The stub's JSON
 * request log lets tests check what was actually sent.
 */
#include "common/util.h"
#include "conveyor.h"
#include "effects/hostmap.h"
#include "effects/http.h"
#include "effects/http_int.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fixture: one stub per test ------------------------------------------ */

static pid_t stub_pid;
static int stub_port;
static char stub_dir[64];
static char log_path[128];
static struct cv_hostmap *hosts;
static struct cv_http_ctx *ctx;
static cv_effect_env env;

static void stub_start(void)
{
    char port_path[128];
    snprintf(stub_dir, sizeof stub_dir, "/tmp/cv-http-test-XXXXXX");
    cr_assert_not_null(mkdtemp(stub_dir));
    snprintf(port_path, sizeof port_path, "%s/port", stub_dir);
    snprintf(log_path, sizeof log_path, "%s/log.jsonl", stub_dir);
    stub_pid = fork();
    cr_assert(stub_pid >= 0);
    if (stub_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        /* Run from the repository root (tests/run-all.sh does); CV_STUB_SERVER overrides. */
        const char *stub = getenv("CV_STUB_SERVER");
        execlp("python3", "python3", stub ? stub : "tests/stub/stub_server.py", "--port", "0",
               "--port-file", port_path, "--log", log_path, (char *)NULL);
        _exit(127);
    }
    int64_t until = cv__now_ms() + 10000;
    while (cv__now_ms() < until) {
        FILE *f = fopen(port_path, "r");
        if (f) {
            int ok = fscanf(f, "%d", &stub_port) == 1;
            fclose(f);
            if (ok)
                break;
        }
        usleep(20000);
    }
    cr_assert(stub_port > 0, "the stub did not start within 10 s");

    char spec[64];
    snprintf(spec, sizeof spec, "*=127.0.0.1:%d", stub_port);
    hosts = cv__hostmap_new();
    cr_assert_eq(cv__hostmap_add(hosts, spec), CV_OK);
    ctx = cv__http_ctx_new();
    env = (cv_effect_env){.hosts = hosts, .http = ctx};
}

static void stub_stop(void)
{
    if (stub_pid > 0) {
        kill(stub_pid, SIGTERM);
        waitpid(stub_pid, NULL, 0);
        stub_pid = 0;
    }
    cv__http_ctx_free(ctx);
    cv__hostmap_free(hosts);
    ctx = NULL;
    hosts = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", stub_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", stub_dir);
}

TestSuite(http, .init = stub_start, .fini = stub_stop, .timeout = 60);

/* ---- helpers -------------------------------------------------------------- */

static jv J(const char *text)
{
    jv v = jv_parse(text);
    cr_assert(jv_is_valid(v), "bad JSON in test: %s", text);
    return v;
}

/* An asynchronous call's end, handed from the I/O thread to the test. */
struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, rc, calls;
    jv out, authz;
};

static void waiter_done(void *ud, int rc, jv out, jv authz)
{
    struct waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->authz = authz;
    w->calls++;
    w->done = 1;
    w->rc = rc;
    w->out = out;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Runs call: http as the engine does (effect_run.c): on the I/O thread, or
 * as a blocking call when cv__http_call_start says it must (OAuth2/OIDC). */
static int call_http(const cv_effect_env *e, jv args, jv input, jv *out)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, jv_null(), jv_null()};
    int rc = cv__http_call_start(e, args, input, waiter_done, &w);
    if (rc == CV_EUNSUPPORTED)
        return cv__http_call(e, args, input, out, NULL);
    cr_assert_eq(rc, CV_OK);
    jv_free(args);
    jv_free(input);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    cr_assert_eq(w.calls, 1);
    jv_free(w.authz);
    *out = w.out;
    return w.rc;
}

/* call: openapi as the engine runs it: on the I/O thread once the document
 * is cached, else blocking (the first call of a document fetches it). */
static int call_openapi(const cv_effect_env *e, jv args, jv *out, jv *authz)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, jv_null(), jv_null()};
    int rc = cv__openapi_call_start(e, args, waiter_done, &w);
    if (rc == CV_EUNSUPPORTED)
        return cv__openapi_call(e, args, out, authz);
    cr_assert_eq(rc, CV_OK);
    jv_free(args);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    cr_assert_eq(w.calls, 1);
    if (authz)
        *authz = w.authz;
    else
        jv_free(w.authz);
    *out = w.out;
    return w.rc;
}

/* Runs call: http with `args` JSON and `input` JSON; returns rc, *out. */
static int http(const char *args, const char *input, jv *out)
{
    return call_http(&env, J(args), J(input ? input : "{}"), out);
}

/* A property path of v (borrowed), e.g. get(v, "request", "uri", NULL). */
static jv get(jv v, ...)
{
    va_list ap;
    va_start(ap, v);
    jv cur = jv_copy(v);
    for (const char *k; (k = va_arg(ap, const char *));) {
        if (jv_get_kind(cur) == JV_KIND_OBJECT)
            cur = jv_object_get(cur, jv_string(k));
        else if (jv_get_kind(cur) == JV_KIND_ARRAY)
            cur = jv_array_get(cur, atoi(k));
        else {
            jv_free(cur);
            cur = jv_invalid();
        }
    }
    va_end(ap);
    return cur;
}

#define GETS(v, ...) str_of(get(v, __VA_ARGS__, NULL))
static char strbuf[8][1024];
static int strbuf_i;
static const char *str_of(jv s)
{
    char *b = strbuf[strbuf_i++ % 8];
    if (jv_get_kind(s) == JV_KIND_STRING)
        snprintf(b, 1024, "%s", jv_string_value(s));
    else if (jv_is_valid(s)) {
        jv d = jv_dump_string(jv_copy(s), 0);
        snprintf(b, 1024, "%s", jv_string_value(d));
        jv_free(d);
    } else
        snprintf(b, 1024, "<missing>");
    jv_free(s);
    return b;
}
#define GETN(v, ...) num_of(get(v, __VA_ARGS__, NULL))
static double num_of(jv n)
{
    double d = jv_get_kind(n) == JV_KIND_NUMBER ? jv_number_value(n) : -1;
    jv_free(n);
    return d;
}

/* The stub's request log as an array of {host, method, path, query, headers, body}. */
static jv stub_log(void)
{
    jv all = jv_array();
    FILE *f = fopen(log_path, "r");
    if (!f)
        return all;
    char line[65536];
    while (fgets(line, sizeof line, f)) {
        jv e = jv_parse(line);
        if (jv_is_valid(e))
            all = jv_array_append(all, e);
        else
            jv_free(e);
    }
    fclose(f);
    return all;
}

/* How many logged requests match host/method/path (NULL = any). */
static int log_count(const char *host, const char *method, const char *path)
{
    jv all = stub_log();
    int n = 0;
    jv_array_foreach(all, i, e)
    {
        if ((!host || !strcmp(GETS(e, "host"), host)) &&
            (!method || !strcmp(GETS(e, "method"), method)) &&
            (!path || !strcmp(GETS(e, "path"), path)))
            n++;
        jv_free(e);
    }
    jv_free(all);
    return n;
}

/* The last logged request whose path is `path`. */
static jv log_last(const char *path)
{
    jv all = stub_log(), last = jv_null();
    jv_array_foreach(all, i, e)
    {
        if (!strcmp(GETS(e, "path"), path)) {
            jv_free(last);
            last = jv_copy(e);
        }
        jv_free(e);
    }
    jv_free(all);
    return last;
}

static void assert_error(jv err, const char *type, int status)
{
    cr_assert_str_eq(GETS(err, "type"), type, "error %s", str_of(jv_copy(err)));
    cr_assert_eq(GETN(err, "status"), status, "error %s", str_of(jv_copy(err)));
}

/* ---- host map -------------------------------------------------------------- */

Test(hostmap, parses_specs)
{
    struct cv_hostmap *m = cv__hostmap_new();
    cr_assert_eq(cv__hostmap_add(m, "petstore.swagger.io=127.0.0.1:18080"), CV_OK);
    cr_assert_eq(cv__hostmap_add(m, "*=localhost:1"), CV_OK);
    cr_assert_eq(cv__hostmap_add(m, "v6.test=[::1]:8080"), CV_OK);
    cr_assert_eq(cv__hostmap_add(m, "petstore.swagger.io=127.0.0.1:9"), CV_OK); /* replaces */
    cr_assert_eq(cv__hostmap_add(m, "nohost"), CV_EINVAL);
    cr_assert_eq(cv__hostmap_add(m, "=127.0.0.1:80"), CV_EINVAL);
    cr_assert_eq(cv__hostmap_add(m, "a=127.0.0.1"), CV_EINVAL);
    cr_assert_eq(cv__hostmap_add(m, "a=127.0.0.1:0"), CV_EINVAL);
    cr_assert_eq(cv__hostmap_add(m, "a=127.0.0.1:70000"), CV_EINVAL);
    cr_assert_eq(cv__hostmap_add(m, "a=::1:80"), CV_EINVAL);
    cr_assert_eq(cv__hostmap_add(m, "a b=1.2.3.4:80"), CV_EINVAL);
    cr_assert_eq(cv__hostmap_add(m, "a=1.2.3.4:8x"), CV_EINVAL);
    cv__hostmap_free(m);
    cv__hostmap_free(NULL);
}

Test(http, deny_unmapped_fails_at_once)
{
    struct cv_hostmap *m = cv__hostmap_new();
    char spec[64];
    snprintf(spec, sizeof spec, "petstore.swagger.io=127.0.0.1:%d", stub_port);
    cr_assert_eq(cv__hostmap_add(m, spec), CV_OK);
    cv__hostmap_set_deny_unmapped(m, 1);
    cv_effect_env e = {.hosts = m, .http = ctx};
    jv out;
    int rc = cv__http_call(&e, J("{\"method\":\"get\",\"endpoint\":\"https://not.mapped.test/x\"}"),
                           jv_object(), &out, NULL);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 500);
    cr_assert(strstr(GETS(out, "detail"), "host not.mapped.test is not mapped (deny-unmapped is on)"),
              "%s", GETS(out, "detail"));
    jv_free(out);
    /* The mapped host still works. */
    rc = cv__http_call(&e, J("{\"method\":\"get\",\"endpoint\":\"https://petstore.swagger.io/v2/pet/2\"}"),
                       jv_object(), &out, NULL);
    cr_assert_eq(rc, CV_OK);
    cr_assert_eq(GETN(out, "id"), 2);
    jv_free(out);
    cv__hostmap_free(m);
}

/* ---- outputs ---------------------------------------------------------------- */

Test(http, content_output_and_uri_template)
{
    jv out;
    int rc = http("{\"method\":\"GET\",\"endpoint\":{\"uri\":"
                  "\"https://petstore.swagger.io/v2/pet/findByStatus?status={status}\"}}",
                  "{\"status\":\"available\"}", &out);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_eq(jv_get_kind(out), JV_KIND_ARRAY);
    cr_assert_eq(jv_array_length(jv_copy(out)), 2);
    cr_assert_eq(GETN(out, "0", "id"), 1);
    cr_assert_str_eq(GETS(out, "0", "status"), "available");
    jv_free(out);

    rc = http("{\"method\":\"get\",\"endpoint\":\"https://petstore.swagger.io/v2/pet/{petId}\"}",
              "{\"petId\":2}", &out);
    cr_assert_eq(rc, CV_OK);
    cr_assert_eq(GETN(out, "id"), 2);
    cr_assert_str_eq(GETS(out, "name"), "kitty");
    jv_free(out);
    cr_assert_eq(log_count("petstore.swagger.io", "GET", "/v2/pet/2"), 1);
}

Test(http, response_output_keeps_original_uri_and_host)
{
    jv out;
    int rc = http("{\"method\":\"get\",\"endpoint\":\"https://petstore.swagger.io/v2/pet/1\","
                  "\"output\":\"response\"}",
                  NULL, &out);
    cr_assert_eq(rc, CV_OK);
    cr_assert_str_eq(GETS(out, "request", "method"), "get");
    cr_assert_str_eq(GETS(out, "request", "uri"), "https://petstore.swagger.io/v2/pet/1");
    cr_assert_str_eq(GETS(out, "request", "headers", "Accept"), "application/json");
    cr_assert_eq(GETN(out, "statusCode"), 200);
    cr_assert_str_eq(GETS(out, "headers", "Content-Type"), "application/json");
    cr_assert_eq(GETN(out, "content", "id"), 1);
    cr_assert_str_eq(GETS(out, "content", "name"), "doggie");
    jv_free(out);
    jv req = log_last("/v2/pet/1");
    cr_assert_str_eq(GETS(req, "headers", "Host"), "petstore.swagger.io");
    jv_free(req);
}

Test(http, raw_output_is_base64)
{
    char *b = cv__base64((const unsigned char *)"foobar", 6);
    cr_assert_str_eq(b, "Zm9vYmFy");
    free(b);
    b = cv__base64((const unsigned char *)"fo", 2);
    cr_assert_str_eq(b, "Zm8=");
    free(b);

    jv out;
    int rc = http("{\"method\":\"get\",\"endpoint\":\"https://petstore.swagger.io/v2/pet/1\","
                  "\"output\":\"raw\"}",
                  NULL, &out);
    cr_assert_eq(rc, CV_OK);
    const char *body = "{\"id\": 1, \"name\": \"doggie\", \"status\": \"available\", \"category\": "
                       "{\"id\": 1, \"name\": \"dog\"}, \"photoUrls\": [], \"tags\": []}";
    b = cv__base64((const unsigned char *)body, strlen(body));
    cr_assert_str_eq(jv_string_value(out), b);
    free(b);
    jv_free(out);
}

/* ---- requests ---------------------------------------------------------------- */

Test(http, query_headers_json_body_and_defaults)
{
    env.idempotency_key = "inst-1/do/0/x/0/0";
    jv out;
    int rc = http("{\"method\":\"post\",\"endpoint\":\"http://echo.test/__echo?fixed=1\","
                  "\"query\":{\"search\":\"a b&c\",\"n\":3,\"tags\":[\"x\",\"y\"],\"skip\":null},"
                  "\"headers\":{\"X-Num\":42,\"X-Text\":\"hello\"},"
                  "\"body\":{\"name\":\"Rex\",\"age\":3}}",
                  NULL, &out);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "method"), "POST");
    cr_assert_str_eq(GETS(out, "host"), "echo.test");
    cr_assert_str_eq(GETS(out, "query", "fixed", "0"), "1");
    cr_assert_str_eq(GETS(out, "query", "search", "0"), "a b&c");
    cr_assert_str_eq(GETS(out, "query", "n", "0"), "3");
    cr_assert_str_eq(GETS(out, "query", "tags"), "[\"x\",\"y\"]");
    cr_assert_str_eq(GETS(out, "query", "skip"), "<missing>");
    cr_assert_str_eq(GETS(out, "headers", "X-Num"), "42");
    cr_assert_str_eq(GETS(out, "headers", "X-Text"), "hello");
    cr_assert_str_eq(GETS(out, "headers", "Accept"), "application/json");
    cr_assert_str_eq(GETS(out, "headers", "Content-Type"), "application/json");
    cr_assert_str_eq(GETS(out, "headers", "Idempotency-Key"), "inst-1/do/0/x/0/0");
    cr_assert_str_eq(GETS(out, "json", "name"), "Rex");
    cr_assert_eq(GETN(out, "json", "age"), 3);
    jv_free(out);
}

Test(http, string_body_and_explicit_headers_win)
{
    jv out;
    int rc = http("{\"method\":\"PUT\",\"endpoint\":\"http://echo.test/__echo\","
                  "\"headers\":{\"accept\":\"text/plain\",\"content-type\":\"application/xml\"},"
                  "\"body\":\"<pet/>\"}",
                  NULL, &out);
    cr_assert_eq(rc, CV_OK);
    cr_assert_str_eq(GETS(out, "method"), "PUT");
    cr_assert_str_eq(GETS(out, "body"), "<pet/>");
    /* Given in lower case, so no default was added beside them. */
    cr_assert_str_eq(GETS(out, "headers", "accept"), "text/plain");
    cr_assert_str_eq(GETS(out, "headers", "content-type"), "application/xml");
    cr_assert_str_eq(GETS(out, "headers", "Accept"), "<missing>");
    cr_assert_str_eq(GETS(out, "headers", "Content-Type"), "<missing>");
    jv_free(out);

    /* A form content type turns an object body into form fields. */
    rc = http("{\"method\":\"post\",\"endpoint\":\"http://echo.test/__echo\","
              "\"headers\":{\"Content-Type\":\"application/x-www-form-urlencoded\"},"
              "\"body\":{\"a\":\"1 2\",\"b\":[\"x\",\"y\"]}}",
              NULL, &out);
    cr_assert_eq(rc, CV_OK);
    cr_assert_str_eq(GETS(out, "body"), "a=1%202&b=x&b=y");
    jv_free(out);
}

Test(http, bad_uri_template_value_is_expression_error)
{
    jv out;
    int rc = http("{\"method\":\"get\",\"endpoint\":\"https://petstore.swagger.io/v2/pet/{petId}\"}",
                  "{\"petId\":{\"id\":1}}", &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_EXPRESSION, 400);
    jv_free(out);
}

/* ---- failures ---------------------------------------------------------------- */

Test(http, not_found_is_communication_error)
{
    jv out;
    int rc = http("{\"method\":\"get\",\"endpoint\":{\"uri\":"
                  "\"https://petstore.swagger.io/v2/pet/getPetByName/{petName}\"}}",
                  "{\"petName\":\"Milou\"}", &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 404);
    cr_assert_str_eq(GETS(out, "title"), "Not Found");
    cr_assert(strstr(GETS(out, "detail"), "Pet not found"), "%s", GETS(out, "detail"));
    jv_free(out);

    rc = http("{\"method\":\"get\",\"endpoint\":\"http://x.test/__status/418?reason=Short%20And%20Stout\"}",
              NULL, &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 418);
    cr_assert_str_eq(GETS(out, "title"), "Short And Stout");
    jv_free(out);
}

Test(http, connection_refused_is_status_500)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s); /* the port is now (very likely) closed */

    struct cv_hostmap *m = cv__hostmap_new();
    char spec[64];
    snprintf(spec, sizeof spec, "*=127.0.0.1:%d", ntohs(a.sin_port));
    cr_assert_eq(cv__hostmap_add(m, spec), CV_OK);
    cv_effect_env e = {.hosts = m};
    jv out;
    int rc = cv__http_call(&e, J("{\"method\":\"get\",\"endpoint\":\"https://petstore.swagger.io/v2/pet/1\"}"),
                           jv_object(), &out, NULL);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 500);
    jv_free(out);
    /* the same through an I/O thread */
    e.http = ctx;
    rc = call_http(&e, J("{\"method\":\"get\",\"endpoint\":\"https://petstore.swagger.io/v2/pet/1\"}"),
                   jv_object(), &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 500);
    cr_assert(strstr(GETS(out, "detail"), "https://petstore.swagger.io/v2/pet/1"), "%s",
              GETS(out, "detail"));
    jv_free(out);
    cv__hostmap_free(m);
}

Test(http, deadline_is_timeout_408)
{
    int64_t t0 = cv__now_ms();
    env.deadline_ms = t0 + 300;
    jv out;
    int rc = http("{\"method\":\"get\",\"endpoint\":\"http://slow.test/__slow?ms=5000\"}", NULL, &out);
    int64_t took = cv__now_ms() - t0;
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_TIMEOUT, 408);
    cr_assert(took < 4000, "returned after %lld ms", (long long)took);
    jv_free(out);

    /* An already-passed deadline fails without a request. */
    env.deadline_ms = cv__now_ms() - 1;
    rc = http("{\"method\":\"get\",\"endpoint\":\"http://slow.test/__echo\"}", NULL, &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_TIMEOUT, 408);
    jv_free(out);
    cr_assert_eq(log_count("slow.test", "GET", "/__echo"), 0);
}

static atomic_int cancel_flag;
static void *cancel_later(void *arg)
{
    usleep(200000);
    atomic_store(&cancel_flag, 1);
    return NULL;
}

Test(http, cancel_aborts_promptly)
{
    pthread_t th;
    atomic_store(&cancel_flag, 0);
    env.cancel = &cancel_flag;
    int64_t t0 = cv__now_ms();
    cr_assert_eq(pthread_create(&th, NULL, cancel_later, NULL), 0);
    jv out = jv_null();
    int rc = http("{\"method\":\"get\",\"endpoint\":\"http://slow.test/__slow?ms=5000\"}", NULL, &out);
    int64_t took = cv__now_ms() - t0;
    pthread_join(th, NULL);
    cr_assert_eq(rc, CV_ECANCELED);
    cr_assert(took < 4000, "returned after %lld ms", (long long)took);
    jv_free(out);
}

Test(http, oversized_body_is_refused)
{
    jv out;
    int rc = http("{\"method\":\"get\",\"endpoint\":\"http://big.test/__big?bytes=67108865\"}", NULL,
                  &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 500);
    cr_assert(strstr(GETS(out, "detail"), "64 MiB"), "%s", GETS(out, "detail"));
    jv_free(out);
}

/* ---- redirects ---------------------------------------------------------------- */

Test(http, redirect_false_makes_3xx_an_error)
{
    jv out;
    int rc = http("{\"method\":\"get\",\"endpoint\":\"http://r.test/__redirect\"}", NULL, &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 302);
    cr_assert_str_eq(GETS(out, "title"), "Found");
    jv_free(out);
    cr_assert_eq(log_count("r.test", "GET", "/__echo"), 0);
}

Test(http, redirect_true_follows_through_the_host_map)
{
    jv out;
    int rc = http("{\"method\":\"get\",\"endpoint\":\"http://r.test/__redirect\",\"redirect\":true}",
                  NULL, &out);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "path"), "/__echo");
    jv_free(out);

    /* swapi's 301 points at an absolute https URL: the hop is mapped and downgraded too. */
    rc = http("{\"method\":\"get\",\"endpoint\":\"https://swapi.dev/api/people\","
              "\"query\":{\"search\":\"luke\"},\"redirect\":true,\"output\":\"response\"}",
              NULL, &out);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_eq(GETN(out, "statusCode"), 200);
    cr_assert_eq(GETN(out, "content", "count"), 1);
    cr_assert_str_eq(GETS(out, "content", "results", "0", "name"), "Luke Skywalker");
    cr_assert_str_eq(GETS(out, "request", "uri"), "https://swapi.dev/api/people?search=luke");
    jv_free(out);

    /* With redirect: true a 3xx that is not followed is still a success. */
    rc = http("{\"method\":\"get\",\"endpoint\":\"http://r.test/__status/304\",\"redirect\":true}",
              NULL, &out);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    jv_free(out);
}

/* ---- authentication ------------------------------------------------------------ */

Test(http, basic_auth)
{
    jv out, authz;
    int rc = cv__http_call(
        &env,
        J("{\"method\":\"get\",\"endpoint\":{\"uri\":\"https://httpbin.org/basic-auth/{username}/{password}\","
          "\"authentication\":{\"basic\":{\"username\":\"serverless-workflow\",\"password\":\"conformance-test\"}}}}"),
        J("{\"username\":\"serverless-workflow\",\"password\":\"conformance-test\"}"), &out, &authz);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "authenticated"), "true");
    cr_assert_str_eq(GETS(out, "user"), "serverless-workflow");
    cr_assert_str_eq(GETS(authz, "scheme"), "Basic");
    cr_assert_str_eq(GETS(authz, "parameter"), "c2VydmVybGVzcy13b3JrZmxvdzpjb25mb3JtYW5jZS10ZXN0");
    jv_free(out);
    jv_free(authz);
    jv req = log_last("/basic-auth/serverless-workflow/conformance-test");
    cr_assert_str_eq(GETS(req, "headers", "Authorization"),
                     "Basic c2VydmVybGVzcy13b3JrZmxvdzpjb25mb3JtYW5jZS10ZXN0");
    jv_free(req);

    rc = http("{\"method\":\"get\",\"endpoint\":{\"uri\":\"https://httpbin.org/basic-auth/u/p\","
              "\"authentication\":{\"basic\":{\"username\":\"u\",\"password\":\"wrong\"}}}}",
              NULL, &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 401);
    jv_free(out);
}

Test(http, bearer_and_digest_auth)
{
    jv out, authz;
    int rc = cv__http_call(&env,
                           J("{\"method\":\"get\",\"endpoint\":{\"uri\":\"http://a.test/__bearer/abc\","
                             "\"authentication\":{\"bearer\":{\"token\":\"abc\"}}}}"),
                           jv_object(), &out, &authz);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(authz, "scheme"), "Bearer");
    cr_assert_str_eq(GETS(authz, "parameter"), "abc");
    jv_free(out);
    jv_free(authz);

    rc = cv__http_call(&env,
                       J("{\"method\":\"get\",\"endpoint\":{\"uri\":\"http://a.test/__digest/admin/pw123\","
                         "\"authentication\":{\"digest\":{\"username\":\"admin\",\"password\":\"pw123\"}}}}"),
                       jv_object(), &out, &authz);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "user"), "admin");
    cr_assert_str_eq(GETS(authz, "scheme"), "Digest");
    jv_free(out);
    jv_free(authz);
    cr_assert_eq(log_count("a.test", "GET", "/__digest/admin/pw123"), 2); /* challenge + answer */

    rc = http("{\"method\":\"get\",\"endpoint\":{\"uri\":\"http://a.test/__digest/admin/pw123\","
              "\"authentication\":{\"digest\":{\"username\":\"admin\",\"password\":\"nope\"}}}}",
              NULL, &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 401);
    jv_free(out);

    /* An unresolved `use` is a configuration error, not a request. */
    rc = http("{\"method\":\"get\",\"endpoint\":{\"uri\":\"http://a.test/__echo\","
              "\"authentication\":{\"use\":\"petstoreAuth\"}}}",
              NULL, &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_CONFIGURATION, 400);
    jv_free(out);
}

#define OAUTH2_CALL(extra)                                                                     \
    "{\"method\":\"get\",\"endpoint\":{\"uri\":\"https://api.test/__echo\",\"authentication\":" \
    "{\"oauth2\":{\"authority\":\"http://keycloak/realms/fake-authority\","                   \
    "\"grant\":\"client_credentials\",\"scopes\":[\"api\",\"read\"],\"audiences\":[\"runtime\"]," \
    extra "}}}}"

Test(http, oauth2_client_credentials_with_token_cache)
{
    jv out, authz;
    for (int i = 0; i < 2; i++) {
        int rc = cv__http_call(&env,
                               J(OAUTH2_CALL("\"client\":{\"id\":\"wf\",\"secret\":\"s3cret\"}")),
                               jv_object(), &out, &authz);
        cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
        cr_assert_str_eq(GETS(out, "headers", "Authorization"), "Bearer t");
        cr_assert_str_eq(GETS(authz, "scheme"), "Bearer");
        cr_assert_str_eq(GETS(authz, "parameter"), "t");
        jv_free(out);
        jv_free(authz);
    }
    cr_assert_eq(log_count("keycloak", "POST", "/realms/fake-authority/oauth2/token"), 1);
    jv tok = log_last("/realms/fake-authority/oauth2/token");
    const char *body = GETS(tok, "body");
    cr_assert(strstr(body, "grant_type=client_credentials"), "%s", body);
    cr_assert(body[0] != '&' && body[0] != '?' && !strstr(body, "&&"), "%s", body);
    cr_assert(strstr(body, "client_id=wf"), "%s", body);
    cr_assert(strstr(body, "client_secret=s3cret"), "%s", body);
    cr_assert(strstr(body, "scope=api%20read"), "%s", body);
    cr_assert(strstr(body, "audience=runtime"), "%s", body);
    cr_assert_str_eq(GETS(tok, "headers", "Content-Type"), "application/x-www-form-urlencoded");
    jv_free(tok);
}

Test(http, oauth2_client_secret_basic_and_failure)
{
    jv out;
    int rc = http(OAUTH2_CALL("\"endpoints\":{\"token\":\"/auth/token\"},"
                              "\"client\":{\"id\":\"wf\",\"secret\":\"s3cret\","
                              "\"authentication\":\"client_secret_basic\"}"),
                  NULL, &out);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    jv_free(out);
    jv tok = log_last("/realms/fake-authority/auth/token");
    cr_assert_str_eq(GETS(tok, "headers", "Authorization"), "Basic d2Y6czNjcmV0");
    cr_assert_null(strstr(GETS(tok, "body"), "client_secret"));
    jv_free(tok);

    rc = http(OAUTH2_CALL("\"client\":{\"id\":\"wf\",\"secret\":\"wrong\"}"), NULL, &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_AUTHENTICATION, 401);
    jv_free(out);
    cr_assert_eq(log_count("api.test", NULL, "/__echo"), 1); /* the failed call never went out */
}

Test(http, oidc_discovers_the_token_endpoint)
{
    jv out;
    for (int i = 0; i < 2; i++) {
        int rc = http("{\"method\":\"get\",\"endpoint\":{\"uri\":\"https://api.test/__echo\","
                      "\"authentication\":{\"oidc\":{\"authority\":\"http://keycloak/realms/fake-authority\","
                      "\"grant\":\"client_credentials\",\"client\":{\"id\":\"wf\",\"secret\":\"x\"}}}}}",
                      NULL, &out);
        cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
        cr_assert_str_eq(GETS(out, "headers", "Authorization"), "Bearer t");
        jv_free(out);
    }
    cr_assert_eq(log_count("keycloak", "GET",
                           "/realms/fake-authority/.well-known/openid-configuration"),
                 1);
    cr_assert_eq(log_count("keycloak", "POST",
                           "/realms/fake-authority/protocol/openid-connect/token"),
                 1);
}

/* ---- openapi -------------------------------------------------------------------- */

Test(http, openapi_swagger2_find_by_status)
{
    jv out;
    for (int i = 0; i < 2; i++) {
        int rc = call_openapi(
            &env,
            J("{\"document\":{\"endpoint\":\"https://petstore.swagger.io/v2/swagger.json\"},"
              "\"operationId\":\"findPetsByStatus\",\"parameters\":{\"status\":\"available\"}}"),
            &out, NULL);
        cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
        cr_assert_eq(jv_array_length(jv_copy(out)), 2);
        jv_free(out);
    }
    cr_assert_eq(log_count("petstore.swagger.io", "GET", "/v2/swagger.json"), 1); /* cached */
    cr_assert_eq(log_count("petstore.swagger.io", "GET", "/v2/pet/findByStatus"), 2);
    jv req = log_last("/v2/pet/findByStatus");
    cr_assert_str_eq(GETS(req, "query", "status"), "[\"available\"]");
    jv_free(req);
    /* with the document cached, the call runs on the I/O thread */
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, jv_null(), jv_null()};
    jv a = J("{\"document\":{\"endpoint\":\"https://petstore.swagger.io/v2/swagger.json\"},"
             "\"operationId\":\"findPetsByStatus\",\"parameters\":{\"status\":\"sold\"}}");
    cr_assert_eq(cv__openapi_call_start(&env, a, waiter_done, &w), CV_OK);
    jv_free(a);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    cr_assert_eq(w.rc, CV_OK, "%s", str_of(jv_copy(w.out)));
    cr_assert_eq(jv_get_kind(w.out), JV_KIND_ARRAY);
    jv_free(w.out);
    jv_free(w.authz);
    cr_assert_eq(log_count("petstore.swagger.io", "GET", "/v2/swagger.json"), 1);
    req = log_last("/v2/pet/findByStatus");
    cr_assert_str_eq(GETS(req, "query", "status"), "[\"sold\"]");
    jv_free(req);

    /* collectionFormat multi: an array becomes repeated keys. */
    int rc = call_openapi(
        &env,
        J("{\"document\":{\"endpoint\":{\"uri\":\"https://petstore.swagger.io/v2/swagger.json\"}},"
          "\"operationId\":\"findPetsByStatus\",\"parameters\":{\"status\":[\"available\",\"pending\"]}}"),
        &out, NULL);
    cr_assert_eq(rc, CV_OK);
    cr_assert_eq(jv_array_length(jv_copy(out)), 3);
    jv_free(out);
}

Test(http, openapi_swagger2_get_by_id_and_body)
{
    jv out;
    int rc = call_openapi(&env,
                              J("{\"document\":{\"endpoint\":\"https://petstore.swagger.io/v2/swagger.json\"},"
                                "\"operationId\":\"getPetById\",\"parameters\":{\"petId\":1},"
                                "\"output\":\"response\"}"),
                              &out, NULL);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "request", "uri"), "https://petstore.swagger.io/v2/pet/1");
    cr_assert_str_eq(GETS(out, "request", "method"), "get");
    cr_assert_eq(GETN(out, "statusCode"), 200);
    cr_assert_eq(GETN(out, "content", "id"), 1);
    jv_free(out);

    rc = call_openapi(&env,
                          J("{\"document\":{\"endpoint\":\"https://petstore.swagger.io/v2/swagger.json\"},"
                            "\"operationId\":\"addPet\",\"parameters\":{\"body\":{\"id\":9,\"name\":\"Rex\"}}}"),
                          &out, NULL);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_eq(GETN(out, "id"), 9);
    cr_assert_str_eq(GETS(out, "name"), "Rex");
    jv_free(out);

    /* 404 through openapi is the same communication error as call: http. */
    rc = call_openapi(&env,
                          J("{\"document\":{\"endpoint\":\"https://petstore.swagger.io/v2/swagger.json\"},"
                            "\"operationId\":\"getPetById\",\"parameters\":{\"petId\":77}}"),
                          &out, NULL);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 404);
    cr_assert_str_eq(GETS(out, "title"), "Not Found");
    jv_free(out);
}

Test(http, openapi_missing_parameter_and_unknown_operation)
{
    jv out;
    int rc = call_openapi(&env,
                              J("{\"document\":{\"endpoint\":\"https://petstore.swagger.io/v2/swagger.json\"},"
                                "\"operationId\":\"getPetById\",\"parameters\":{}}"),
                              &out, NULL);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_VALIDATION, 400);
    cr_assert(strstr(GETS(out, "detail"), "'petId'"), "%s", GETS(out, "detail"));
    jv_free(out);

    rc = call_openapi(&env,
                          J("{\"document\":{\"endpoint\":\"https://petstore.swagger.io/v2/swagger.json\"},"
                            "\"operationId\":\"noSuchOperation\"}"),
                          &out, NULL);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_CONFIGURATION, 400);
    jv_free(out);
    cr_assert_eq(log_count("petstore.swagger.io", "GET", "/v2/pet/"), 0);
}

Test(http, openapi3_parameters_by_location)
{
    jv out;
    int rc = call_openapi(
        &env,
        J("{\"document\":{\"endpoint\":\"http://echo.test/__openapi.json\"},\"operationId\":\"getItem\","
          "\"parameters\":{\"itemId\":\"a b\",\"tag\":[\"x\",\"y\"],\"limit\":5,"
          "\"X-Trace\":\"tr-1\",\"session\":\"s1\"}}"),
        &out, NULL);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "method"), "GET");
    cr_assert_str_eq(GETS(out, "host"), "echo.test");
    cr_assert_str_eq(GETS(out, "path"), "/__echo/v1/items/a%20b"); /* the stub logs the raw path */
    cr_assert_str_eq(GETS(out, "query", "tag"), "[\"x\",\"y\"]");
    cr_assert_str_eq(GETS(out, "query", "limit"), "[\"5\"]");
    cr_assert_str_eq(GETS(out, "headers", "X-Trace"), "tr-1");
    cr_assert_str_eq(GETS(out, "headers", "Cookie"), "session=s1");
    jv_free(out);

    rc = call_openapi(&env,
                          J("{\"document\":{\"endpoint\":\"http://echo.test/__openapi.json\"},"
                            "\"operationId\":\"getItem\",\"parameters\":{\"itemId\":\"i\"}}"),
                          &out, NULL);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_VALIDATION, 400);
    cr_assert(strstr(GETS(out, "detail"), "'limit'"), "%s", GETS(out, "detail"));
    jv_free(out);
}

Test(http, openapi3_request_body)
{
    jv out;
    int rc = call_openapi(&env,
                              J("{\"document\":{\"endpoint\":\"http://echo.test/__openapi.json\"},"
                                "\"operationId\":\"createItem\",\"parameters\":{\"name\":\"n\",\"qty\":2}}"),
                              &out, NULL);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "method"), "POST");
    cr_assert_str_eq(GETS(out, "path"), "/__echo/v1/items");
    cr_assert_str_eq(GETS(out, "headers", "Content-Type"), "application/json");
    cr_assert_str_eq(GETS(out, "json", "name"), "n");
    cr_assert_eq(GETN(out, "json", "qty"), 2);
    jv_free(out);

    rc = call_openapi(&env,
                          J("{\"document\":{\"endpoint\":\"http://echo.test/__openapi.json\"},"
                            "\"operationId\":\"createItem\",\"parameters\":{\"body\":[1,2]}}"),
                          &out, NULL);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "body"), "[1,2]");
    jv_free(out);

    rc = call_openapi(&env,
                          J("{\"document\":{\"endpoint\":\"http://echo.test/__openapi.json\"},"
                            "\"operationId\":\"createItem\"}"),
                          &out, NULL);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_VALIDATION, 400);
    jv_free(out);
}

Test(http, openapi3_yaml_document_from_file)
{
    char path[160];
    snprintf(path, sizeof path, "%s/api.yaml", stub_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("openapi: 3.0.0\n"
          "info: {title: t, version: '1'}\n"
          "servers:\n"
          "  - url: https://yaml.test/__echo/{v}\n"
          "    variables: {v: {default: y2}}\n"
          "paths:\n"
          "  /things/{id}:\n"
          "    delete:\n"
          "      operationId: deleteThing\n"
          "      parameters:\n"
          "        - {name: id, in: path, required: true, schema: {type: integer}}\n"
          "        - {name: mode, in: query, explode: false, schema: {type: array}}\n",
          f);
    fclose(f);
    char args[512];
    snprintf(args, sizeof args,
             "{\"document\":{\"endpoint\":\"file://%s\"},\"operationId\":\"deleteThing\","
             "\"parameters\":{\"id\":7,\"mode\":[\"soft\",\"fast\"]}}",
             path);
    jv out;
    int rc = call_openapi(&env, J(args), &out, NULL);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert_str_eq(GETS(out, "method"), "DELETE");
    cr_assert_str_eq(GETS(out, "host"), "yaml.test");
    cr_assert_str_eq(GETS(out, "path"), "/__echo/y2/things/7");
    cr_assert_str_eq(GETS(out, "query", "mode"), "[\"soft,fast\"]");
    jv_free(out);
}

/* ---- external resources ---------------------------------------------------------- */

Test(http, fetch_text_http_and_file)
{
    jv out;
    int rc = cv__fetch_text(&env,
                            "https://raw.githubusercontent.com/serverlessworkflow/catalog/main/"
                            "functions/log/1.0.0/function.yaml",
                            &out);
    cr_assert_eq(rc, CV_OK, "%s", str_of(jv_copy(out)));
    cr_assert(strstr(jv_string_value(out), "\"set\""), "%s", jv_string_value(out));
    jv_free(out);

    rc = cv__fetch_text(&env, "https://petstore.swagger.io/v2/nothing-here", &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 404);
    jv_free(out);

    char path[160];
    snprintf(path, sizeof path, "%s/res.txt", stub_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("hello resource\n", f);
    fclose(f);
    rc = cv__fetch_text(&env, path, &out);
    cr_assert_eq(rc, CV_OK);
    cr_assert_str_eq(jv_string_value(out), "hello resource\n");
    jv_free(out);

    char uri[200];
    snprintf(uri, sizeof uri, "file://%s", path);
    rc = cv__fetch_text(&env, uri, &out);
    cr_assert_eq(rc, CV_OK);
    cr_assert_str_eq(jv_string_value(out), "hello resource\n");
    jv_free(out);

    rc = cv__fetch_text(&env, "/nonexistent/conveyor/file", &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_COMMUNICATION, 404);
    jv_free(out);
}

/* ---- the I/O thread ------------------------------------------------------------------ */

/* A keep-alive HTTP/1.1 service on 127.0.0.1 that counts its connections. */
static atomic_int ka_connections, ka_requests;

static void *ka_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                                 "\r\n{\"ok\":true}";
    char buf[8192];
    size_t have = 0;
    for (;;) {
        char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
        if (!end) {
            ssize_t n = have < sizeof buf ? read(fd, buf + have, sizeof buf - have) : -1;
            if (n <= 0)
                break;
            have += (size_t)n;
            continue;
        }
        size_t used = (size_t)(end + 4 - buf);
        memmove(buf, buf + used, have - used);
        have -= used;
        atomic_fetch_add(&ka_requests, 1);
        if (write(fd, answer, sizeof answer - 1) < 0)
            break;
    }
    close(fd);
    return NULL;
}

static void *ka_accept(void *arg)
{
    int ls = (int)(intptr_t)arg;
    for (int fd; (fd = accept(ls, NULL, NULL)) >= 0;) {
        atomic_fetch_add(&ka_connections, 1);
        pthread_t th;
        if (pthread_create(&th, NULL, ka_conn, (void *)(intptr_t)fd) == 0)
            pthread_detach(th);
        else
            close(fd);
    }
    return NULL;
}

static int ka_start(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(ls, 256), 0);
    cr_assert_eq(getsockname(ls, (struct sockaddr *)&a, &len), 0);
    atomic_store(&ka_connections, 0);
    atomic_store(&ka_requests, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, ka_accept, (void *)(intptr_t)ls), 0);
    pthread_detach(th);
    return ntohs(a.sin_port);
}

Test(http, io_thread_keeps_connections_alive)
{
    int port = ka_start();
    char args[160];
    snprintf(args, sizeof args, "{\"method\":\"get\",\"endpoint\":\"http://127.0.0.1:%d/x\"}", port);
    struct cv_http_ctx *c = cv__http_ctx_new();
    cv_effect_env e = {.http = c, .idempotency_key = "k"};
    for (int i = 0; i < 20; i++) {
        jv out;
        int rc = call_http(&e, J(args), jv_object(), &out);
        cr_assert_eq(rc, CV_OK, "call %d: %s", i, str_of(jv_copy(out)));
        cr_assert(jv_equal(out, J("{\"ok\":true}")));
    }
    cr_assert_eq(atomic_load(&ka_requests), 20);
    /* one after the other: one connection, kept alive and reused */
    cr_assert_eq(atomic_load(&ka_connections), 1, "%d connections", atomic_load(&ka_connections));
    cv__http_ctx_free(c);
}

Test(http, io_thread_runs_many_calls_at_once)
{
    int port = ka_start();
    char args[160];
    snprintf(args, sizeof args, "{\"method\":\"post\",\"endpoint\":\"http://127.0.0.1:%d/y\",\"body\":{\"n\":1}}",
             port);
    struct cv_http_ctx *c = cv__http_ctx_new();
    cv_effect_env e = {.http = c};
    enum { N = 300 };
    static struct waiter w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct waiter){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, jv_null(), jv_null()};
        jv a = J(args), in = jv_object();
        cr_assert_eq(cv__http_call_start(&e, a, in, waiter_done, &w[i]), CV_OK);
        jv_free(a);
        jv_free(in);
    }
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&w[i].mu);
        while (!w[i].done)
            pthread_cond_wait(&w[i].cv, &w[i].mu);
        pthread_mutex_unlock(&w[i].mu);
        cr_assert_eq(w[i].calls, 1);
        cr_assert_eq(w[i].rc, CV_OK, "call %d: %s", i, str_of(jv_copy(w[i].out)));
        jv_free(w[i].out);
    }
    cr_assert_eq(atomic_load(&ka_requests), N);
    cr_assert(atomic_load(&ka_connections) <= N);
    cv__http_ctx_free(c);
}

Test(http, io_thread_end_cancels_calls_in_flight)
{
    struct cv_http_ctx *c = cv__http_ctx_new();
    cv_effect_env e = {.hosts = hosts, .http = c};
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, jv_null(), jv_null()};
    jv a = J("{\"method\":\"get\",\"endpoint\":\"http://slow.test/__slow?ms=5000\"}"), in = jv_object();
    int64_t t0 = cv__now_ms();
    cr_assert_eq(cv__http_call_start(&e, a, in, waiter_done, &w), CV_OK);
    jv_free(a);
    jv_free(in);
    usleep(200 * 1000); /* under way */
    cv__http_ctx_free(c); /* stops the I/O thread: the call ends as cancelled */
    cr_assert_eq(w.calls, 1);
    cr_assert_eq(w.rc, CV_ECANCELED);
    cr_assert(cv__now_ms() - t0 < 4000);
    jv_free(w.out);
}

Test(http, io_thread_reports_setup_failures_through_the_callback)
{
    jv out;
    /* a bad template value and a header with a line break: errors before any exchange */
    int rc = http("{\"method\":\"get\",\"endpoint\":\"http://x.test/{a}\",\"headers\":{\"X\":\"a\\r\\nb\"}}",
                  "{\"a\":\"p\"}", &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_CONFIGURATION, 400);
    jv_free(out);
    rc = http("{\"endpoint\":\"http://x.test/\"}", NULL, &out);
    cr_assert_eq(rc, CV_EFAULT);
    assert_error(out, CV_ERR_CONFIGURATION, 400);
    jv_free(out);
    cr_assert_eq(log_count("x.test", NULL, NULL), 0);
}
