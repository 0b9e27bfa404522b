/*
 * main.c — the `conveyor` command line: dispatch to subcommands.
 *
 *   conveyor validate FILE...
 *   conveyor run FILE [options]
 *   conveyor resume --db FILE [ID...] [options]
 *   conveyor serve --db FILE [--listen ADDR:PORT] [--config FILE] [options]
 *   conveyor deploy|start|get|list|history|cancel|suspend ... [--server URL]
 *   conveyor resume ID [--server URL]       (no --db: the server's instance)
 *   conveyor events send ... [--server URL] (CloudEvents to a server's bus)
 *   conveyor model train|eval|predict|list|get|approve|promote|retire ... --db FILE (model.c)
 *
 * Exit codes: 0 success, 1 invalid document or faulted workflow, 2 usage error.
 * The CLI is a thin layer over include/conveyor.h: everything it does, an
 * embedding program can do.
 */
#include "conveyor.h"
#include "cli/client.h"
#include "cli/durable.h"
#include "cli/model.h"
#include "common/util.h"
#include "json/yaml.h"
#include "server/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_main[] =
    "usage: conveyor <command> [options]\n"
    "\n"
    "Runs CNCF Serverless Workflow DSL 1.0 documents (YAML or JSON, jq expressions).\n"
    "\n"
    "commands:\n"
    "  validate FILE...   check documents; print located messages; exit 1 if any is invalid\n"
    "  run FILE           run a workflow to its end and print its output as JSON\n"
    "  resume --db FILE   continue the runs a --db file holds from their last checkpoint\n"
    "  serve --db FILE    serve the HTTP API (--listen 127.0.0.1:8080 by default;\n"
    "                     --config FILE for the options in a YAML or JSON file)\n"
    "  deploy FILE        deploy a workflow to a server (--server URL); prints ns/name:version\n"
    "  start NS/NAME[:V]  start an instance on a server (--input JSON, --wait [SECONDS])\n"
    "  get ID             print an instance from a server as JSON\n"
    "  list               list a server's instances (--status S, --json)\n"
    "  history ID         print an instance's history from a server\n"
    "  cancel ID          ask a server to cancel an instance (--wait [SECONDS])\n"
    "  suspend ID         ask a server to suspend an instance (--wait [SECONDS])\n"
    "  resume ID          ask a server to resume a suspended instance (with an ID and\n"
    "                     no --db, or with --server; --wait [SECONDS])\n"
    "  events send        publish CloudEvents to a server (--type T --source S [--data JSON],\n"
    "                     or --file PATH of events); prints `ID SEQ` per event\n"
    "  tasks list|get|claim|release|complete|reassign|create\n"
    "                     the review tasks of a server: the inbox, claim, complete\n"
    "                     with {decision, fields, comment} (`conveyor tasks --help`)\n"
    "  model train|eval|predict|list|get --db FILE\n"
    "                     text classifiers kept in a store: train on labeled JSON lines\n"
    "                     or CSV (prints NAME@VERSION), evaluate, predict, list, read a\n"
    "                     model card, approve/promote/retire a version\n"
    "                     (`conveyor model --help`)\n"
    "  version            print the version\n"
    "\n"
    "Run `conveyor <command> --help` for a command's options.\n";

static const char usage_validate[] =
    "usage: conveyor validate FILE...\n"
    "\n"
    "Loads each document, checks it against the DSL (structure, task types, properties,\n"
    "flow targets, durations, URI templates, references to use.*) and compiles every\n"
    "runtime expression. Prints `FILE: ok` or one `file:line:column: path: message` per\n"
    "problem. Exit status: 0 all valid, 1 some invalid, 2 usage error.\n";

