#!/bin/sh
# run-local.sh -- the stack of deploy/docker-compose.yml as plain processes,
# for a machine without a container engine (`make demo`):
#
#   batond           production mode, with a secret and webhook secrets
#   fakeapi          a stand-in Telegram Bot API / WhatsApp Cloud API
#   baton-agent      core (built-in echo handler), whatsapp (wa-1) and
#                    telegram, the senders pointed at fakeapi
#
# Everything stays on 127.0.0.1. Logs go to $DEMO_DIR/logs/, the URL and
# secret to $DEMO_DIR/env (". $DEMO_DIR/env" then use baton or curl).
# Ctrl-C, SIGTERM or SIGHUP stops the workers first and waits for them (the
# WhatsApp worker releases its lease while batond still serves), then batond
# and fakeapi; the exit status is 0 when every process stopped cleanly.
# Each process runs in a session of its own (setsid), so the Ctrl-C of a
# terminal reaches only this script, never batond and the workers at once,
# and a terminal that goes away (SIGHUP) stops the stack the same way.
#
# Settings (environment):
#   B=build                 where batond, fakeapi, baton-agent were built
#   BATON_AGENT=$B/baton-agent   the worker binary (e.g. an installed one)
#   DEMO_DIR=./data/demo    database, logs, pids and env file
#   BATON_PORT=3210         batond's port (0: any free port)
#   FAKE_API_PORT=0         fakeapi's port (0: any free port)
#   AGENT_SECRET            default: a random one, written to $DEMO_DIR/env
set -eu

B=${B:-build}
BATOND=${BATOND:-$B/batond}
FAKEAPI=${FAKEAPI:-$B/fakeapi}
AGENT=${BATON_AGENT:-$B/baton-agent}
DEMO_DIR=${DEMO_DIR:-./data/demo}
BATON_PORT=${BATON_PORT:-3210}
FAKE_API_PORT=${FAKE_API_PORT:-0}
STOP_TIMEOUT=${STOP_TIMEOUT:-20}

say() { echo "run-local: $*"; }
FAILED=0
die() { echo "run-local: $*" >&2; FAILED=1; exit 1; }

for bin in "$BATOND" "$FAKEAPI"; do
    [ -x "$bin" ] || die "$bin is not built (run: make all $B/fakeapi)"
done
[ -x "$AGENT" ] || die "$AGENT is not built: baton-agent is needed for the workers (run: make all, or set BATON_AGENT)"

mkdir -p "$DEMO_DIR/logs"
LOGS=$DEMO_DIR/logs
: > "$DEMO_DIR/pids"
rm -f "$DEMO_DIR/env"

if [ -z "${AGENT_SECRET:-}" ]; then
    AGENT_SECRET=demo-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
fi
export AGENT_SECRET
# demo-only channel secrets: the smoke tests of docs/operations.md use them
export TELEGRAM_WEBHOOK_SECRET=${TELEGRAM_WEBHOOK_SECRET:-demo-telegram-secret}
export WHATSAPP_VERIFY_TOKEN=${WHATSAPP_VERIFY_TOKEN:-demo-verify-token}
export WHATSAPP_APP_SECRET=${WHATSAPP_APP_SECRET:-demo-app-secret}

# run a process in a session of its own: the terminal's signals go to this
# script only, which stops the stack in order (setsid execs in place, so
# $! is the process itself)
if command -v setsid >/dev/null 2>&1; then
    DETACH=setsid
else
    DETACH=
fi

PIDS=""
NAMES=""
started() {     # name pid
    PIDS="$PIDS $2"
    NAMES="$NAMES $1:$2"
    echo "$1 $2" >> "$DEMO_DIR/pids"
}

# Stop one process: SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL.
# Returns its exit status (137 when it had to be killed).
stop_one() {    # name pid
    kill -TERM "$2" 2>/dev/null || true
    i=0
    while kill -0 "$2" 2>/dev/null; do
        if [ $i -ge $((STOP_TIMEOUT * 10)) ]; then
            say "$1 (pid $2) did not stop in ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$2" 2>/dev/null || true
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    rc=0
    wait "$2" 2>/dev/null || rc=$?
    return $rc
}

STOPPING=0
stop_all() {
    [ $STOPPING -eq 1 ] && return
    STOPPING=1
    trap '' INT TERM HUP
    say "stopping"
    status=$FAILED
    # workers first (they release leases and finish in-flight calls), then
    # the server, then the fake API the senders were talking to
    for name in agent-whatsapp agent-telegram agent-core batond fakeapi; do
        for np in $NAMES; do
            [ "${np%%:*}" = "$name" ] || continue
            pid=${np#*:}
            if stop_one "$name" "$pid"; then
                say "$name stopped"
            else
                rc=$?
                say "$name exited with status $rc"
                status=1
            fi
        done
    done
    rm -f "$DEMO_DIR/pids"
    exit $status
}

# wait_line FILE REGEX SECONDS: until a line of FILE matches
wait_line() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        [ $i -ge $(($3 * 10)) ] && return 1
        sleep 0.1
        i=$((i + 1))
    done
}

