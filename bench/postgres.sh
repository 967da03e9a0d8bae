#!/usr/bin/env bash
# PostgreSQL benchmark (issue: PostgreSQL backend). Builds the release binary and measures
# POST /api/v1/run/peer-chat-echo with an API key (wrk, 2 threads, 16 connections, messages
# stored: two rows per run) on:
#   1. SQLite (the default, a fresh data dir);
#   2. PostgreSQL (a fresh database on PG_URL's server);
#   3. two instances on that one PostgreSQL database, loaded at the same time (8 connections
#      each, one wrk per instance), reporting their sum.
# Each round runs /health on the same server first, for scale. Prints a Markdown table and
# the PostgreSQL settings that matter.
# Environment: CARGO_TARGET_DIR, PG_URL (postgres://postgres@127.0.0.1:5432/postgres),
# DURATION (10), ROUNDS (2), KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FIXTURES=${FIXTURES:-$ROOT/../shared/fixtures}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
BIN=$TARGET_DIR/release/flowgate
SECRET=bench-instances-share-this-secret-0123456789
source "$ROOT/bench/lib.sh"
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
log "building the release binary"
(cd "$ROOT" && cargo build --release --quiet -p flowgate)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowgate-bench-pg.XXXXXX")
DB=fgbench_$(date +%s)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -qAt --dbname "$PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
for name in $(env | grep -oE '^(FLOWGATE|LANGFLOW)_[A-Z0-9_]+' || true); do unset "$name"; done
psql -qAt --dbname "$PG_URL" -c "CREATE DATABASE $DB" >/dev/null
DB_URL="${PG_URL%/*}/$DB"

# start NAME [env...]: starts a server, sets URL_<NAME>
start() {
    local name=$1; shift
    mkdir -p "$WORK/$name"
    env "$@" FLOWGATE_SECRET_KEY=$SECRET FLOWGATE_ACCESS_LOG=false \
        "$BIN" serve --port 0 --data-dir "$WORK/$name" >"$WORK/$name/stdout" 2>"$WORK/$name/server.log" &
    PIDS+=($!)
    local url=""
    for _ in $(seq 300); do
        url=$(sed -n 's/^flowgate .* listening on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/$name/stdout")
        [[ -n $url ]] && break
        sleep 0.05
    done
    [[ -n $url ]] || { log "$name did not start"; cat "$WORK/$name/server.log" >&2; exit 1; }
    printf -v "URL_$name" '%s' "$url"
}

echo "| round | setup | /health req/s | run req/s | run p50 ms | run p99 ms | non-2xx |"
echo "|---|---|---:|---:|---:|---:|---:|"
start sqlite
chat_echo_setup "$URL_sqlite"
start pg_a FLOWGATE_DATABASE_URL="$DB_URL" FLOWGATE_DB_MAX_CONNECTIONS=16
start pg_b FLOWGATE_DATABASE_URL="$DB_URL" FLOWGATE_DB_MAX_CONNECTIONS=16
SQLITE_LUA=$WORK/sqlite.lua; cp "$WORK/run.lua" "$SQLITE_LUA"
chat_echo_setup "$URL_pg_a"
PG_LUA=$WORK/pg.lua; cp "$WORK/run.lua" "$PG_LUA"
for u in "$URL_sqlite" "$URL_pg_a" "$URL_pg_b"; do
    lua=$PG_LUA; [[ $u == "$URL_sqlite" ]] && lua=$SQLITE_LUA
    wrk -t2 -c16 -d2s -s "$lua" "$u/api/v1/run/peer-chat-echo" >/dev/null
done
for r in $(seq "$ROUNDS"); do
    for setup_name in sqlite pg_a; do
        u_var="URL_$setup_name"; u=${!u_var}
        lua=$PG_LUA; [[ $setup_name == sqlite ]] && lua=$SQLITE_LUA
        wrk -t2 -c16 -d"${DURATION}s" --latency "$u/health" > "$WORK/h-$setup_name-$r.txt"
        wrk -t2 -c16 -d"${DURATION}s" --latency -s "$lua" "$u/api/v1/run/peer-chat-echo" > "$WORK/r-$setup_name-$r.txt"
        read -r h _ _ _ <<<"$(wrk_stats "$WORK/h-$setup_name-$r.txt")"
        read -r rps p50 p99 bad <<<"$(wrk_stats "$WORK/r-$setup_name-$r.txt")"
        label=$([[ $setup_name == sqlite ]] && echo "SQLite, one instance" || echo "PostgreSQL, one instance")
        echo "| $r | $label | $h | $rps | $p50 | $p99 | $bad |"
    done
    wrk -t1 -c8 -d"${DURATION}s" --latency -s "$PG_LUA" "$URL_pg_a/api/v1/run/peer-chat-echo" > "$WORK/two-a-$r.txt" &
    WRK_A=$!
    wrk -t1 -c8 -d"${DURATION}s" --latency -s "$PG_LUA" "$URL_pg_b/api/v1/run/peer-chat-echo" > "$WORK/two-b-$r.txt"
    wait "$WRK_A"
    read -r ra pa50 pa99 ba <<<"$(wrk_stats "$WORK/two-a-$r.txt")"
    read -r rb pb50 pb99 bb <<<"$(wrk_stats "$WORK/two-b-$r.txt")"
    echo "| $r | PostgreSQL, two instances (A + B, 8 connections each) | | $((ra + rb)) ($ra + $rb) | $pa50 / $pb50 | $pa99 / $pb99 | $((ba + bb)) |"
done
echo
ROWS=$(psql -qAt --dbname "$DB_URL" -c "SELECT count(*) FROM messages")
echo "messages rows in PostgreSQL afterwards: $ROWS"
echo
echo "PostgreSQL settings:"
psql -qAt --dbname "$DB_URL" -c "SELECT version()"
psql -qAt --dbname "$DB_URL" -F ' = ' -c "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN ('shared_buffers','synchronous_commit','fsync','wal_level','max_connections','work_mem','effective_cache_size','checkpoint_timeout','max_wal_size','commit_delay') ORDER BY name"
echo "flowgate pool: FLOWGATE_DB_MAX_CONNECTIONS=16 per instance (SQLite: default 8)"
