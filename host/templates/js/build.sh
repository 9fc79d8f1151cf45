#!/usr/bin/env bash
# Builds {{name}}.wasm, a WebAssembly component, with componentize-qjs
# (QuickJS; pinned in package-lock.json, installed by `npm ci` the first time;
# needs Node.js 18 or newer).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/componentize-qjs ] || npm ci --no-audit --no-fund
# --sync: the host calls components synchronously.
node_modules/.bin/componentize-qjs --wit wit --world billing-adapter --sync \
  --js adapter.js -o {{name}}.wasm >/dev/null
echo "built $(pwd)/{{name}}.wasm"
