#!/usr/bin/env bash
# The run command (README, "Run the system"): installs what a fresh machine lacks (PostgreSQL's server binaries),
# builds the Aspire AppHost (which builds the API and the migration worker) and runs it with the `http` launch
# profile: the dashboard, PostgreSQL, the worker (migrate + seed), then the API. Ctrl+C stops everything.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'EOF'
Usage: ./run.sh [options] [AppHost settings]

Runs TC Studio through its Aspire AppHost and prints the dashboard's login link and the API's address.

Options:
  --https                 use the https launch profile (creates the ASP.NET Core development certificate if there
                          is none; on Linux it is not trusted by browsers). Default: the http profile, which needs
                          no certificate.
  -c, --configuration C   build configuration: Debug (default, or $CONFIGURATION) or Release
  --no-build              run what was built last
  -h, --help              print this text and exit

AppHost settings are configuration keys, passed on as --Key=value, for example:
  --AppHost:Postgres:Mode=auto|container|local|existing   (default auto: a container when Docker/Podman answers,
                                                           else PostgreSQL from this machine's binaries)
  --AppHost:Postgres:StateDirectory=/path                 (the local cluster's data; default README, "Run the system")
  --AppHost:Postgres:Port=5433                            (the local cluster's port; default 0, a free one)
  --AppHost:SqlServer:Mode=auto|container|existing|none
  --ConnectionStrings:postgres="Host=...;Username=...;Password=..."   (with Mode=existing)
The same keys work as environment variables (AppHost__Postgres__Mode=local) or user secrets
(dotnet user-secrets set AppHost:Postgres:Mode local --project TcStudio.AppHost).
EOF
}

profile=http
configuration="${CONFIGURATION:-Debug}"
build=1
apphost_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --https) profile=https ;;
    -c|--configuration) configuration="${2:?--configuration needs a value}"; shift ;;
    --configuration=*) configuration="${1#*=}" ;;
    --no-build) build=0 ;;
    *) apphost_args+=("$1") ;;
  esac
  shift
done

TCSTUDIO_NEEDS_LOCAL_POSTGRES=1 bash scripts/ensure-postgres.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [ "$profile" = https ] && ! dotnet dev-certs https --check >/dev/null 2>&1; then
  echo "Creating the ASP.NET Core HTTPS development certificate (dotnet dev-certs https)..."
  dotnet dev-certs https >/dev/null
fi

if [ "$build" = 1 ]; then
  echo "Building TcStudio.AppHost ($configuration)..."
  dotnet build TcStudio.AppHost -c "$configuration" --nologo -v quiet -clp:NoSummary
fi

# exec: the AppHost receives Ctrl+C / SIGTERM itself and stops every resource, the local PostgreSQL cluster last.
exec dotnet run --project TcStudio.AppHost --no-build -c "$configuration" --launch-profile "$profile" -- "${apphost_args[@]}"