static const char usage_run[] =
    "usage: conveyor run FILE [options]\n"
    "\n"
    "Runs one instance of the workflow in FILE. Prints the output as JSON on stdout and\n"
    "exits 0 when it completes; prints the error descriptor as JSON on stderr and exits 1\n"
    "when it faults (or the document is invalid); exits 2 on a usage error.\n"
    "\n"
    "options:\n"
    "  --input JSON           the workflow input (default: {})\n"
    "  --input-file PATH      read the input from a JSON or YAML file\n"
    "  --secrets PATH         a JSON or YAML object of secrets, visible as $secrets to\n"
    "                         workflows that declare them in use.secrets\n"
    "  --secret-env NAME      add the environment variable NAME as secret NAME (its value\n"
    "                         parsed as JSON when it is JSON, else taken as a string);\n"
    "                         repeatable\n"
    "  --subflow FILE         make a workflow available to `run: workflow`; repeatable\n"
    "  --subflows DIR         every *.yaml, *.yml and *.json file of DIR, as --subflow\n"
    "  --events               print each emitted CloudEvent as a JSON line on stderr\n"
    "  --events-file PATH     append emitted CloudEvents as JSON lines to PATH\n"
    "  --host-map HOST=ADDR:PORT\n"
    "                         send requests for HOST to ADDR:PORT over plain HTTP, keeping\n"
    "                         the original URL and Host header (like curl --connect-to);\n"
    "                         HOST may be * for every host; repeatable. The environment\n"
    "                         variable CONVEYOR_HOST_MAP may hold a comma-separated list.\n"
    "  --deny-unmapped        fail requests to hosts that no --host-map entry covers\n"
    "  --time-scale X         multiply waits, retry delays and timeouts by X (e.g. 0.01)\n"
    "  --effect-timeout DUR   the longest an HTTP call, child process or fetch may run when\n"
    "                         no task timeout is shorter (ISO 8601, default PT5M; PT0S: none)\n"
    "  --report               print {id, status, output, error, trace} (and notes: the\n"
    "                         predictions of models, when any) instead of the output\n"
    "                         (exit status unchanged)\n"
    "  --db FILE              keep the run in a SQLite file: the definition, the instance and\n"
    "                         its position each time it blocks (an effect in flight, a timer),\n"
    "                         so that a run killed at any moment can be continued with\n"
    "                         `conveyor resume --db FILE`. Without --db nothing is kept.\n"
    "  -h, --help             this help\n";

static const char usage_resume[] =
    "usage: conveyor resume --db FILE [ID...] [options]\n"
    "       conveyor resume ID [--wait [SECONDS]] [--server URL]\n"
    "\n"
    "With --db: continues the runs that FILE (written by `conveyor run --db FILE`) holds\n"
    "unfinished, or the given instance ids, each from its last checkpoint: what was\n"
    "checkpointed is not done again; an effect that was in flight is issued again with\n"
    "the same idempotency key. Prints the output like `run` (one JSON line {id, status,\n"
    "output, error} per instance when there are several). Exit status: 0 when all\n"
    "completed, 1 otherwise, 2 on a usage error. Options as for `run` (--secrets,\n"
    "--secret-env, --subflow(s), --events, --host-map, --deny-unmapped, --time-scale,\n"
    "--effect-timeout); give the same ones the run had.\n"
    "\n"
    "With an instance ID and no --db, or with --server: asks `conveyor serve` (--server\n"
    "URL, default $CONVEYOR_SERVER, else http://127.0.0.1:8080) to resume a suspended\n"
    "instance, like `conveyor suspend ID` and `conveyor cancel ID`; prints `resume\n"
    "requested: ID`. --wait (default 60 s, at most 300) then waits until the instance is\n"
    "no longer suspended and prints `ID STATUS`. Exit status: 0 done, 1 refused (an\n"
    "unknown id, 404; an instance that is not suspended, 409: the reason on stderr) or\n"
    "not resumed in time, 2 on a usage error.\n";

/*
 * `resume` is two commands: `resume --db FILE [ID...]` continues local runs
 * (durable.c), `resume ID [--server URL]` asks a server (client.c). Returns
 * 1 for the server's: --server or --wait (options only it has), or an ID
 * without --db. Returns 0 for the local one, which keeps every command line
 * it accepted before (a bare `conveyor resume` still says that --db is
 * required). Returns -1 after a message when --db and --server are mixed.
 */
