#!/usr/bin/env bash
# Regenerate gen/ and fail if the result differs from what is committed
# (or staged). Untracked, modified and deleted files under gen/ all count.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Regenerating builds buf and the plugins (minutes from a cold cache): not
# needed while every input and output matches the stamp gen.sh wrote.
if scripts/gen-stamp.sh --check; then
  echo "check-gen: gen/ and its inputs match scripts/gen.sha256 (written by scripts/gen.sh): up to date."
  exit 0
fi
echo "check-gen: something differs from scripts/gen.sha256: regenerating."
scripts/gen.sh

status="$(git status --porcelain --untracked-files=all -- gen/ guest-sdk/ray/shapes_gen.go scripts/gen.sha256)"
if [[ -n "${status}" ]]; then
  echo "check-gen: generated code in gen/ or guest-sdk/ray is out of date with proto/ or its template." >&2
  echo "check-gen: run scripts/gen.sh and commit the result. Changed files:" >&2
  echo "${status}" >&2
  git --no-pager diff --stat -- gen/ guest-sdk/ray/shapes_gen.go >&2 || true
  exit 1
fi
echo "check-gen: gen/ is up to date."
