#!/usr/bin/env bash
# The package as a user gets it: npm pack (prepack builds dist/), install the tarball into an
# empty folder, run the installed CLI, then the external-driver example's own tests against the
# installed package. Exit 1 naming the step that failed (its output is printed then).
# Usage: bash tools/ci/pack-test.sh   (after npm ci; uses the npm cache, --prefer-offline)
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pvkit-pack-test.XXXXXX")
# PVKIT_PACK_TEST_KEEP=1 keeps the folder (the tarball, the installs) to look at
if [ "${PVKIT_PACK_TEST_KEEP:-}" = 1 ]; then echo "pack-test: working in $tmp (kept)"; else trap 'rm -rf "$tmp"' EXIT; fi
log=$tmp/step.log
t_all=$SECONDS
npm_install=(npm install --no-audit --no-fund --prefer-offline --loglevel=error)

# show REGEX: print the last step's lines matching REGEX (the figures worth seeing in a CI log).
show() { sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E -- "$1" | sed 's/^/             /'; }
# step NAME CMD...: run CMD with its output in $log; on failure print it and stop.
step() {
  local name=$1 t=$SECONDS rc
  shift
  "$@" >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    tail -n 40 "$log"
    echo "pack-test: FAILED: $name (exit $rc)"
    exit 1
  fi
  echo "pack-test: ok   $name ($((SECONDS - t)) s)"
}
# expect TEXT: the last step's output contains TEXT.
expect() {
  if ! grep -qF -- "$1" "$log"; then
    tail -n 40 "$log"
    echo "pack-test: FAILED: expected \"$1\" in the output above"
    exit 1
  fi
}

step "npm pack (prepack builds dist/)" npm pack --pack-destination "$tmp"
tarball=$(ls "$tmp"/pvkit-*.tgz)

app=$tmp/app
mkdir -p "$app"
echo '{ "name": "pvkit-pack-test", "private": true, "type": "module" }' >"$app/package.json"
cd "$app"
step "npm install the tarball into an empty folder" "${npm_install[@]}" "$tarball"
# the installed CLI must not compile TypeScript: no tsx, no sources (declarations only)
step "installed package has no tsx and no .ts sources" bash -c '! test -e node_modules/tsx && ! find node_modules/pvkit -name "*.ts" ! -name "*.d.ts" | grep -q .'

pvkit=(npx --no -- pvkit)
step "pvkit --help" "${pvkit[@]}" --help
expect "pvkit conformance"
step "pvkit with an unknown command exits 2" bash -c 'npx --no -- pvkit no-such-command; test $? -eq 2'
step "pvkit conformance --device blk --transport mmio" "${pvkit[@]}" conformance --device blk --transport mmio --out "$tmp/reports"
expect " 0 failed"
show ' passed, '
step "pvkit bench blk --seconds 0.2" "${pvkit[@]}" bench blk --seconds 0.2
expect "IOPS"
step "pvkit repl (.exit on stdin)" bash -c "echo .exit | npx --no -- pvkit repl"
expect "monitor attached"
step "pvkit spec coverage" "${pvkit[@]}" spec coverage
expect "total"

# the external-driver example, outside pvkit's tree, against the installed tarball
example=$tmp/external-driver
cp -r "$root/docs/examples/external-driver" "$example"
rm -rf "$example/node_modules" "$example/package-lock.json"
cd "$example"
step "example: npm install (pvkit from the tarball, vitest, typescript)" "${npm_install[@]}" "$tarball"
step "example: tsc --noEmit against the shipped .d.ts" npx --no -- tsc --noEmit -p tsconfig.json
step "example: vitest run" npx --no -- vitest run
expect "passed"
show '^ *(Test Files|Tests) '

echo "pack-test: all steps passed in $((SECONDS - t_all)) s ($(basename "$tarball"), $(du -k "$tarball" | cut -f1) KiB)"