static int resume_means_server(int argc, char **argv)
{
    /* the local form's options that take a value, so that the value is not
     * mistaken for an ID */
    static const char *const with_value[] = {"--input",     "--input-file", "--secrets",   "--secret-env",
                                             "--subflow",   "--subflows",   "--events-file", "--host-map",
                                             "--time-scale", "--effect-timeout"};
    int db = 0, server = 0, id = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--db")) {
            db = 1;
            i++;
        } else if (!strcmp(a, "--server") || !strcmp(a, "--wait")) {
            server = 1;
        } else if (a[0] == '-' && a[1]) {
            for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
                if (!strcmp(a, with_value[k]))
                    i++;
        } else {
            id = 1;
        }
    }
    if (db && server) {
        fprintf(stderr, "conveyor resume: --db (continue local runs) and --server/--wait (ask a server) "
                        "cannot be combined\n%s",
                usage_resume);
        return -1;
    }
    return server || (id && !db);
}

static void print_diags(jv diags)
{
    jv_array_foreach(diags, i, d)
    {
        char *s = cv_diag_format(d);
        fprintf(stderr, "%s\n", s ? s : "error");
        free(s);
    }
    jv_free(diags);
}

static int cmd_validate(int argc, char **argv)
{
    int bad = 0, files = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_validate, stdout);
            return 0;
        }
    }
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "conveyor validate: unknown option %s\n%s", argv[i], usage_validate);
            return 2;
        }
        files++;
        cv_workflow *wf = NULL;
        jv diags = jv_invalid();
        int rc = cv_workflow_load_file(argv[i], &wf, &diags);
        if (rc) {
            bad++;
            if (jv_get_kind(diags) == JV_KIND_ARRAY && jv_array_length(jv_copy(diags)) > 0)
                print_diags(diags);
            else {
                jv_free(diags);
                fprintf(stderr, "%s: %s\n", argv[i], cv_strerror(rc));
            }
        } else {
            jv_free(diags);
            printf("%s: ok\n", argv[i]);
            cv_workflow_free(wf);
        }
    }
    if (!files) {
        fputs(usage_validate, stderr);
        return 2;
    }
    return bad ? 1 : 0;
}

/* Input and secrets files larger than this are refused with a message. */
#define MAX_VALUE_FILE_BYTES (256 << 20)

/* Reads a JSON or YAML file into a jv. Returns 0 or prints a message. */
static int read_value_file(const char *path, jv *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "conveyor: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len > MAX_VALUE_FILE_BYTES) {
            fclose(f);
            free(buf);
            fprintf(stderr, "conveyor: %s: larger than %d MiB; refusing to load it\n", path,
                    MAX_VALUE_FILE_BYTES >> 20);
            return -1;
        }
        if (len == cap) {
            char *n = realloc(buf, cap *= 2);
            if (!n) {
                free(buf);
                buf = NULL;
            }
            buf = n;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "conveyor: %s: out of memory\n", path);
        return -1;
    }
    jv diags = jv_array();
    int rc = cv__yaml_parse(buf, len, path, out, NULL, &diags);
    free(buf);
    if (rc) {
        print_diags(diags);
        return -1;
    }
    jv_free(diags);
    return 0;
}

/* Adds each entry of a comma-separated "host=addr:port" list. */
static int add_host_maps(cv_runtime *rt, const char *list)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        while (n && p[n - 1] == ' ')
            n--;
        if (n) {
            char *entry = strndup(p, n);
            if (!entry)
                return -1;
            int bad = cv_runtime_map_host(rt, entry);
            if (bad)
                fprintf(stderr, "conveyor: invalid host map '%s' (expected HOST=ADDR:PORT)\n", entry);
            free(entry);
            if (bad)
                return -1;
        }
        p += strcspn(p, ",");
    }
    return 0;
}

