#!/usr/bin/env bash
# The run command: installs what a fresh machine lacks (PostgreSQL's server binaries, unless an existing server is
# configured in ConnectionStrings__postgres), builds the AppHost (which builds the API and the migration worker)
# and runs it: PostgreSQL, migrations + seed, then the API. Ctrl+C stops everything.
# Arguments go to the AppHost as configuration, e.g. ./run.sh --AppHost:ApiUrl=http://localhost:5200
set -euo pipefail
cd "$(dirname "$0")"

if [ -z "${ConnectionStrings__postgres:-}" ]; then
  TCSTUDIO_NEEDS_LOCAL_POSTGRES=1 bash scripts/ensure-postgres.sh
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

configuration="${CONFIGURATION:-Debug}"
echo "Building TcStudio.AppHost ($configuration)..."
dotnet build TcStudio.AppHost -c "$configuration" --nologo -v quiet -clp:NoSummary

# exec: the AppHost itself receives Ctrl+C / SIGTERM and stops the services in order.
exec dotnet "TcStudio.AppHost/bin/$configuration/net10.0/TcStudio.AppHost.dll" "$@"
