# conveyor — GNU Make build.
#   make            build/conveyor and build/libconveyor.a (warnings are errors)
#   make test       the whole suite (unit, conformance kit, examples, CLI), normal build
#   make asan       the same library and tests built with ASan + UBSan into build-asan/
#   make test-asan  the suite against the sanitizer build
#   make check      both builds in one suite run (the README's test command)
#   make fuzz       libFuzzer targets into build-fuzz/ (clang)
#   make bench      benchmarks (prints figures; never asserts timings)
# Library sources are every src/*/*.c except src/cli; adding a file needs no edit here.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -g
PKGS    := libfyaml libcurl oniguruma sqlite3 libmicrohttpd libcrypto libpcre2-8 xgboost libpq
# Libraries without a pkg-config file (LIBLINEAR: src/ml's solver); bench/run.sh
# reads this line too.
NOPC_LIBS := -llinear
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS  += -std=c17 $(OPT) -Wall -Wextra -Wstrict-prototypes -Wno-unused-parameter -Werror \
           $(shell pkg-config --cflags $(PKGS))
LDLIBS  += -ljq $(shell pkg-config --libs $(PKGS)) $(NOPC_LIBS) -lpthread -lm

LIB_SRC := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC := $(wildcard src/cli/*.c)
# The reviewer's web inbox (web/*) is compiled in: scripts/embed-web.sh
# writes $(BUILD)/gen/web_files.c from it (src/server/web.h).
WEB_FILES := $(sort $(wildcard web/*))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/web_files.o
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)
CTK_SRC := $(wildcard tests/ctk/*.c)
CTK_OBJ := $(CTK_SRC:%.c=$(BUILD)/%.o)

.PHONY: all test check asan test-asan fuzz bench clean format
all: $(BUILD)/conveyor $(BUILD)/libconveyor.a

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/web_files.c: scripts/embed-web.sh $(WEB_FILES)
	@mkdir -p $(dir $@)
	scripts/embed-web.sh $@ $(WEB_FILES)

$(BUILD)/gen/web_files.o: $(BUILD)/gen/web_files.c src/server/web.h
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libconveyor.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/conveyor: $(CLI_OBJ) $(BUILD)/libconveyor.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libconveyor.a $(LDLIBS)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(BUILD)/libconveyor.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(UNIT_OBJ) $(BUILD)/libconveyor.a $(LDLIBS) -lcriterion

$(BUILD)/ctk-runner: $(CTK_OBJ) $(BUILD)/libconveyor.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CTK_OBJ) $(BUILD)/libconveyor.a $(LDLIBS)

test: all $(BUILD)/unit-tests $(BUILD)/ctk-runner
	BUILDS=$(BUILD) tests/run-all.sh

asan:
	$(MAKE) BUILD=build-asan CC=clang OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" all build-asan/unit-tests build-asan/ctk-runner

test-asan: asan
	BUILDS=build-asan tests/run-all.sh

# The README's test command: both builds, one suite run, one closing summary.
check: all $(BUILD)/unit-tests $(BUILD)/ctk-runner asan
	BUILDS="$(BUILD) build-asan" tests/run-all.sh

FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT="$(FUZZ_CFLAGS)" build-fuzz/libconveyor.a
	@for f in fuzz/*.c; do n=$$(basename $$f .c); \
	  echo "clang $$f -> build-fuzz/$$n"; \
	  clang $(CPPFLAGS) -std=c17 -g -O1 -fsanitize=fuzzer,address,undefined $$(pkg-config --cflags $(PKGS)) \
	    $$f build-fuzz/libconveyor.a -ljq $$(pkg-config --libs $(PKGS)) $(NOPC_LIBS) -lpthread -lm -o build-fuzz/$$n || exit 1; done

bench: all
	@for b in bench/*.sh; do [ -x $$b ] && BUILD=$(BUILD) $$b; done; true

format:
	clang-format -i $(wildcard src/*/*.c src/*/*.h include/*.h)

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(CTK_OBJ:.o=.d)
