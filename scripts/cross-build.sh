#!/usr/bin/env bash
# Builds and vets the host, the CLI and the SDK (every package, tests
# included by vet) for linux, darwin and windows on amd64 and arm64.
# Worker processes are Unix-only: on windows the host builds, but New fails
# with host.ErrWorkersUnsupported unless it is given its own Launcher.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0
for os in linux darwin windows; do
  for arch in amd64 arm64; do
    echo "-- $os/$arch"
    if ! GOOS=$os GOARCH=$arch go build ./... || ! GOOS=$os GOARCH=$arch go vet ./...; then
      echo "FAILED: $os/$arch"
      status=1
    fi
  done
done
exit $status
