#!/usr/bin/env bash
# Screenshots of the Aspire dashboard with TC Studio running (README, "Run the system"): the resources page, then
# the traces and the API's request-duration metric after a few API requests. Starts ./run.sh itself (the http
# profile, AppHost settings passed through), signs in as admin with the generated password from the AppHost's user
# secrets, drives headless Chromium (Debian's chromium, installed when missing) over the DevTools protocol, then stops
# everything it started.
#
#   scripts/dashboard-screenshots.sh [OUTPUT_DIRECTORY] [AppHost settings...]      (default docs/)
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-docs}"
[ $# -gt 0 ] && shift
mkdir -p "$out"
work="$(mktemp -d /tmp/tcstudio-screenshots.XXXXXX)"
app_log="$work/run.log"
app_pid=""
chromium_pid=""

stop_all() {
  if [ -n "$chromium_pid" ]; then kill "$chromium_pid" 2>/dev/null || true; fi
  if [ -n "$app_pid" ]; then
    # SIGTERM to the run's process group (dotnet run and the AppHost): the AppHost stops every resource.
    kill -TERM -- "-$app_pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 -- "-$app_pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -rf "$work"
}
trap stop_all EXIT

if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Debian's chromium (headless screenshots)..."
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

echo "Starting TC Studio (./run.sh; log: $app_log)..."
setsid ./run.sh "$@" >"$app_log" 2>&1 &
app_pid=$!
for _ in $(seq 1 120); do
  grep -q "TC Studio is running: API" "$app_log" && break
  kill -0 "$app_pid" 2>/dev/null || { echo "run.sh exited before TC Studio was running:"; tail -20 "$app_log"; exit 1; }
  sleep 5
done
grep -q "TC Studio is running: API" "$app_log" || { echo "TC Studio was not running after 10 minutes"; exit 1; }
api="$(grep -o 'TC Studio is running: API [^ ]*' "$app_log" | head -1 | awk '{print $NF}')"
login="$(grep -o 'https\?://[^ ]*/login?t=[0-9a-f]*' "$app_log" | head -1)"
dashboard="${login%%/login*}"
echo "API: $api   dashboard: $dashboard"

# A few requests, so there are traces and metrics to show.
password="$(dotnet user-secrets list --project TcStudio.AppHost | sed -n 's/^Parameters:seed-admin-password = //p')"
token="$(curl -sf -X POST "$api/api/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')"
for _ in 1 2 3; do
  curl -sf -o /dev/null -H "Authorization: Bearer $token" "$api/api/workspaces"
  curl -sf -o /dev/null -H "Authorization: Bearer $token" "$api/api/workspaces/twsbp/procedures"
done
sleep 3 # the services export every second in Development

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-dev-shm-usage \
  --no-first-run --user-data-dir="$work/profile" --window-size=1600,1000 --remote-debugging-port="$port" about:blank \
  >"$work/chromium.log" 2>&1 &
chromium_pid=$!
for _ in $(seq 1 30); do curl -sf "http://127.0.0.1:$port/json/version" >/dev/null && break; sleep 1; done

shoot() { python3 scripts/cdp-screenshot.py "$port" "$@"; }
shoot "$out/dashboard-resources.png" "$login" "migration-worker" "Finished" "Running"
shoot "$out/dashboard-traces.png" "$dashboard/traces" "GET /api/workspaces"
SETTLE_SECONDS=6 shoot "$out/dashboard-metrics.png" \
  "$dashboard/metrics/resource/api?meter=Microsoft.AspNetCore.Hosting&instrument=http.server.request.duration&duration=5&view=Graph" \
  "http.server.request.duration"
echo "Screenshots in $out/: dashboard-resources.png, dashboard-traces.png, dashboard-metrics.png"
