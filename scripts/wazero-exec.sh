#!/usr/bin/env bash
# go test -exec wrapper for wasip1 test binaries: runs one on wazero with
# the host's file system mounted at / and the environment inherited.
here=$(cd "$(dirname "$0")/.." && pwd)
exec "$here/.cache/bin/wazero" run -mount /:/ -env-inherit "$@"
