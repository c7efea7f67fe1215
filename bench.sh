#!/usr/bin/env bash
# The benchmark command (README, "Performance"): ./bench.sh [--quick] [--scenario N[,N...]] [--runs N] [--duration S]
# Builds Release, raises the open-file limit (the pool scenario opens 1,000 client connections), and runs every
# scenario against a private durable PostgreSQL cluster. Prints the table; writes JSON under artifacts/bench/.
set -euo pipefail
cd "$(dirname "$0")"

bash scripts/ensure-postgres.sh
# Scenario 2 checks its load generator against Debian's wrk (not in --quick): install it when missing.
if [[ " $* " != *" --quick "* ]] && ! command -v wrk >/dev/null 2>&1; then
  echo "[bench] installing wrk (apt-get)" >&2
  { apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; }; } \
    || echo "[bench] could not install wrk: the wrk rows will say n/a" >&2
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# The AppHost (scenario 7) is built with the benchmark, in the same configuration, with the services it starts.
dotnet build TcStudio.Benchmarks/TcStudio.Benchmarks.csproj -c Release --nologo -v quiet
dotnet build TcStudio.AppHost/TcStudio.AppHost.csproj -c Release --nologo -v quiet
exec dotnet TcStudio.Benchmarks/bin/Release/net10.0/TcStudio.Benchmarks.dll "$@"
