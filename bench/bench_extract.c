/*
 * bench_extract.c — throughput of the field extractor (src/ml/extract.h) on
 * short texts: an invoice-like extractor with every built-in kind and one
 * user pattern, run over a set of ~300-byte texts for BENCH_SECONDS (default
 * 2). Prints texts/s, MB/s and the machine; never fails on a timing.
 * Build: see bench/bench_extract.sh.
 */
#include "ml/extract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char def[] = "name: bench\n"
                          "options: {day_first: true, region: FR}\n"
                          "fields:\n"
                          "  - {name: total, kind: money, required: true}\n"
                          "  - {name: due, kind: date}\n"
                          "  - {name: iban, kind: iban}\n"
                          "  - {name: email, kind: email}\n"
                          "  - {name: phone, kind: phone}\n"
                          "  - {name: card, kind: card}\n"
                          "  - {name: url, kind: url}\n"
                          "  - name: ref\n"
                          "    kind: pattern\n"
                          "    pattern: 'Ref[.:]?\\s*(?<r>[A-Za-z]{2}-\\d{4,8})'\n"
                          "    group: r\n"
                          "    normalize: [upper]\n";

static const char *const texts[] = {
    "Invoice Ref: AB-20931 dated 01/02/2024, due 15/03/2024. Amount due: 1 250,00 EUR. "
    "Please pay to FR14 2004 1010 0505 0001 3M02 606. Questions: billing@acme.example or "
    "01 23 45 67 89. Portal: https://acme.example/invoices/20931",
    "Hello team, the refund of -$40.00 for order 55 was issued on March 12, 2024 to card "
    "4111 1111 1111 1111. Reach me at jane.doe@example.com. Thanks, Jane",
    "Rechnung vom 12.03.2024 über 1.234,56 € — IBAN DE89 3704 0044 0532 0130 00, "
    "Tel. +49 30 1234567, Ref. xy-778812, Details: http://example.de/r?id=1",
    "No structured data in this message at all, only words about the weather and a meeting "
    "next week to discuss the roadmap, the budget and the hiring plan for the quarter.",
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    const char *s = getenv("BENCH_SECONDS");
    double secs = s ? atof(s) : 2.0;
    cv_extractor *x;
    jv err;
    if (cv__extractor_load(def, strlen(def), "bench", &x, &err)) {
        jv d = jv_dump_string(err, 0);
        fprintf(stderr, "bench_extract: %s\n", jv_string_value(d));
        jv_free(d);
        return 1;
    }
    struct utsname u;
    uname(&u);
    char cpu[600] = "?";
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (fp) {
        char line[512];
        while (fgets(line, sizeof line, fp))
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                snprintf(cpu, sizeof cpu, "%s", c ? c + 2 : line);
                cpu[strcspn(cpu, "\n")] = 0;
                break;
            }
        fclose(fp);
    }
    printf("== extract (bench/bench_extract.c): 8 fields, %zu texts of ~%zu bytes\n",
           sizeof texts / sizeof *texts, strlen(texts[0]));
    printf("machine: %s, %s %s, %ld cpus online\n", cpu, u.sysname, u.release,
           (long)sysconf(_SC_NPROCESSORS_ONLN));
    size_t n = 0, bytes = 0;
    double t0 = now(), t;
    do {
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            jv r = cv__extract_run(x, texts[i], strlen(texts[i]));
            if (!jv_is_valid(r)) {
                fprintf(stderr, "bench_extract: extraction failed\n");
                return 1;
            }
            jv_free(r);
            n++;
            bytes += strlen(texts[i]);
        }
        t = now() - t0;
    } while (t < secs);
    printf("texts: %zu in %.2f s: %.0f texts/s, %.1f us/text, %.2f MB/s (1 thread)\n", n, t,
           n / t, t / n * 1e6, bytes / t / 1e6);
    cv__extractor_free(x);
    return 0;
}