static int cmd_run(int argc, char **argv, int resume)
{
    const char *file = NULL, *db = NULL;
    const char *usage = resume ? usage_resume : usage_run;
    char **ids = calloc((size_t)argc + 1, sizeof *ids);
    int nids = 0;
    jv input = jv_invalid();
    jv secrets = jv_object();
    int events = 0, report = 0, rc = 2;
    FILE *events_file = NULL;
    cv_runtime *rt = NULL;
    cv_workflow *wf = NULL;

    if (cv_runtime_new(&rt)) {
        fprintf(stderr, "conveyor: out of memory\n");
        jv_free(secrets);
        return 1;
    }
    const char *env_map = getenv("CONVEYOR_HOST_MAP");
    if (env_map && add_host_maps(rt, env_map))
        goto out;

#define NEED_ARG()                                                                   \
    do {                                                                             \
        if (i + 1 >= argc) {                                                         \
            fprintf(stderr, "conveyor: %s needs a value\n%s", argv[i], usage);          \
            goto out;                                                                \
        }                                                                            \
    } while (0)

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--db")) {
            NEED_ARG();
            db = argv[++i];
        } else if (resume && (!strcmp(a, "--input") || !strcmp(a, "--input-file") || !strcmp(a, "--report"))) {
            fprintf(stderr, "conveyor resume: %s is not for resume: an instance keeps its input\n%s", a, usage);
            goto out;
        } else if (!strcmp(a, "--input")) {
            NEED_ARG();
            jv_free(input);
            input = jv_parse(argv[++i]);
            if (!jv_is_valid(input)) {
                jv msg = jv_invalid_get_msg(input);
                fprintf(stderr, "conveyor run: --input is not valid JSON: %s\n",
                        jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "?");
                jv_free(msg);
                input = jv_invalid();
                goto out;
            }
        } else if (!strcmp(a, "--input-file")) {
            NEED_ARG();
            jv_free(input);
            input = jv_invalid();
            if (read_value_file(argv[++i], &input)) {
                rc = 2;
                goto out;
            }
        } else if (!strcmp(a, "--secrets")) {
            NEED_ARG();
            jv s;
            if (read_value_file(argv[++i], &s))
                goto out;
            if (jv_get_kind(s) != JV_KIND_OBJECT) {
                fprintf(stderr, "conveyor run: %s must hold an object of secrets\n", argv[i]);
                jv_free(s);
                goto out;
            }
            secrets = jv_object_merge(secrets, s);
        } else if (!strcmp(a, "--secret-env")) {
            NEED_ARG();
            const char *name = argv[++i];
            const char *val = getenv(name);
            if (!val) {
                fprintf(stderr, "conveyor run: --secret-env %s: the variable is not set\n", name);
                goto out;
            }
            jv v = jv_parse(val);
            if (!jv_is_valid(v)) {
                jv_free(v);
                v = jv_string(val);
            }
            secrets = jv_object_set(secrets, jv_string(name), v);
        } else if (!strcmp(a, "--subflow")) {
            NEED_ARG();
            cv_workflow *sub;
            jv diags = jv_invalid();
            if (cv_workflow_load_file(argv[++i], &sub, &diags)) {
                print_diags(diags);
                rc = 1;
                goto out;
            }
            jv_free(diags);
            cv_runtime_add_workflow(rt, sub);
        } else if (!strcmp(a, "--subflows")) {
            NEED_ARG();
            jv diags = jv_invalid();
            if (cv_runtime_add_workflow_dir(rt, argv[++i], &diags)) {
                print_diags(diags);
                rc = 1;
                goto out;
            }
            jv_free(diags);
        } else if (!strcmp(a, "--events")) {
            events = 1;
        } else if (!strcmp(a, "--events-file")) {
            NEED_ARG();
            events_file = fopen(argv[++i], "a");
            if (!events_file) {
                fprintf(stderr, "conveyor run: %s: %s\n", argv[i], strerror(errno));
                goto out;
            }
        } else if (!strcmp(a, "--host-map")) {
            NEED_ARG();
            if (add_host_maps(rt, argv[++i]))
                goto out;
        } else if (!strcmp(a, "--deny-unmapped")) {
            cv_runtime_deny_unmapped(rt, 1);
        } else if (!strcmp(a, "--time-scale")) {
            NEED_ARG();
            char *end;
            double x = strtod(argv[++i], &end);
            if (*end || x <= 0) {
                fprintf(stderr, "conveyor run: --time-scale needs a positive number\n");
                goto out;
            }
            cv_runtime_set_time_scale(rt, x);
        } else if (!strcmp(a, "--effect-timeout")) {
            NEED_ARG();
            int64_t ms;
            const char *why = NULL;
            jv d = jv_string(argv[++i]);
            int bad = cv__duration_ms(d, &ms, &why);
            jv_free(d);
            if (bad) {
                fprintf(stderr, "conveyor run: --effect-timeout: %s (an ISO 8601 duration such as PT30S)\n",
                        why ? why : "invalid duration");
                goto out;
            }
            cv_runtime_set_effect_timeout(rt, ms);
        } else if (!strcmp(a, "--report")) {
            report = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "conveyor: unknown option %s\n%s", a, usage);
            goto out;
        } else if (resume) {
            if (ids)
                ids[nids++] = argv[i];
        } else if (!file) {
            file = a;
        } else {
            fprintf(stderr, "conveyor run: only one FILE may be given\n%s", usage_run);
            goto out;
        }
    }
    if (resume) {
        if (!db) {
            fprintf(stderr, "conveyor resume: --db FILE is required (or an instance ID, to resume it on a server)\n%s",
                    usage_resume);
            goto out;
        }
        cv_runtime_set_secrets(rt, secrets);
        secrets = jv_invalid();
        if (events_file)
            cv_runtime_set_event_stream(rt, events_file);
        else if (events)
            cv_runtime_set_event_stream(rt, stderr);
        rc = cv__cli_resume(rt, db, ids, nids);
        goto out;
    }
    if (!file) {
        fputs(usage_run, stderr);
        goto out;
    }
    jv diags = jv_invalid();
    int lrc = cv_workflow_load_file(file, &wf, &diags);
    if (lrc) {
        if (jv_get_kind(diags) == JV_KIND_ARRAY && jv_array_length(jv_copy(diags)) > 0)
            print_diags(diags);
        else {
            jv_free(diags);
            fprintf(stderr, "conveyor run: %s: %s\n", file, cv_strerror(lrc));
        }
        rc = 1;
        goto out;
    }
    jv_free(diags);
    cv_runtime_set_secrets(rt, secrets);
    secrets = jv_invalid();
    if (events_file)
        cv_runtime_set_event_stream(rt, events_file);
    else if (events)
        cv_runtime_set_event_stream(rt, stderr);
    cv_runtime_set_trace(rt, report);
    if (!jv_is_valid(input)) {
        jv_free(input);
        input = jv_object();
    }
    jv rep;
    int r;
    if (db) {
        r = cv__cli_run_durable(rt, db, file, wf, input, &rep);
        input = jv_invalid();
        if (r == -1) {
            jv_free(rep);
            rc = 1;
            goto out;
        }
    } else {
        r = cv_run(rt, wf, input, &rep);
        input = jv_invalid();
    }
    if (report) {
        jv_dumpf(jv_copy(rep), stdout, JV_PRINT_PRETTY | JV_PRINT_SPACE1);
        fputc('\n', stdout);
    } else if (r == CV_OK) {
        jv_dumpf(jv_object_get(jv_copy(rep), jv_string("output")), stdout, JV_PRINT_PRETTY | JV_PRINT_SPACE1);
        fputc('\n', stdout);
    }
    if (r == CV_EFAULT) {
        jv_dumpf(jv_object_get(jv_copy(rep), jv_string("error")), stderr, 0);
        fputc('\n', stderr);
    } else if (r != CV_OK) {
        fprintf(stderr, "conveyor run: %s\n", cv_strerror(r));
    }
    jv_free(rep);
    rc = r == CV_OK ? 0 : 1;
out:
    free(ids);
    jv_free(input);
    jv_free(secrets);
    cv_workflow_free(wf);
    cv_runtime_free(rt);
    if (events_file)
        fclose(events_file);
    fflush(stdout);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("conveyor %s\n", CV_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "validate"))
        return cmd_validate(argc - 2, argv + 2);
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 2, argv + 2, 0);
    if (!strcmp(cmd, "resume")) {
        int server = resume_means_server(argc - 2, argv + 2);
        if (server < 0)
            return 2;
        for (int i = 2; server && i < argc; i++)
            if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                fputs(usage_resume, stdout);
                return 0;
            }
        return server ? cv__client_main(cmd, argc - 2, argv + 2) : cmd_run(argc - 2, argv + 2, 1);
    }
    if (!strcmp(cmd, "serve"))
        return cv__serve_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "model"))
        return cv__cli_model_main(argc - 2, argv + 2);
    if (cv__client_is_command(cmd))
        return cv__client_main(cmd, argc - 2, argv + 2);
    fprintf(stderr, "conveyor: unknown command '%s'\n%s", cmd, usage_main);
    return 2;
}
