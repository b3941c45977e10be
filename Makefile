# baton -- plain Makefile; every library through pkg-config.
#   make run        install what is missing, build, serve on 127.0.0.1:3210
#   make test       install what is missing, build, run every test
#   make sanitize   the whole test suite under ASan + UBSan
#   make bench      benchmarks (figures, not pass/fail)
#   make install PREFIX=/usr/local DESTDIR=

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
	install -m 0755 $(B)/baton $(DESTDIR)$(PREFIX)/bin/baton
	install -m 0755 $(B)/baton-agent $(DESTDIR)$(PREFIX)/bin/baton-agent
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0644 client/baton.h $(DESTDIR)$(PREFIX)/include/baton.h
	install -m 0644 $(B)/libbaton.a $(DESTDIR)$(PREFIX)/lib/libbaton.a
	install -m 0755 $(B)/libbaton.so $(DESTDIR)$(PREFIX)/lib/libbaton.so.0
	ln -sf libbaton.so.0 $(DESTDIR)$(PREFIX)/lib/libbaton.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(BATON_VERSION)|' client/baton.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/baton.pc

clean:
	rm -rf build build-san

# ---- libbaton (static, shared, pkg-config) and the baton CLI: client/ ----
BATON_VERSION  := $(shell sed -n 's/^\#define BATON_VERSION "\(.*\)"/\1/p' server/batond.h)
CLIENT_LIB_SRC := client/baton.c
CLIENT_LIB_OBJ := $(CLIENT_LIB_SRC:%.c=$(B)/%.o)
CLIENT_PIC_OBJ := $(CLIENT_LIB_SRC:%.c=$(B)/pic/%.o)
CLIENT_LIBS    := $(shell pkg-config --libs libcurl jansson 2>/dev/null) -pthread
CLI_LIBS       := $(shell pkg-config --libs sqlite3 2>/dev/null) $(CLIENT_LIBS)

all: $(B)/libbaton.a $(B)/libbaton.so $(B)/baton $(B)/baton.pc
check: $(B)/baton
install: $(B)/baton $(B)/libbaton.a $(B)/libbaton.so
$(B)/run_tests: $(B)/libbaton.a
$(B)/tests/check_client.o $(B)/tests/check_cli.o: CFLAGS += -Iclient

$(B)/pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC -c -o $@ $<

$(B)/libbaton.a: $(CLIENT_LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/libbaton.so: $(CLIENT_PIC_OBJ)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libbaton.so.0 -o $@ $^ $(CLIENT_LIBS)

$(B)/baton: $(B)/client/cli.o $(B)/libbaton.a
	$(CC) $(LDFLAGS) -o $@ $^ $(CLI_LIBS)

$(B)/baton.pc: client/baton.pc.in server/batond.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(BATON_VERSION)|' $< > $@

# ---- baton-agent, the workers: client/agent*.c over libbaton ----
AGENT_SRC := $(wildcard client/agent*.c)
AGENT_OBJ := $(AGENT_SRC:%.c=$(B)/%.o)

all: $(B)/baton-agent
check: $(B)/baton-agent
install: $(B)/baton-agent
$(AGENT_OBJ): CFLAGS += -Iclient
$(B)/run_tests: $(B)/client/agent_util.o
$(B)/tests/check_scenarios.o: CFLAGS += -Iclient

$(B)/baton-agent: $(AGENT_OBJ) $(B)/libbaton.a
	$(CC) $(LDFLAGS) -o $@ $^ $(CLIENT_LIBS)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
