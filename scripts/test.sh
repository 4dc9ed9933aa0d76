#!/usr/bin/env bash
# The project's test command (`npm test`): contract checks, type checks, then every test (Vitest).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "vendored buf/validate/validate.proto matches @bufbuild/protovalidate"
node scripts/vendor-validate-proto.mjs
if ! git diff --quiet --exit-code -- proto/buf; then
  git status --short -- proto/buf
  echo "proto/buf/validate/validate.proto differs from the installed @bufbuild/protovalidate: run 'npm run proto-deps' and commit" >&2
  exit 1
fi

step "buf lint"
npx --no-install buf lint

step "buf breaking against main"
# On a branch: compare with main. On main itself: compare with the previous commit.
against=""
if git rev-parse --verify -q main >/dev/null && [ "$(git rev-parse HEAD)" != "$(git rev-parse main)" ]; then
  against=main
elif git rev-parse --verify -q HEAD~1 >/dev/null; then
  against=HEAD~1
fi
if [ -n "$against" ] && git cat-file -e "$against:buf.yaml" 2>/dev/null; then
  old=$(mktemp -d)
  trap 'rm -rf "$old"' EXIT
  git archive "$against" proto buf.yaml | tar -x -C "$old"
  # Contracts of before proto/buf was vendored compiled it from .proto-deps/.
  mkdir -p "$old/.proto-deps" && cp -r proto/buf "$old/.proto-deps/"
  (cd "$old" && "$OLDPWD/node_modules/.bin/buf" build -o "$old/image.binpb")
  npx --no-install buf build -o "$old/new.binpb"
  npx --no-install buf breaking "$old/new.binpb" --against "$old/image.binpb"
else
  echo "skipped: no earlier commit with contracts to compare with"
fi

step "generated code and descriptor set are up to date (npm run generate)"
npx --no-install buf generate
npx --no-install buf build --as-file-descriptor-set -o proto/logistics.protoset
if ! git diff --quiet --exit-code -- services/shared/src/gen proto/logistics.protoset || [ -n "$(git ls-files --others --exclude-standard services/shared/src/gen proto/logistics.protoset)" ]; then
  git status --short -- services/shared/src/gen proto/logistics.protoset
  echo "generated code or proto/logistics.protoset differs from the committed files: run 'npm run generate' and commit" >&2
  exit 1
fi

step "tsc --noEmit (typecheck: services, tests, perf; the web page)"
# Meanwhile (tsc is single-threaded, the machines have two cores) compile the services for the
# integration tests that start an entry point as its own process; their global setup then finds
# the build up to date. Same command as scripts/vitest/build-services.ts.
npx --no-install tsc -b tsconfig.build.json &
build=$!
npx --no-install tsc --noEmit
npx --no-install tsc -p services/web
wait "$build"

step "tests: vitest (unit, integration, browser) with coverage"
# Runs the TypeScript sources directly; the integration project's global setup checks the
# build above is up to date (tsc -b tsconfig.build.json) for the tests that start an entry point.
# The last line is the plain count: `N passed, N failed, N skipped`.
npx --no-install vitest run --coverage
