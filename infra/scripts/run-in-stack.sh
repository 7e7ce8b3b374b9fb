#!/usr/bin/env bash
# Run one process of the `just up` stack: one line of infra/Procfile, under honcho.
#
#   run-in-stack.sh <name> <command...>
#
# * output goes to $STACK_DIR/logs/<name>.log;
# * the process id goes to $STACK_DIR/run/<name>.pid and, once it ends, its exit
#   status to $STACK_DIR/run/<name>.exit (`stack.py down` and `status` read them);
# * in secure mode (STACK_SECURE=1) a service connects as its own NATS user with its
#   password file and its own TLS client certificate, and nats-server gets the users'
#   bcrypt hashes and its TLS files (NATS_TLS_*, quoted for the NATS config parser);
# * a process that ends on its own keeps its honcho slot (this script waits for
#   honcho's SIGTERM), so one crash does not make honcho stop the whole stack:
#   `just up` names the process that is down and `just down` stops the rest in order.
set -uo pipefail

name=$1
shift
: "${STACK_DIR:?STACK_DIR is not set: start the stack with 'just up'}"
log="$STACK_DIR/logs/$name.log"
run="$STACK_DIR/run"
mkdir -p "$STACK_DIR/logs" "$run"

if [ "${STACK_SECURE:-0}" = 1 ]; then
    case "$name" in
    nats)
        set -a
        # shellcheck disable=SC1091
        . "$STACK_DIR/secrets/nats.env"
        set +a
        export NATS_TLS_CERT="\"$STACK_DIR/secrets/server.pem\""
        export NATS_TLS_KEY="\"$STACK_DIR/secrets/server-key.pem\""
        export NATS_TLS_CA="\"$STACK_DIR/secrets/ca.pem\""
        ;;
    sim) ;;
    *)
        export KTRDR_NATS_USER="$name"
        export KTRDR_NATS_PASSWORD_FILE="$STACK_DIR/secrets/$name.password"
        export KTRDR_NATS_TLS_CA="$STACK_DIR/secrets/ca.pem"
        export KTRDR_NATS_TLS_CERT="$STACK_DIR/secrets/$name.pem"
        export KTRDR_NATS_TLS_KEY="$STACK_DIR/secrets/$name-key.pem"
        unset KTRDR_NATS_PASSWORD KTRDR_NATS_CREDS
        ;;
    esac
fi

rm -f "$run/$name.exit"
"$@" >>"$log" 2>&1 &
child=$!
echo "$child" >"$run/$name.pid"

signalled=0
forward() {
    signalled=1
    kill -TERM "$child" 2>/dev/null
}
trap forward TERM INT

# `wait` returns early when a trap runs; wait again until the child is really gone.
status=0
while :; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || break
done
echo "$status" >"$run/$name.exit"
rm -f "$run/$name.pid"
echo "ktrdr: $name exited with status $status" >>"$log"

if [ "$signalled" = 1 ]; then
    exit "$status"
fi
# Ended on its own or by `just down`: hold the slot until honcho stops us.
trap 'exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $!
done
