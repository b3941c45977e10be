# baton -- plain Makefile; every library through pkg-config.
#   make run        install what is missing, build, serve on 127.0.0.1:3210
#   make test       install what is missing, build, run every test
#   make sanitize   the whole test suite under ASan + UBSan, built with clang
#   make bench      benchmarks (figures, not pass/fail)
#   make demo       batond, a fake channel API and the workers as local processes
#   make fuzz       libFuzzer targets (clang), each run FUZZ_SECONDS (default 60)
#   make install PREFIX=/usr/local DESTDIR=

PREFIX  ?= /usr/local
DESTDIR ?=
B       ?= build
CC      ?= cc
OPT     ?= -O2
PKGS    := sqlite3 libpq libmicrohttpd jansson libsodium libcurl
BATON_VERSION := $(shell sed -n 's/^\#define BATON_VERSION "\(.*\)"/\1/p' server/base.h)

CFLAGS  := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wformat=2 -Wshadow \
           -pthread -MMD -MP -Iserver \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread -lm
CLIENT_LIBS  := $(shell pkg-config --libs libcurl jansson 2>/dev/null) -pthread
CLI_LIBS     := $(shell pkg-config --libs sqlite3 2>/dev/null) $(CLIENT_LIBS)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

# libFuzzer: the server and client objects are rebuilt with coverage
# instrumentation and sanitizers into their own tree (FB); UB aborts too
FB           ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_OUT     ?= build/fuzz
FUZZ_TARGETS := http convex webhooks fields sse
FUZZ_SAN     := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
ifeq ($(FUZZ),1)
CFLAGS  += -fsanitize=fuzzer-no-link $(FUZZ_SAN)
endif

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined,float-cast-overflow
LDFLAGS += -fsanitize=address,undefined,float-cast-overflow
endif

