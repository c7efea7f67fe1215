#!/usr/bin/env bash
# The test command: installs what a fresh machine lacks, builds, runs every test against real PostgreSQL
# (a private throwaway cluster, or TCSTUDIO_TEST_POSTGRES when set) and ends with "N passed, N failed[, N skipped]".
# SQL Server integration tests run when TCSTUDIO_TEST_SQLSERVER is set and report themselves skipped otherwise.
set -uo pipefail
cd "$(dirname "$0")"

bash scripts/ensure-postgres.sh || { echo "0 passed, 1 failed"; exit 1; }
bash scripts/ensure-sshd.sh || { echo "0 passed, 1 failed"; exit 1; }
bash scripts/ensure-openapi-lint.sh || { echo "0 passed, 1 failed"; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

results_dir="artifacts/test-results"
rm -rf "$results_dir"
mkdir -p "$results_dir"

if ! dotnet build TcStudio.sln -c Debug -warnaserror --nologo -v quiet; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

dotnet test TcStudio.sln -c Debug --no-build --nologo \
  --logger "trx;LogFilePrefix=results" --logger "console;verbosity=normal" \
  --results-directory "$results_dir" "$@"
status=$?

passed=0; failed=0; skipped=0
for trx in "$results_dir"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  value() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*' || echo 0; }
  passed=$((passed + $(value passed)))
  failed=$((failed + $(value failed) + $(value error) + $(value timeout) + $(value aborted)))
  # The trx Counters leave skipped tests out of notExecuted; their UnitTestResult rows say NotExecuted.
  not_executed=$(grep -o '<UnitTestResult [^>]*outcome="NotExecuted"' "$trx" | wc -l)
  skipped=$((skipped + not_executed))
done

if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # the run itself failed (crash, hang) without a test result saying so
fi

# The names of failed tests again, just above the summary: a CI log that keeps only its tail still says which.
for trx in "$results_dir"/*.trx; do
  [ -f "$trx" ] || continue
  # Each with the first line of its message (trx puts it in ErrorInfo/Message after the result's opening tag).
  awk '
    /<UnitTestResult / { name = ""; if ($0 ~ /outcome="Failed"/) { match($0, /testName="[^"]*"/); name = substr($0, RSTART + 10, RLENGTH - 11) } }
    more > 0 { more--; if ($0 !~ /^ *(at |<)/) { sub(/<\/Message>.*/, ""); print "        " substr($0, 1, 300) } }
    name != "" && /<Message>/ { more = ($0 ~ /<\/Message>/) ? 0 : 2; sub(/.*<Message>/, ""); sub(/<\/Message>.*/, "")
                                print "failed: " name " — " substr($0, 1, 300); name = "" }
  ' "$trx" | head -20
done

line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ]
