#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_stat_statements) are on this machine.
# Installs Debian's postgresql package when they are missing. Sourced by test.sh and run.sh.
set -euo pipefail

have_postgres() {
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1
}

if [ -n "${TCSTUDIO_TEST_POSTGRES:-}" ] && [ "${TCSTUDIO_NEEDS_LOCAL_POSTGRES:-0}" != "1" ]; then
  exit 0 # an external server is configured; the tests do not start their own
fi

if ! have_postgres; then
  echo "PostgreSQL server binaries not found; installing Debian's postgresql package..." >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi

if ! have_postgres; then
  echo "PostgreSQL server binaries are still missing after installing; set PG_BIN to their directory." >&2
  exit 1
fi
