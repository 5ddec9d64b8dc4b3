#!/usr/bin/env bash
# Vets the host, the CLI and the SDK (every package, tests included) for
# linux, darwin and windows on amd64 and arm64, and links the CLI and a
# guest program (the SDK's local mode) for each.
# Worker processes are Unix-only: on windows the host builds, but New fails
# with host.ErrWorkersUnsupported unless it is given its own Launcher.
#
# go vet type-checks every package for the platform and compiles
# everything they import; the links add what only the linker sees. Not
# `go build ./...`: that links all fifteen main packages (the examples and
# guests) for each platform, about two minutes of CI for links that
# differ only in their main package.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0
for os in linux darwin windows; do
  for arch in amd64 arm64; do
    echo "-- $os/$arch"
    if ! GOOS=$os GOARCH=$arch go vet ./... ||
      ! GOOS=$os GOARCH=$arch go build -o /dev/null ./cmd/rayhost ||
      ! GOOS=$os GOARCH=$arch go build -o /dev/null ./examples/basic; then
      echo "FAILED: $os/$arch"
      status=1
    fi
  done
done
exit $status
