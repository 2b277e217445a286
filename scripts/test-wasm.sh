#!/usr/bin/env bash
# Runs the Go tests of every package of ours that the filter links, compiled
# for GOOS=wasip1 and executed on wazero (the version go.mod pins, built into
# .cache/bin once). The filter's own tests load the built module; these find
# what breaks or slows down in a package only once it is wasm (int sizes,
# the missing OS, the one thread), with each package's own cases.
#
#   scripts/test-wasm.sh [go test flags] [-- packages]     default: -count=1
#   scripts/test-wasm.sh -run '^$' -bench . -- ./engine ./policies   benchmarks, as wasm
#
# Tests that need the go tool (dependency checks) are built for the host
# only (//go:build !wasm); the engine's OPA compliance cases are found
# through AEGIS_OPA_MODULE_DIR, which this script sets.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

mkdir -p .cache/bin
"$GO" build -o .cache/bin/wazero github.com/tetratelabs/wazero/cmd/wazero

AEGIS_OPA_MODULE_DIR=$("$GO" list -m -f '{{.Dir}}' github.com/open-policy-agent/opa)
export AEGIS_OPA_MODULE_DIR

# Packages that link the proxy-wasm SDK import the host's ABI ("env"
# module) and only instantiate inside a proxy-wasm host: the filter's own
# tests cover them through the built module.
mapfile -t pkgs < <(GOOS=wasip1 GOARCH=wasm "$GO" list -deps -f '{{.ImportPath}}{{range .Deps}} {{.}}{{end}}' ./filter |
  grep '^github.com/aegis-mesh/aegis/' | grep -v 'proxy-wasm-go-sdk' | cut -d' ' -f1)

flags=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  flags+=("$1")
  shift
done
if [ $# -gt 0 ]; then
  shift
  pkgs=("$@")
fi
if [ ${#flags[@]} -eq 0 ]; then
  flags=(-count=1)
fi
# The guest sees the host's file system and environment, so testdata and
# the working directory resolve as in a native run.
GOOS=wasip1 GOARCH=wasm exec "$GO" test -exec "$PWD/scripts/wazero-exec.sh" "${flags[@]}" "${pkgs[@]}"
