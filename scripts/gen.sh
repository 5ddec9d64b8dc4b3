#!/usr/bin/env bash
# Lint the protos under proto/ and regenerate Go + Connect code into gen/,
# and the guest SDK's registration constructors (guest-sdk/ray/shapes_gen.go).
# Tools (buf, protoc-gen-go, protoc-gen-connect-go) are pinned in tools/go.mod
# and built via `go tool`, so only the Go module proxy is needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

go tool -modfile=tools/go.mod buf lint
go tool -modfile=tools/go.mod buf generate
go generate ./guest-sdk/ray
# The stamp check-gen.sh trusts while nothing here changes.
scripts/gen-stamp.sh > scripts/gen.sha256
