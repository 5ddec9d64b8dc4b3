#!/usr/bin/env bash
# Builds and vets the host, the CLI and the SDK (every package, tests
# included by vet) for other platforms than this one. Worker processes are
# Unix-only: on windows the host builds, but New fails with
# host.ErrWorkersUnsupported unless it is given its own Launcher.
#
# By default one target per OS beside linux/amd64 (built and vetted by
# .ci/run itself): linux/arm64 (the seccomp filter and the syscall structs
# differ by architecture), darwin/arm64 and windows/amd64. Each target
# compiles the standard library and every dependency from a cold cache,
# a minute or more on two cores: `--all` adds darwin/amd64 and
# windows/arm64, whose code is the same as their OS's other architecture.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
targets="linux/arm64 darwin/arm64 windows/amd64"
if [[ "${1:-}" == "--all" ]]; then
  targets="linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64"
fi
status=0
for t in $targets; do
  os=${t%/*} arch=${t#*/}
  echo "-- $os/$arch"
  if ! GOOS=$os GOARCH=$arch go build ./... || ! GOOS=$os GOARCH=$arch go vet ./...; then
    echo "FAILED: $os/$arch"
    status=1
  fi
done
exit $status
