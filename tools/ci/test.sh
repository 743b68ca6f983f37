#!/usr/bin/env bash
# The test command (npm test): typecheck, then every vitest suite under c8 (line coverage of
# drivers/ and device-models/), then one closing line "tests: N passed, N failed, N skipped".
# Vitest runs in worker threads here: c8 collects V8 coverage from the threads of one process,
# while forked workers are stopped before they write theirs.
set -u
cd "$(dirname "$0")/../.."
mkdir -p reports
npx tsc --noEmit -p tsconfig.json || { echo "typecheck failed"; echo "tests: 0 passed, 1 failed, 0 skipped"; exit 1; }
rm -rf reports/.c8
npx c8 --temp-directory reports/.c8 --report-dir reports/coverage \
  --include 'drivers/**' --include 'device-models/**' --exclude '**/*.test.ts' \
  --reporter text-summary --reporter json-summary \
  vitest run --pool=threads --reporter=default --reporter=json --outputFile.json=reports/vitest.json "$@"
rc=$?
echo "line coverage of drivers/ and device-models/ (c8): $(node -e "const s=require('./reports/coverage/coverage-summary.json').total.lines; console.log(s.pct+'% ('+s.covered+'/'+s.total+' lines)')" 2>/dev/null || echo unavailable)"
node tools/ci/summarize.mjs reports/vitest.json || rc=1
exit $rc
