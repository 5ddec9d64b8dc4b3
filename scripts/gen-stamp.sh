#!/usr/bin/env bash
# The stamp of generated code: sha256 of every file that goes into or comes
# out of scripts/gen.sh (the protos, buf's configs, the pinned tools, the
# shape generator, and what they generate). scripts/gen.sh writes it to
# scripts/gen.sha256; scripts/check-gen.sh trusts generated code whose
# inputs and outputs all match it, and regenerates (building buf, minutes
# from a cold cache) only when one does not.
#   gen-stamp.sh          print the stamp
#   gen-stamp.sh --check  exit 0 if the working tree matches scripts/gen.sha256
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stamp() {
  git ls-files --cached --others --exclude-standard -- \
      proto buf.yaml buf.gen.yaml tools/go.mod tools/go.sum \
      guest-sdk/ray/internal/shapegen guest-sdk/ray/doc.go gen guest-sdk/ray/shapes_gen.go |
    LC_ALL=C sort -u |
    while read -r f; do
      if [[ -e "$f" ]]; then sha256sum "$f"; else echo "deleted  $f"; fi
    done
}
if [[ "${1:-}" == "--check" ]]; then
  [[ -f scripts/gen.sha256 ]] && diff -q <(stamp) scripts/gen.sha256 >/dev/null
else
  stamp
fi
