#!/usr/bin/env bash
# Flows benchmark (issue: flows). Builds the release binary, starts flowgate on 127.0.0.1 with a
# throw-away data dir, and measures:
#   1. import of all 25 Langflow starters: `flowgate flows import DIR` (straight into the
#      database) and one HTTP upload of a ZIP of them — flows per second;
#   2. listing 10,000 flows of one user with header_flows=true — p50/p99 over LIST_SAMPLES
#      sequential requests;
#   3. peak RSS (VmHWM) of the server while the largest starter is uploaded 100 times.
# Environment: CARGO_TARGET_DIR (default target/), LIST_SAMPLES (default 100), KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FIXTURES=${FIXTURES:-$ROOT/../shared/fixtures}
LIST_SAMPLES=${LIST_SAMPLES:-100}
BIN=$TARGET_DIR/release/flowgate
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

[[ -d $FIXTURES/langflow-starters ]] || { log "no fixtures at $FIXTURES"; exit 1; }
log "building the release binary"
(cd "$ROOT" && cargo build --release --quiet -p flowgate)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowgate-bench-flows.XXXXXX")
PID=""
cleanup() {
    [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
for name in $(env | grep -oE '^(FLOWGATE|LANGFLOW)_[A-Z0-9_]+' || true); do unset "$name"; done

start_server() {
    "$BIN" serve --port 0 --data-dir "$1" >"$1/stdout" 2>"$1/server.log" &
    PID=$!
    for _ in $(seq 300); do
        URL=$(sed -n 's/^flowgate .* listening on \(http:\/\/[^ ]*\).*/\1/p' "$1/stdout")
        [[ -n $URL ]] && return 0
        sleep 0.02
    done
    log "server did not start"; cat "$1/server.log" >&2; exit 1
}

# 1a. CLI import of the starters into an empty database.
mkdir -p "$WORK/cli"
"$BIN" migrate --data-dir "$WORK/cli" >/dev/null
t0=$(date +%s.%N)
"$BIN" flows import "$FIXTURES/langflow-starters" --data-dir "$WORK/cli" >"$WORK/cli-import.txt"
t1=$(date +%s.%N)
cli_secs=$(python3 -c "print(f'{$t1-$t0:.3f}')")
cli_rate=$(python3 -c "print(f'{25/($t1-$t0):.1f}')")

# 1b/2/3 run against one server.
mkdir -p "$WORK/srv"
start_server "$WORK/srv"
log "server at $URL"
CLI_SECS=$cli_secs CLI_RATE=$cli_rate python3 - "$URL" "$FIXTURES" "$LIST_SAMPLES" "$PID" "$BIN" "$WORK" <<'PY' | tee "$WORK/summary.md"
import io, json, os, statistics, subprocess, sys, time, urllib.request, uuid, zipfile

url, fixtures, samples, pid, binary, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]

def call(method, path, body=None, headers=None, ctype=None):
    req = urllib.request.Request(url + path, data=body, method=method, headers=headers or {})
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req) as res:
        return res.status, res.read()

status, body = call("POST", "/api/v1/login", b"username=langflow&password=langflow",
                    ctype="application/x-www-form-urlencoded")
auth = {"Authorization": "Bearer " + json.loads(body)["access_token"]}

def upload(name, data):
    boundary = uuid.uuid4().hex
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
               f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return call("POST", "/api/v1/flows/upload/", payload, auth, f"multipart/form-data; boundary={boundary}")

starters_dir = os.path.join(fixtures, "langflow-starters")
files = sorted(f for f in os.listdir(starters_dir) if f.endswith(".json"))
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    for f in files:
        z.write(os.path.join(starters_dir, f), f)
t0 = time.perf_counter()
status, body = upload("starters.zip", buf.getvalue())
zip_secs = time.perf_counter() - t0
assert status == 201 and len(json.loads(body)) == 25, status

# 3. Peak RSS while the largest starter is uploaded 100 times (before the 10,000-flow listing,
#    whose large responses would otherwise set the high-water mark).
largest = max(files, key=lambda f: os.path.getsize(os.path.join(starters_dir, f)))
data = open(os.path.join(starters_dir, largest), "rb").read()
def rss(field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
before = rss("VmRSS:")
t0 = time.perf_counter()
for _ in range(100):
    status, _ = upload(largest, data)
    assert status == 201
upload_secs = time.perf_counter() - t0
peak = rss("VmHWM:")
after = rss("VmRSS:")

# 2. 10,000 flows of one user (chat-echo's graph, distinct names), seeded through the CLI in
#    files of 1,000, then listed with header_flows=true.
echo = json.load(open(os.path.join(fixtures, "chat-echo.json")))
for part in range(10):
    flows = []
    for i in range(1000):
        f = dict(echo)
        f["name"] = f"bench-{part:02d}-{i:04d}"
        f.pop("endpoint_name", None)
        flows.append(f)
    path = os.path.join(work, f"seed-{part}.json")
    json.dump({"flows": flows}, open(path, "w"))
t0 = time.perf_counter()
subprocess.run([binary, "flows", "import", "--data-dir", os.path.join(work, "srv")] +
               [os.path.join(work, f"seed-{p}.json") for p in range(10)], check=True, stdout=subprocess.DEVNULL)
seed_secs = time.perf_counter() - t0
times = []
for _ in range(samples):
    t0 = time.perf_counter()
    status, body = call("GET", "/api/v1/flows/?header_flows=true", headers=auth)
    times.append((time.perf_counter() - t0) * 1000)
count = len(json.loads(body))
times.sort()
p50 = statistics.median(times)
p99 = times[min(len(times) - 1, int(len(times) * 0.99))]

print("| measurement | result |")
print("|---|---|")
print(f"| CLI import of the 25 starters | {os.environ.get('CLI_SECS')} s = {os.environ.get('CLI_RATE')} flows/s |")
print(f"| HTTP upload of a ZIP of the 25 starters | {zip_secs:.3f} s = {25/zip_secs:.1f} flows/s |")
print(f"| seeding 10,000 flows through `flowgate flows import` (10 files) | {seed_secs:.1f} s = {10000/seed_secs:.0f} flows/s |")
print(f"| list {count} flows, header_flows=true, {samples} sequential requests | p50 {p50:.1f} ms, p99 {p99:.1f} ms, {len(body)/1e6:.2f} MB per response |")
print(f"| upload {largest} ({len(data)/1024:.0f} KiB) 100 times | {upload_secs:.2f} s = {100/upload_secs:.1f} uploads/s |")
print(f"| server RSS before / after / peak (VmHWM) | {before:.1f} / {after:.1f} / {peak:.1f} MiB |")
PY
