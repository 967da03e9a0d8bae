#!/usr/bin/env bash
# Foundation benchmark (issue: API keys). Builds the release binary, starts flowgate on
# 127.0.0.1 with a throw-away data dir, and measures with wrk (2 threads, 16 connections):
#   start to first answer, idle RSS, GET /health, GET /api/v1/users/whoami with a valid key,
#   with a garbage key (checksum fails: 403, no database), and with a well-formed unknown key
#   (checksum passes, every request reaches the database index) — first with the defaults
#   (access log on, to a file), then with FLOWGATE_ACCESS_LOG=false, then with 100,000 more
#   API keys in the database.
# Raw outputs go to bench/results/<timestamp>/; a Markdown summary is printed on stdout.
#
# Environment: CARGO_TARGET_DIR (default target/), REV (build this commit instead of the
# working tree), DURATION (wrk seconds, default 10),
# ROUNDS (interleaved rounds per phase, default 3), WARMUP (seconds, default 2), SEED_KEYS (default 100000), START_SAMPLES (cold and warm starts timed,
# default 5), KEEP=1 keeps the temporary data dir and server logs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SEED_KEYS=${SEED_KEYS:-100000}
START_SAMPLES=${START_SAMPLES:-5}
ROUNDS=${ROUNDS:-3}
THREADS=2
CONNECTIONS=16

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Tools.
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq wrk >/dev/null
fi
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/bench/results/$STAMP
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowgate-bench.XXXXXX")
DATA=$WORK/data
mkdir -p "$DATA"
PID=""

