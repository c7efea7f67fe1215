#!/usr/bin/env bash
# Installs the OpenAPI linter (@redocly/cli, pinned in tools/openapi-lint/package-lock.json) for OpenApiLintTests.
# Quiet and idempotent: nothing is fetched when the locked version is already installed, so it also works offline then.
set -euo pipefail
cd "$(dirname "$0")/../tools/openapi-lint"

wanted=$(node -e 'console.log(require("./package-lock.json").packages["node_modules/@redocly/cli"].version)' 2>/dev/null || true)
installed=$(node -e 'console.log(require("./node_modules/@redocly/cli/package.json").version)' 2>/dev/null || true)
if [ -n "$wanted" ] && [ "$wanted" = "$installed" ]; then exit 0; fi

if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: install Node.js 20.19+ (the OpenAPI lint test needs it)." >&2
  exit 1
fi
echo "Installing the OpenAPI linter (@redocly/cli $wanted) with npm ci..." >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