trap stop_all INT TERM HUP EXIT

# ---- fakeapi ---------------------------------------------------------------
$DETACH "$FAKEAPI" "$FAKE_API_PORT" < /dev/null > "$LOGS/fakeapi.log" 2>&1 &
started fakeapi $!
wait_line "$LOGS/fakeapi.log" 'listening on' 10 || die "fakeapi did not start (see $LOGS/fakeapi.log)"
FAKE_URL=$(sed -n 's/^fakeapi: listening on \(http[^ ]*\).*/\1/p' "$LOGS/fakeapi.log" | head -n 1)

# ---- batond: the settings of the compose file ------------------------------
BATON_LISTEN=127.0.0.1:$BATON_PORT BATON_DB=$DEMO_DIR/baton.db BATON_ENV=production \
    $DETACH "$BATOND" < /dev/null > "$LOGS/batond.log" 2>&1 &
started batond $!
wait_line "$LOGS/batond.log" '"event":"server.started"' 30 ||
    die "batond did not start (see $LOGS/batond.log)"
PORT=$(sed -n 's/.*"event":"server.started".*"port":\([0-9]*\).*/\1/p' "$LOGS/batond.log" | head -n 1)
BATON_URL=http://127.0.0.1:$PORT
export BATON_URL

# ---- the three workers ------------------------------------------------------
AGENT_ROLE=core WORKER_ID=core-1 AGENT_HANDLER=echo \
    $DETACH "$AGENT" < /dev/null > "$LOGS/agent-core.log" 2>&1 &
started agent-core $!

AGENT_ROLE=whatsapp WORKER_ID=wa-1 ENABLE_WHATSAPP=1 WHATSAPP_ACCOUNT_ID=default \
    WHATSAPP_API_BASE=$FAKE_URL/whatsapp WHATSAPP_PHONE_NUMBER_ID=demo-phone-number-id \
    WHATSAPP_ACCESS_TOKEN=demo-access-token \
    $DETACH "$AGENT" < /dev/null > "$LOGS/agent-whatsapp.log" 2>&1 &
started agent-whatsapp $!

AGENT_ROLE=telegram WORKER_ID=tg-1 TELEGRAM_ACCOUNT_ID=default \
    TELEGRAM_API_BASE=$FAKE_URL/telegram TELEGRAM_BOT_TOKEN=demo-bot-token \
    $DETACH "$AGENT" < /dev/null > "$LOGS/agent-telegram.log" 2>&1 &
started agent-telegram $!

cat > "$DEMO_DIR/env" <<EOF
BATON_URL=$BATON_URL
AGENT_SECRET=$AGENT_SECRET
TELEGRAM_WEBHOOK_SECRET=$TELEGRAM_WEBHOOK_SECRET
WHATSAPP_VERIFY_TOKEN=$WHATSAPP_VERIFY_TOKEN
WHATSAPP_APP_SECRET=$WHATSAPP_APP_SECRET
FAKE_API_URL=$FAKE_URL
export BATON_URL AGENT_SECRET TELEGRAM_WEBHOOK_SECRET WHATSAPP_VERIFY_TOKEN WHATSAPP_APP_SECRET
EOF

cat <<EOF
run-local: batond      $BATON_URL  (database $DEMO_DIR/baton.db)
run-local: fake API    $FAKE_URL  (Telegram: /telegram, WhatsApp: /whatsapp)
run-local: console     $BATON_URL/console  (sign in with AGENT_SECRET from $DEMO_DIR/env)
run-local: web chat    $BATON_URL/chat  (the echo worker answers)
run-local: workers     agent-core (echo), agent-whatsapp (wa-1), agent-telegram
run-local: logs        tail -F $LOGS/*.log
run-local: settings    . $DEMO_DIR/env
run-local: try it      curl -s -H "Authorization: Bearer \$AGENT_SECRET" -H 'Content-Type: application/json' \\
                         -d '{"text":"hello"}' \$BATON_URL/v1/conversations/demo/messages
                       curl -s -H "Authorization: Bearer \$AGENT_SECRET" "\$BATON_URL/v1/conversations/demo/messages?waitMs=5000"
run-local: Ctrl-C stops everything
EOF

# Watch the children: one that exits on its own brings the stack down.
while :; do
    for np in $NAMES; do
        if ! kill -0 "${np#*:}" 2>/dev/null; then
            say "${np%%:*} exited unexpectedly (see $LOGS/${np%%:*}.log)"
            FAILED=1
            stop_all
        fi
    done
    sleep 1 &
    wait $! 2>/dev/null || true
done
