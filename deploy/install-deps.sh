#!/bin/sh
# install-deps.sh [--test] -- install the Debian packages baton builds with
# (and, with --test, what the test suites use), only those that are
# missing. Safe to run again; does nothing when all are present.
set -eu

need=""
have_pc() { pkg-config --exists "$1" 2>/dev/null; }
have_cmd() { command -v "$1" >/dev/null 2>&1; }

have_cmd pkg-config || need="$need pkg-config"
have_cmd cc || need="$need gcc"
have_cmd make || need="$need make"
have_pc sqlite3 || need="$need libsqlite3-dev"
# batond's PostgreSQL backend (BATON_DB=postgres://...) links libpq
have_pc libpq || need="$need libpq-dev"
have_pc libmicrohttpd || need="$need libmicrohttpd-dev"
have_pc jansson || need="$need libjansson-dev"
have_pc libsodium || need="$need libsodium-dev"
have_pc check || need="$need check"
have_pc libcurl || need="$need libcurl4-openssl-dev"
have_cmd sqlite3 || need="$need sqlite3"
if [ "${1:-}" = "--test" ]; then
    # make sanitize and CI build with clang as well as gcc
    have_cmd clang || need="$need clang"
    # the store_pg suite and the suites on PostgreSQL start a throwaway
    # server (tests/pg.c): initdb and pg_ctl from /usr/lib/postgresql/*/bin
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
    # the copy from SQLite to PostgreSQL (deploy/sqlite-to-postgres.sh) and its test
    have_cmd psql || need="$need postgresql-client"
    # validates deploy/docker-compose.yml in the tests; needs no container engine
    have_cmd docker-compose || need="$need docker-compose"
    # the browser tests of the web console and chat (tests/browser/):
    # Debian's chromium driven by playwright-core from npm, no browser download
    have_cmd chromium || need="$need chromium"
    have_cmd node || need="$need nodejs"
    have_cmd npm || need="$need npm"
    # make fuzz (run by make check): clang with libFuzzer's runtime, and
    # python3 for the seed script
    have_cmd python3 || need="$need python3"
    if have_cmd clang; then
        rt=$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
        if [ ! -f "$rt" ] && ! ls "$(clang -print-resource-dir 2>/dev/null)"/lib/linux/libclang_rt.fuzzer*.a \
                >/dev/null 2>&1; then
            v=$(clang --version | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1)
            need="$need libclang-rt-${v:-14}-dev"
        fi
    else
        need="$need libclang-rt-14-dev"     # the runtime of Debian 12's clang
    fi
fi

[ -z "$need" ] && exit 0

echo "install-deps: installing$need"
if [ "$(id -u)" -ne 0 ]; then
    if have_cmd sudo; then SUDO=sudo; else
        echo "install-deps: run as root: apt-get install -y$need" >&2
        exit 1
    fi
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
