#!/usr/bin/env bash
# Run benchmark (issue: run flows). Builds the release binary, starts flowgate on 127.0.0.1 with a
# throw-away data dir and message storage on (the default), and measures:
#   1. POST /api/v1/run/peer-chat-echo (API key, {"input_value":"hello"}) next to GET /health in
#      the same run, wrk 2 threads / 16 connections, DURATION seconds of each per round, ROUNDS
#      rounds. A round alternates SLICES slices of each (health, run, health, run, ...) and
#      compares their totals: this VM's speed moves by a third within a minute, and slices taken
#      in turn see the same machine (one 10 s window of each, back to back, did not);
#   2. a streamed run's added latency to the first token (Basic Prompting against a local fake
#      model) versus calling the fake model directly, median of SAMPLES sequential calls each;
#   3. RSS over RUNS (default 1,000,000) chat-echo runs: sampled every ~100k requests.
# Environment: CARGO_TARGET_DIR, DURATION (10), SLICES (5), ROUNDS (3), SAMPLES (300),
# RUNS (1000000), KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FIXTURES=${FIXTURES:-$ROOT/../shared/fixtures}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SLICES=${SLICES:-5}
SAMPLES=${SAMPLES:-300}
RUNS=${RUNS:-1000000}
BIN=$TARGET_DIR/release/flowgate
source "$ROOT/bench/lib.sh"
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
log "building the release binary"
(cd "$ROOT" && cargo build --release --quiet -p flowgate)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowgate-bench-run.XXXXXX")
PID=""; FAKE=""
cleanup() {
    [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    [[ -n $FAKE ]] && kill "$FAKE" 2>/dev/null || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
for name in $(env | grep -oE '^(FLOWGATE|LANGFLOW)_[A-Z0-9_]+' || true); do unset "$name"; done

python3 "$ROOT/bench/fake_model.py" > "$WORK/fake.port" &
FAKE=$!
for _ in $(seq 100); do [[ -s $WORK/fake.port ]] && break; sleep 0.05; done
FAKE_URL="http://127.0.0.1:$(cat "$WORK/fake.port")/v1"

mkdir -p "$WORK/data"
OPENAI_BASE_URL=$FAKE_URL "$BIN" serve --port 0 --data-dir "$WORK/data" >"$WORK/stdout" 2>"$WORK/server.log" &
PID=$!
for _ in $(seq 300); do
    URL=$(sed -n 's/^flowgate .* listening on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/stdout")
    [[ -n $URL ]] && break
    sleep 0.02
done
[[ -n $URL ]] || { log "server did not start"; cat "$WORK/server.log" >&2; exit 1; }
log "server at $URL, fake model at $FAKE_URL"

chat_echo_setup "$URL"
BP_ID=$(curl -s -X POST "$URL/api/v1/flows/" -H "x-api-key: $KEY" -H 'Content-Type: application/json' --data-binary "@$FIXTURES/langflow-starters/Basic Prompting.json" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')

rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status"; }

log "warm-up"
wrk -t2 -c16 -d2s "$URL/health" >/dev/null
wrk -t2 -c16 -d2s -s "$WORK/run.lua" "$URL/api/v1/run/peer-chat-echo" >/dev/null
SLICE=$(python3 -c "print(f'{$DURATION/$SLICES:g}')")
# Each slice also prints its latency quantiles (every 0.1 %), so a round's p50/p99 are those of
# all its requests, not of one slice.
QUANTILES='
done = function(summary, latency, requests)
    for i = 1, 1000 do io.write(string.format("Q %d %d\n", i, latency:percentile(i / 10))) end
end'
printf '%s\n' "$QUANTILES" > "$WORK/health.lua"
{ cat "$WORK/run.lua"; printf '%s\n' "$QUANTILES"; } > "$WORK/run-q.lua"
echo "| round | /health req/s | p50 ms | p99 ms | run chat-echo req/s | p50 ms | p99 ms | non-2xx | run/health | slices (run/health) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
    for s in $(seq "$SLICES"); do
        wrk -t2 -c16 -d"${SLICE}s" -s "$WORK/health.lua" "$URL/health" > "$WORK/health-$r-$s.txt"
        wrk -t2 -c16 -d"${SLICE}s" -s "$WORK/run-q.lua" "$URL/api/v1/run/peer-chat-echo" > "$WORK/run-$r-$s.txt"
    done
    # Per round: req/s over all its slices of each, p50/p99 of all their requests (each slice's
    # quantiles weighted by its request count), and each pair's own ratio.
    python3 - "$r" "$WORK" "$SLICES" <<'PY'
import re, sys
r, work, slices = sys.argv[1], sys.argv[2], int(sys.argv[3])
def stats(path):
    t = open(path).read()
    ms = lambda v, u: float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
    quantiles = [int(v) / 1000 for v in re.findall(r"^Q \d+ (\d+)$", t, re.M)]
    reqs = int(re.search(r"(\d+) requests in", t).group(1))
    secs = ms(*re.search(r"requests in ([\d.]+)(us|ms|s)", t).groups()) / 1000
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    return reqs, secs, quantiles, int(bad.group(1)) if bad else 0
def percentile(slices, p):
    # Each slice's 1000 quantiles stand for its requests in equal shares.
    points = sorted((q, n / len(qs)) for n, _, qs, _ in slices for q in qs)
    total, seen = sum(w for _, w in points), 0.0
    for q, w in points:
        seen += w
        if seen >= total * p / 100:
            return q
    return points[-1][0]
h = [stats(f"{work}/health-{r}-{s}.txt") for s in range(1, slices + 1)]
g = [stats(f"{work}/run-{r}-{s}.txt") for s in range(1, slices + 1)]
rate = lambda xs: sum(x[0] for x in xs) / sum(x[1] for x in xs)
hr, rr = rate(h), rate(g)
pairs = " ".join(f"{100 * (b[0] / b[1]) / (a[0] / a[1]):.0f}" for a, b in zip(h, g))
print(f"| {r} | {hr:.0f} | {percentile(h, 50):.2f} | {percentile(h, 99):.2f} "
      f"| {rr:.0f} | {percentile(g, 50):.2f} | {percentile(g, 99):.2f} "
      f"| {sum(x[3] for x in g)} | {100 * rr / hr:.0f} % | {pairs} |")
PY
done
sleep 1.5
STORED=$(curl -s "$URL/api/v1/monitor/messages?session_id=$(curl -s "$URL/api/v1/flows/peer-chat-echo" -H "x-api-key: $KEY" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')" -H "x-api-key: $KEY" | python3 -c 'import sys,json;print(len(json.load(sys.stdin)))')
echo
echo "messages visible through /monitor/messages after the runs (the listing's default window is the newest 100): $STORED"

log "first-token overhead"
python3 - "$URL" "$KEY" "$BP_ID" "$FAKE_URL" "$SAMPLES" <<'PY'
import json, socket, statistics, sys, time, urllib.parse
url, key, flow, fake, samples = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def first_marker(base, path, headers, body, marker):
    u = urllib.parse.urlparse(base)
    s = socket.create_connection((u.hostname, u.port))
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    t0 = time.perf_counter()
    s.sendall(head.encode() + data)
    buf = b""
    while marker not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit(f"no {marker!r} in {buf[:500]!r}")
        buf += chunk
    t = time.perf_counter() - t0
    while s.recv(65536):
        pass
    s.close()
    return t * 1000

import urllib.request
req = urllib.request.Request(f"{url}/api/v1/flows/{flow}", headers={"x-api-key": key})
flow_json = json.load(urllib.request.urlopen(req))
llm = next(n["id"] for n in flow_json["data"]["nodes"] if n["data"].get("type") == "LanguageModelComponent")
run_body = {"input_value": "hello", "tweaks": {llm: {"model": "gpt-4o-mini", "api_key": "sk-fake", "stream": True}}}
direct_body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
fake_path = urllib.parse.urlparse(fake).path + "/chat/completions"
via, direct = [], []
for i in range(samples + 20):
    a = first_marker(url, f"/api/v1/run/{flow}?stream=true", {"x-api-key": key}, run_body, b'"event": "token"')
    b = first_marker(fake, fake_path, {"Authorization": "Bearer sk-fake"}, direct_body, b'"content": "Hel"')
    if i >= 20:
        via.append(a)
        direct.append(b)
mv, md = statistics.median(via), statistics.median(direct)
print()
print("| first token (streamed Basic Prompting) | median ms | p90 ms |")
print("|---|---|---|")
print(f"| through flowgate (/api/v1/run?stream=true) | {mv:.2f} | {sorted(via)[int(len(via)*0.9)]:.2f} |")
print(f"| the fake model directly | {md:.2f} | {sorted(direct)[int(len(direct)*0.9)]:.2f} |")
print(f"| **overhead** | **{mv - md:.2f}** | |")
PY

log "RSS over $RUNS runs"
echo
echo "| runs so far | RSS MiB |"
echo "|---|---|"
echo "| 0 (after the rounds above) | $(rss) |"
done_runs=0
STEP=$((RUNS / 10))
while (( done_runs < RUNS )); do
    # Fixed request count per step: wrk has no count flag, so loop short runs and count them.
    wrk -t2 -c16 -d5s -s "$WORK/run.lua" "$URL/api/v1/run/peer-chat-echo" > "$WORK/soak.txt"
    n=$(awk '/requests in/ {print $1}' "$WORK/soak.txt")
    done_runs=$((done_runs + n))
    if (( done_runs / STEP != (done_runs - n) / STEP )); then
        echo "| $done_runs | $(rss) |"
    fi
done
echo "| $done_runs (end) | $(rss) |"
echo
echo "database after the soak: $(du -sh "$WORK/data" | cut -f1)"