stop_server() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
        if kill -0 "$PID" 2>/dev/null; then
            log "server $PID ignored SIGTERM for 5 s; killing it"
            kill -KILL "$PID" 2>/dev/null || true
        fi
        wait "$PID" 2>/dev/null || true
    fi
    PID=""
}
cleanup() {
    stop_server
    if [[ ${KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Build: the working tree, or with REV=<commit> that commit exported by `git archive` (for
# a clean measurement while crates/ is being edited).
SRC=$ROOT
if [[ -n ${REV:-} ]]; then
    SRC=$WORK/src
    mkdir -p "$SRC"
    git -C "$ROOT" archive "$REV" | tar -x -C "$SRC"
    SOURCE_DESC="commit $(git -C "$ROOT" rev-parse --short "$REV") (git archive)"
else
    SOURCE_DESC="working tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -z $(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]] || echo ' + uncommitted changes')"
fi
log "building the release binary from $SOURCE_DESC (target dir: $TARGET_DIR)"
(cd "$SRC" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p flowgate --quiet) \
    || die "cargo build failed"
BIN=$TARGET_DIR/release/flowgate
[[ -x $BIN ]] || die "no binary at $BIN"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$PID/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }

# start_server NAME [VAR=value ...]: starts flowgate with a clean environment plus the given
# variables, waits for the first 200 from /health and sets PID, PORT, BASE, START_MS.
start_server() {
    local name=$1; shift
    PORT=$(free_port)
    BASE=http://127.0.0.1:$PORT
    SERVER_LOG=$WORK/server-$name.log
    local t0 t1
    t0=$(now_us)
    (
        # Defaults only: drop any FLOWGATE_/LANGFLOW_ variables of the caller, and run in the
        # data dir so no .env of the caller's working directory is read.
        while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(FLOWGATE|LANGFLOW)_' || true)
        for kv in "$@"; do export "${kv?}"; done
        cd "$DATA"
        exec "$BIN" serve --port "$PORT" --data-dir "$DATA"
    ) >>"$SERVER_LOG" 2>&1 &
    PID=$!
    local deadline=$((t0 + 30000000))
    until curl -s -o /dev/null --max-time 1 -f "$BASE/health"; do
        kill -0 "$PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; die "the server exited"; }
        (( $(now_us) < deadline )) || die "no answer from /health within 30 s"
    done
    t1=$(now_us)
    START_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", (b-a)/1000}')
}

cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# wrk_run LABEL ROUND URL [HEADER]: one measured wrk run (a warm-up first in round 1). The
# server's CPU time over the run and its RSS after it go into the raw file's header lines.
wrk_run() {
    local label=$1 round=$2 url=$3 header=${4:-}
    local args=(-t"$THREADS" -c"$CONNECTIONS" --latency)
    [[ -n $header ]] && args+=(-H "$header")
    local file=$OUT/$PHASE-$label-r$round.txt
    if [[ $round == 1 ]]; then
        wrk "${args[@]}" -d"${WARMUP}s" "$url" >"$OUT/$PHASE-$label-warmup.txt"
    fi
    local c0 c1 out
    c0=$(cpu_ticks)
    out=$(wrk "${args[@]}" -d"${DURATION}s" "$url")
    c1=$(cpu_ticks)
    {
        echo "# phase=$PHASE label=$label round=$round url=$url header=${header:+${header%%:*}:<redacted>}"
        echo "# server_cpu_seconds=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN {print t/hz}') rss_kib=$(rss_kib) loadavg=$(cut -d' ' -f1 /proc/loadavg)"
        echo "$out"
    } >"$file"
    log "$PHASE $label round $round: $(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$file") req/s"
}

# measure: ROUNDS interleaved rounds of the four requests, so slow drifts in the machine's
# load hit each of them alike.
measure() {
    local r
    for r in $(seq "$ROUNDS"); do
        wrk_run health "$r" "$BASE/health"
        wrk_run whoami-key "$r" "$BASE/api/v1/users/whoami" "x-api-key: $API_KEY"
        wrk_run whoami-garbage "$r" "$BASE/api/v1/users/whoami" "x-api-key: $GARBAGE_KEY"
        wrk_run whoami-unknown "$r" "$BASE/api/v1/users/whoami" "x-api-key: $UNKNOWN_KEY"
    done
}

expect_status() { # expect_status CODE CURL-ARGS...
    local want=$1; shift
    local got
    got=$(curl -s -o /dev/null -w '%{http_code}' "$@")
    [[ $got == "$want" ]] || die "expected $want, got $got from: curl $*"
}

# A well-formed key (valid CRC-32 checksum) that is in no database.
UNKNOWN_KEY=$(python3 - <<'EOF'
import secrets, zlib
B = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
body = "fgk_" + "".join(secrets.choice(B) for _ in range(43))
c = zlib.crc32(body.encode())
s = ""
for _ in range(6):
    s = B[c % 62] + s
    c //= 62
print(body + s)
EOF
)
GARBAGE_KEY="fgk_$(printf 'A%.0s' $(seq 49))"

log "machine: $(nproc) cores, load: $(cat /proc/loadavg)"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "source: $SOURCE_DESC"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "memory: $(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "uptime before: $(uptime)"
    echo "busiest processes before:"
    ps -eo pcpu,pid,comm --sort=-pcpu | head -6
} >"$OUT/machine.txt"

# 3–6. Defaults: access log on (stderr → a file).
PHASE=defaults
start_server defaults
COLD_START_MS=$START_MS
sleep 0.5
IDLE_RSS=$(rss_kib)
log "cold start (fresh data dir: migrations + superuser): $COLD_START_MS ms; idle RSS $(mib "$IDLE_RSS") MiB"

TOKEN=$(curl -sf -X POST "$BASE/api/v1/login" -d username=langflow -d password=langflow \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
API_KEY=$(curl -sf -X POST "$BASE/api/v1/api_key/" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"name":"bench"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
expect_status 200 "$BASE/api/v1/users/whoami" -H "x-api-key: $API_KEY"
expect_status 403 "$BASE/api/v1/users/whoami" -H "x-api-key: $GARBAGE_KEY"
expect_status 403 "$BASE/api/v1/users/whoami" -H "x-api-key: $UNKNOWN_KEY"

measure
PEAK_DEFAULTS=$(hwm_kib)
LOG_BYTES=$(stat -c %s "$SERVER_LOG")
LOG_LINES=$(grep -c 'flowgate::access' "$SERVER_LOG" || true)
# Requests wrk completed in this phase (warm-ups included) against access-log lines: the log
# writer is a bounded, lossy queue, so a shortfall means dropped lines.
SENT=$(cat "$OUT"/defaults-*.txt | awk '/requests in/ {n += $1} END {print n + 0}')
stop_server

# Start to first answer, several samples: cold (a fresh data dir each time: migrations and
# the superuser's Argon2id hash) and warm (the existing data dir: an Argon2id verification of
# the default password).
COLD=("$COLD_START_MS")
WARM=()
MAIN_DATA=$DATA
for i in $(seq 2 "$START_SAMPLES"); do
    DATA=$WORK/cold-$i
    mkdir -p "$DATA"
    start_server cold-starts
    COLD+=("$START_MS")
    stop_server
done
DATA=$MAIN_DATA
for _ in $(seq "$START_SAMPLES"); do
    start_server warm-starts
    WARM+=("$START_MS")
    stop_server
done
sorted() { printf '%s\n' "$@" | sort -n | tr '\n' ' ' | sed 's/ $//'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
COLD_SORTED=$(sorted "${COLD[@]}"); COLD_MEDIAN=$(median "${COLD[@]}")
WARM_SORTED=$(sorted "${WARM[@]}"); WARM_MEDIAN=$(median "${WARM[@]}")
log "cold starts (ms): $COLD_SORTED; warm starts (ms): $WARM_SORTED"

# The cost of logging: the same with FLOWGATE_ACCESS_LOG=false.
PHASE=no-access-log
start_server no-access-log FLOWGATE_ACCESS_LOG=false
measure
stop_server

# 7. 100,000 more keys, inserted with the server stopped; the restart starts with an empty
# key cache, so the valid key's first use goes through the index of the bigger table.
log "seeding $SEED_KEYS API keys"
python3 - "$DATA/flowgate.db" "$SEED_KEYS" <<'EOF'
import secrets, sqlite3, sys, time, uuid
db, n = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
(user_id,) = con.execute("SELECT id FROM users WHERE username_lower = 'langflow'").fetchone()
now = int(time.time() * 1_000_000)
rows = []
for i in range(n):
    h = secrets.token_hex(32)
    rows.append((str(uuid.uuid4()), user_id, f"seed-{i}", h, "fgk_" + h[:4], 53, "full", now))
with con:
    con.executemany(
        "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, key_length, scope, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
print(con.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0], "keys in the database", file=sys.stderr)
con.close()
EOF
DB_MIB=$(du -m "$DATA/flowgate.db" | cut -f1)

PHASE=100k-keys
start_server 100k-keys
IDLE_RSS_100K=$(rss_kib)
expect_status 200 "$BASE/api/v1/users/whoami" -H "x-api-key: $API_KEY"
measure

# 8. SIGTERM, then the summary.
stop_server
{
    echo "uptime after: $(uptime)"
    echo "busiest processes after:"
    ps -eo pcpu,pid,comm --sort=-pcpu | head -6
} >>"$OUT/machine.txt"

{
    echo "## flowgate foundation benchmark — $(date -u +%FT%TZ)"
    echo
    sed -n '1,6p' "$OUT/machine.txt" | sed 's/^/- /'
    echo "- load average (1, 5, 15 min): before \`$(sed -n 's/^uptime before: .*load average: //p' "$OUT/machine.txt")\`, after \`$(sed -n 's/^uptime after: .*load average: //p' "$OUT/machine.txt")\`"
    echo "- wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS interleaved rounds per phase after a ${WARMUP} s warm-up; wrk and the server share the machine's cores"
    echo
    python3 - "$OUT" <<'EOF'
import glob, os, re, statistics, sys
out = sys.argv[1]
def secs(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    return float(m[1]) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m[2]]
runs = {}
for f in sorted(glob.glob(os.path.join(out, "*-r[0-9]*.txt"))):
    lines = open(f).read().splitlines()
    t = "\n".join(lines)
    head = dict(kv.split("=", 1) for kv in lines[0][2:].split() if "=" in kv)
    meta = dict(kv.split("=", 1) for kv in lines[1][2:].split() if "=" in kv)
    n = int(re.search(r"(\d+) requests in", t)[1])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    runs.setdefault((head["phase"], head["label"]), []).append({
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", t)[1]),
        "p50": secs(re.search(r"^\s+50%\s+(\S+)", t, re.M)[1]),
        "p99": secs(re.search(r"^\s+99%\s+(\S+)", t, re.M)[1]),
        "non2xx": int(non2xx[1]) if non2xx else 0,
        "errors": sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", t))),
        "n": n,
        "cpu_us": float(meta["server_cpu_seconds"]) * 1e6 / n,
        "rss": int(meta["rss_kib"]) / 1024,
    })
med = statistics.median
print("| phase | request | req/s median (min–max) | p50 ms | p99 ms | server CPU µs/req | non-2xx / total | socket errors | RSS after (MiB) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
summary = {}
for phase in ("defaults", "no-access-log", "100k-keys"):
    for label in ("health", "whoami-key", "whoami-garbage", "whoami-unknown"):
        rs = runs.get((phase, label), [])
        if not rs:
            continue
        rps = [r["rps"] for r in rs]
        s = summary[(phase, label)] = {"rps": med(rps), "cpu": med([r["cpu_us"] for r in rs])}
        print(f"| {phase} | {label} | {med(rps):.0f} ({min(rps):.0f}–{max(rps):.0f}) | "
              f"{med([r['p50'] for r in rs]) * 1e3:.2f} | {med([r['p99'] for r in rs]) * 1e3:.2f} | "
              f"{s['cpu']:.1f} | {sum(r['non2xx'] for r in rs)} / {sum(r['n'] for r in rs)} | "
              f"{sum(r['errors'] for r in rs)} | {max(r['rss'] for r in rs):.1f} |")
print()
print("| target | measured: req/s ratio (server-CPU ratio) | verdict |")
print("|---|---|---|")
for phase in ("defaults", "no-access-log", "100k-keys"):
    h = summary[(phase, "health")]
    for label, name, goal in (("whoami-key", "whoami with a valid key", 50), ("whoami-garbage", "garbage key", 80)):
        k = summary[(phase, label)]
        ratio = 100 * k["rps"] / h["rps"]
        cpu_ratio = 100 * h["cpu"] / k["cpu"]
        print(f"| {phase}: {name} ≥ {goal} % of /health | {ratio:.0f} % ({cpu_ratio:.0f} %) | {'PASS' if ratio >= goal else 'FAIL'} |")
EOF
    verdict() { awk -v v="$1" -v t="$2" 'BEGIN {print (v <= t) ? "PASS" : "FAIL"}'; }
    echo "| idle RSS ≤ 30 MiB | $(mib "$IDLE_RSS") MiB | $(verdict "$(mib "$IDLE_RSS")" 30) |"
    echo "| start to first answer ≤ 200 ms (median cold / warm) | $COLD_MEDIAN / $WARM_MEDIAN ms | $(verdict "$COLD_MEDIAN" 200) / $(verdict "$WARM_MEDIAN" 200) |"
    echo
    echo "- start to first answer: cold (fresh data dir) $COLD_SORTED ms; warm (restart) $WARM_SORTED ms"
    echo "- idle RSS right after start: $(mib "$IDLE_RSS") MiB (fresh), $(mib "$IDLE_RSS_100K") MiB (restart with 100k keys); peak RSS in the defaults phase $(mib "$PEAK_DEFAULTS") MiB"
    echo "- access log (defaults phase): $LOG_LINES lines for $SENT requests completed by wrk (warm-ups included), $(mib $((LOG_BYTES / 1024))) MiB"
    echo "- database with $SEED_KEYS seeded keys: $DB_MIB MiB"
    echo "- ratios: median req/s of the request over median req/s of /health in the same phase; in brackets the same from the server's CPU time per request (less disturbed by other processes)"
    echo
    echo "Raw wrk outputs: bench/results/$STAMP/"
} | tee "$OUT/summary.md"
