#!/usr/bin/env bash
# Regenerate gen/ and fail if the result differs from what is committed
# (or staged). Untracked, modified and deleted files under gen/ all count.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/gen.sh

status="$(git status --porcelain --untracked-files=all -- gen/)"
if [[ -n "${status}" ]]; then
  echo "check-gen: generated code in gen/ is out of date with proto/." >&2
  echo "check-gen: run scripts/gen.sh and commit the result. Changed files:" >&2
  echo "${status}" >&2
  git --no-pager diff --stat -- gen/ >&2 || true
  exit 1
fi
echo "check-gen: gen/ is up to date."