# batond: everything in server/ plus the embedded schema; the test and
# bench binaries link the same objects without main.o
SERVER_OBJ := $(patsubst %.c,$(B)/%.o,$(filter-out server/main.c,$(wildcard server/*.c))) $(B)/schema.o \
              $(B)/schema_pg.o $(B)/web.o
# the console and chat pages, styles and scripts, embedded into batond
WEB_SRC    := $(wildcard server/web/*.html server/web/*.css server/web/*.js)
# libbaton, the baton CLI and baton-agent: client/
LIB_OBJ    := $(B)/client/baton.o
PIC_OBJ    := $(B)/pic/client/baton.o
AGENT_OBJ  := $(patsubst %.c,$(B)/%.o,$(wildcard client/agent*.c))
CLI_OBJ    := $(patsubst %.c,$(B)/%.o,$(wildcard client/cli*.c))
TEST_OBJ   := $(patsubst %.c,$(B)/%.o,$(wildcard tests/*.c))
BENCH_OBJ  := $(patsubst %.c,$(B)/%.o,$(wildcard tests/bench/*.c))

PROGRAMS := $(B)/batond $(B)/baton $(B)/baton-agent
LIBS     := $(B)/libbaton.a $(B)/libbaton.so $(B)/baton.pc

.PHONY: all deps test-deps run test check sanitize bench demo install install-man clean \
        fuzz fuzz-bins fuzz-run

all: $(PROGRAMS) $(LIBS)

deps:
	@sh deploy/install-deps.sh

test-deps:
	@sh deploy/install-deps.sh --test

# ---- compiling ----------------------------------------------------------------

# the SQLite schema: schema/sqlite/NNN_*.sql and schema_migrations.sql (one
# directory per database backend)
$(B)/schema.c: schema/embed.sh $(wildcard schema/sqlite/*.sql)
	@mkdir -p $(@D)
	sh schema/embed.sh $(wildcard schema/sqlite/*.sql) > $@.tmp
	mv $@.tmp $@

# the PostgreSQL schema: schema/postgres/, embedded as pg_migrations
$(B)/schema_pg.c: schema/embed.sh $(wildcard schema/postgres/*.sql)
	@mkdir -p $(@D)
	sh schema/embed.sh -p pg_ $(wildcard schema/postgres/*.sql) > $@.tmp
	mv $@.tmp $@

$(B)/schema.o $(B)/schema_pg.o: $(B)/%.o: $(B)/%.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/web.c: server/web/embed.sh $(WEB_SRC)
	@mkdir -p $(@D)
	sh server/web/embed.sh $(WEB_SRC) > $@

$(B)/web.o: $(B)/web.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC -c -o $@ $<

$(B)/client/%.o $(B)/pic/client/%.o: CFLAGS += -Iclient

$(B)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Iclient -Itests -c -o $@ $<

# ---- linking ------------------------------------------------------------------

$(B)/batond: $(B)/server/main.o $(SERVER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/libbaton.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/libbaton.so: $(PIC_OBJ)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libbaton.so.0 -o $@ $^ $(CLIENT_LIBS)

$(B)/baton.pc: client/baton.pc.in server/base.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(BATON_VERSION)|' $< > $@

$(B)/baton: $(CLI_OBJ) $(B)/libbaton.a
	$(CC) $(LDFLAGS) -o $@ $^ $(CLI_LIBS)

$(B)/baton-agent: $(AGENT_OBJ) $(B)/libbaton.a
	$(CC) $(LDFLAGS) -o $@ $^ $(CLIENT_LIBS)

# a stand-in for the Telegram and WhatsApp APIs (deploy/run-local.sh, tests)
$(B)/fakeapi: $(B)/deploy/fakeapi.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the test runner links the agent's pure helpers (splitting, error mapping)
$(B)/run_tests: $(TEST_OBJ) $(SERVER_OBJ) $(B)/client/agent_util.o $(B)/libbaton.a
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

$(B)/bench: $(BENCH_OBJ) $(SERVER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# libFuzzer targets (built with B=$(FB) FUZZ=1 CC=clang by `make fuzz`)
FUZZ_LINK := $(CC) -fsanitize=fuzzer $(FUZZ_SAN)
$(B)/fuzz/fuzz_http $(B)/fuzz/fuzz_convex $(B)/fuzz/fuzz_webhooks: \
$(B)/fuzz/fuzz_%: $(B)/tests/fuzz/fuzz_%.o $(B)/tests/fuzz/fuzz_server.o $(SERVER_OBJ)
	@mkdir -p $(@D)
	$(FUZZ_LINK) -o $@ $^ $(LDLIBS)

$(B)/fuzz/fuzz_fields: $(B)/tests/fuzz/fuzz_fields.o $(B)/server/fields.o $(B)/server/util.o
	@mkdir -p $(@D)
	$(FUZZ_LINK) -o $@ $^ $(LDLIBS)

# includes client/baton.c to reach its static SSE parser
$(B)/fuzz/fuzz_sse: $(B)/tests/fuzz/fuzz_sse.o
	@mkdir -p $(@D)
	$(FUZZ_LINK) -o $@ $^ $(CLIENT_LIBS)

fuzz-bins: $(patsubst %,$(B)/fuzz/fuzz_%,$(FUZZ_TARGETS))

# ---- running ------------------------------------------------------------------

run: deps
	@$(MAKE) --no-print-directory $(B)/batond
	@mkdir -p data
	BATON_DB=$${BATON_DB:-./data/baton.db} BATON_ENV=$${BATON_ENV:-development} $(B)/batond

test: test-deps
	@$(MAKE) --no-print-directory check

# the suites start the real programs: batond, baton, baton-agent, fakeapi;
# then again on PostgreSQL (a throwaway server, tests/pg.c): the store
# conformance suite and the route suites of the resources, with batond on
# a fresh schema per server (docs/testing.md)
PG_SUITES ?= store_pg,jobs,leases,dedupe,sessions,messages,convex,perf
check: all $(B)/fakeapi $(B)/run_tests
	BATOND=$(B)/batond $(B)/run_tests
	BATON_TEST_BACKEND=postgres BATON_ONLY_SUITES=$(PG_SUITES) BATOND=$(B)/batond $(B)/run_tests
ifneq ($(SAN),1)
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$${FUZZ_SMOKE_SECONDS:-5}
endif

# build the fuzz targets, write the seed corpora, run each for FUZZ_SECONDS
fuzz:
	@$(MAKE) --no-print-directory B=$(FB) CC=clang OPT=-O1 FUZZ=1 fuzz-bins
	@sh tests/fuzz/seeds.sh $(FUZZ_OUT)/corpus
	@sh tests/fuzz/run.sh $(FB)/fuzz $(FUZZ_OUT) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# ASan + UBSan (float-cast-overflow included) built with clang, like CI
SAN_CC ?= clang
# left out: deploy (docs and deployment files), console (its browser half
# drives routes the other suites cover), perf (durability under kill -9
# and commit counting, nothing ASan adds to) and replicas (three batond
# with timing assertions; the code they run is under ASan in the PostgreSQL
# pass). The error path flood is shortened. See docs/testing.md.
sanitize: test-deps
	@BATON_SKIP_SUITES=deploy,console,perf,replicas BATON_RESOURCE_CALLS=5000 \
	    $(MAKE) --no-print-directory B=build-san SAN=1 OPT=-O1 CC=$(SAN_CC) check

# the PostgreSQL part starts its own PostgreSQL and installs graphile-worker
# with npm into BENCH_CACHE (docs/performance.md)
bench: $(B)/batond $(B)/bench
	BATOND=$(B)/batond BENCH_CACHE=$${BENCH_CACHE:-$(B)/bench-cache} $(B)/bench

# batond, a fake channel API and the three workers as plain processes; the
# recipe's shell becomes the script, so a SIGTERM or SIGHUP to it stops the
# stack in order
demo: deps
	@$(MAKE) --no-print-directory all $(B)/fakeapi
	B=$(B) exec sh deploy/run-local.sh

# ---- installing ---------------------------------------------------------------

install: all install-man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 client/baton.h $(DESTDIR)$(PREFIX)/include/baton.h
	install -m 0644 $(B)/libbaton.a $(DESTDIR)$(PREFIX)/lib/libbaton.a
	install -m 0755 $(B)/libbaton.so $(DESTDIR)$(PREFIX)/lib/libbaton.so.0
	ln -sf libbaton.so.0 $(DESTDIR)$(PREFIX)/lib/libbaton.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(BATON_VERSION)|' client/baton.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/baton.pc

install-man:
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0644 docs/man/baton.1 $(DESTDIR)$(PREFIX)/share/man/man1/baton.1
	install -m 0644 docs/man/batond.8 docs/man/baton-agent.8 $(DESTDIR)$(PREFIX)/share/man/man8/

clean:
	rm -rf build build-san $(FB)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
