/*
 * repro_libjq.c — reproduces the libjq 1.6 leaks in this folder with libjq
 * alone (no conveyor code), to tell the library's bugs from ours.
 *
 *   clang -g -fsanitize=address fuzz/crashes/repro_libjq.c -ljq -o /tmp/repro_libjq
 *   ASAN_OPTIONS=fast_unwind_on_malloc=0 /tmp/repro_libjq '.[] | error("x")' '{"a":1,"b":2}'
 *       -> LeakSanitizer: 18 bytes (the key "a" or "b") leaked
 *   /tmp/repro_libjq '"id-\($item' null
 *       -> compile error; jq_parse leaks the lexer's string
 *
 * It takes the first result only, as src/expr/expr.c does. (Calling jq_next
 * again after it returned an error is no workaround: libjq 1.6 then fails
 * the assertion `pc' in execute.c and aborts.)
 */
#include <jq.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PROGRAM INPUT-JSON\n", argv[0]);
        return 2;
    }
    jq_state *jq = jq_init();
    if (!jq_compile(jq, argv[1])) {
        puts("compile failed");
        jq_teardown(&jq);
        return 1;
    }
    jq_start(jq, jv_parse(argv[2]), 0);
    jv r = jq_next(jq);
    if (jv_is_valid(r)) {
        jv s = jv_dump_string(r, 0);
        printf("%s\n", jv_string_value(s));
        jv_free(s);
    } else if (jv_invalid_has_msg(jv_copy(r))) {
        jv m = jv_invalid_get_msg(r);
        jv s = jv_dump_string(m, 0);
        printf("error: %s\n", jv_string_value(s));
        jv_free(s);
    } else {
        jv_free(r);
        puts("no result");
    }
    jq_teardown(&jq);
    return 0;
}
