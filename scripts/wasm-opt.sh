#!/usr/bin/env bash
# Optimizes the Go-built filter module for size with binaryen's wasm-opt
# (pinned in tools/binaryen/package-lock.json, run under Node).
#
#   scripts/wasm-opt.sh IN.wasm OUT.wasm
#
# Go's wasm back end leaves a lot for a whole-module optimizer: -Oz takes
# about 8% off the filter, which the 6 MiB limit needs. Only features the
# Go output already uses are enabled, so wasm-opt cannot emit an instruction
# a host that runs the unoptimized module would refuse. Results are cached
# by the input's SHA-256 under .cache/wasm-opt/, because the pass costs
# about a minute and a half of CPU and most builds do not change the module.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 2 ]; then
  echo "usage: scripts/wasm-opt.sh IN.wasm OUT.wasm" >&2
  exit 2
fi
in=$1 out=$2

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "wasm-opt.sh: node and npm are needed to optimize the filter (apt-get install nodejs npm)" >&2
  exit 1
fi

tool=tools/binaryen/node_modules/binaryen/bin/wasm-opt
want=$(node -p 'require("./tools/binaryen/package-lock.json").packages["node_modules/binaryen"].version')
have=$(node -p 'try { require("./tools/binaryen/node_modules/binaryen/package.json").version } catch (e) { "" }')
if [ "$have" != "$want" ]; then
  echo "wasm-opt.sh: installing binaryen $want (npm ci, checked against the lock file's integrity hash)" >&2
  npm ci --prefix tools/binaryen --no-audit --no-fund --loglevel=error >&2
fi

flags=(-Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals)
key=$( (sha256sum "$in" | cut -d' ' -f1; echo "$want ${flags[*]}") | sha256sum | cut -d' ' -f1)
cache=.cache/wasm-opt/$key.wasm
if [ ! -f "$cache" ]; then
  mkdir -p .cache/wasm-opt
  node "$tool" "${flags[@]}" "$in" -o "$cache.$$.tmp"
  mv "$cache.$$.tmp" "$cache"
fi
cp "$cache" "$out"
