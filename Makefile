# baton -- plain Makefile; every library through pkg-config.
#   make run        install what is missing, build, serve on 127.0.0.1:3210
#   make test       install what is missing, build, run every test
#   make sanitize   the whole test suite under ASan + UBSan
#   make bench      benchmarks (figures, not pass/fail)
#   make install PREFIX=/usr/local DESTDIR=
#   make demo       batond, a fake channel API and the workers as local processes

PREFIX  ?= /usr/local
DESTDIR ?=
B       ?= build
CC      ?= cc
PKGS    := sqlite3 libmicrohttpd jansson libsodium libcurl
OPT     ?= -O2

CFLAGS  := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wformat=2 -Wshadow \
           -pthread -MMD -MP -Iserver \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
SERVER_OBJ := $(SERVER_SRC:%.c=$(B)/%.o) $(B)/schema.o
TEST_SRC   := $(wildcard tests/*.c)
TEST_OBJ   := $(TEST_SRC:%.c=$(B)/%.o)
BENCH_SRC  := $(wildcard tests/bench/*.c)
BENCH_OBJ  := $(BENCH_SRC:%.c=$(B)/%.o)

.PHONY: all deps run test check sanitize bench install clean

all: $(B)/batond

deps:
	@sh deploy/install-deps.sh

$(B)/schema.c: schema/embed.sh $(wildcard schema/*.sql)
	@mkdir -p $(@D)
	sh schema/embed.sh $(wildcard schema/*.sql) > $@

$(B)/schema.o: $(B)/schema.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Itests -c -o $@ $<

$(B)/batond: $(B)/server/main.o $(SERVER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/run_tests: $(TEST_OBJ) $(SERVER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

$(B)/bench: $(BENCH_OBJ) $(SERVER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

run: deps
	@$(MAKE) --no-print-directory $(B)/batond
	@mkdir -p data
	BATON_DB=$${BATON_DB:-./data/baton.db} BATON_ENV=$${BATON_ENV:-development} $(B)/batond

test: deps
	@$(MAKE) --no-print-directory check

check: $(B)/batond $(B)/run_tests
	BATOND=$(B)/batond $(B)/run_tests

sanitize: deps
	@$(MAKE) --no-print-directory B=build-san SAN=1 OPT=-O1 check

bench: $(B)/batond $(B)/bench
	BATOND=$(B)/batond $(B)/bench

install: $(B)/batond
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(B)/batond $(DESTDIR)$(PREFIX)/bin/batond

clean:
	rm -rf build build-san

# ---- deploy/: the local demo stack and the man pages ----
.PHONY: demo install-man

# a stand-in for the Telegram and WhatsApp APIs (deploy/run-local.sh, tests)
$(B)/fakeapi: $(B)/deploy/fakeapi.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the deploy suite drives the local stack when baton-agent is built: build
# everything `all` names (baton-agent once it is part of it) before checking
check: all $(B)/fakeapi

# batond, a fake channel API and the three workers as plain processes
demo: deps
	@$(MAKE) --no-print-directory all $(B)/fakeapi
	B=$(B) sh deploy/run-local.sh

install: install-man
install-man:
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0644 docs/man/baton.1 $(DESTDIR)$(PREFIX)/share/man/man1/baton.1
	install -m 0644 docs/man/batond.8 docs/man/baton-agent.8 $(DESTDIR)$(PREFIX)/share/man/man8/

-include $(shell find $(B) -name '*.d' 2>/dev/null)
