# Helpers shared by the benchmark scripts (sourced, not run). They expect FIXTURES and WORK set.

# chat_echo_setup URL: logs in as the default superuser, creates an API key (sets KEY), imports
# chat-echo (endpoint `peer-chat-echo`), and writes $WORK/run.lua for wrk: one run of it.
chat_echo_setup() {
    local url=$1 token
    token=$(curl -s -X POST "$url/api/v1/login" -d username=langflow -d password=langflow | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
    KEY=$(curl -s -X POST "$url/api/v1/api_key/" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"name":"bench"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["api_key"])')
    curl -s -o /dev/null -X POST "$url/api/v1/flows/" -H "x-api-key: $KEY" -H 'Content-Type: application/json' --data-binary "@$FIXTURES/chat-echo.json"
    cat > "$WORK/run.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"input_value":"hello"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "$KEY"
LUA
}

# wrk_stats FILE: wrk --latency output → "req/s p50_ms p99_ms non2xx"
wrk_stats() {
    python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(v, u):
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
lat = dict((p, ms(v, u)) for p, v, u in re.findall(r"\s+(50|99)%\s+([\d.]+)(us|ms|s)", t))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {lat.get('50', 0):.2f} {lat.get('99', 0):.2f} {non2xx.group(1) if non2xx else 0}")
PY
}
