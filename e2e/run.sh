#!/usr/bin/env bash
# Browser tests of the web UI: builds the debug binary (a no-op when it is fresh), starts
# `flowgate serve` on a free port with a fresh data dir, runs every e2e/tests/*.test.mjs with
# node's test runner against it in Debian's Chromium, then stops the server.
#   CHROMIUM=/path/to/chromium   another browser binary (default /usr/bin/chromium)
#   FLOWGATE_BIN=/path/to/flowgate   skip the build and test that binary
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd .. && pwd)

if [ -z "${FLOWGATE_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --quiet -p flowgate)
  FLOWGATE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/flowgate"
fi
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || {
  echo "no Chromium at ${CHROMIUM:-/usr/bin/chromium}: apt-get install -y chromium" >&2
  exit 1
}
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund

DATA=$(mktemp -d)
mkdir -p screenshots
# The server must not pick up this shell's flowgate/Langflow settings (FLOWGATE_BIN included,
# so keep the binary's path first).
BIN="$FLOWGATE_BIN"
for name in $(env | grep -oE '^(FLOWGATE|LANGFLOW)_[A-Z0-9_]+' || true); do unset "$name"; done
"$BIN" serve --port 0 --data-dir "$DATA" >"$DATA/stdout" 2>"$DATA/server.log" &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

URL=""
for _ in $(seq 300); do
  URL=$(sed -n 's/^flowgate .* listening on \(http:\/\/[^ ]*\).*/\1/p' "$DATA/stdout")
  [ -n "$URL" ] && break
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "flowgate did not start:" >&2
    cat "$DATA/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$URL" ] || { echo "flowgate did not print its address" >&2; exit 1; }
echo "flowgate at $URL"

status=0
FLOWGATE_URL="$URL" node --test --test-concurrency=1 tests/*.test.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 40 lines) ---" >&2
  tail -n 40 "$DATA/server.log" >&2
fi
exit "$status"
