#!/usr/bin/env bash
# Builds the JavaScript adapters into target/adapters/{chargeback,invoice-lines}-js.wasm
# with componentize-qjs (QuickJS; adapters/js/README.md says why), after
# installing the pinned toolchain of package-lock.json (`npm ci`) when
# node_modules is missing or was installed from another lock. chargeback is
# built on the current contract (wit/, tally:billing@0.2.0), invoice-lines on
# the frozen 0.1.0 (wit/v0.1), which the host still serves.
#
# A JavaScript component's bytes differ from build to build (the engine's
# snapshot is not reproducible), so an adapter is rebuilt only when its
# sources, the WIT or the toolchain changed: its sha256 stays put otherwise.
set -euo pipefail
cd "$(dirname "$0")"
out=../../target/adapters

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "adapters/js/build.sh: needs Node.js (18 or newer) and npm" >&2
  exit 1
fi
stamp=node_modules/.package-lock.sha256
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock" ]; then
  npm ci --no-audit --no-fund
  echo "$lock" >"$stamp"
fi

mkdir -p "$out" node_modules/.tally-build
for adapter in chargeback invoice-lines; do
  wasm="$out/$adapter-js.wasm"
  case $adapter in
    invoice-lines) wit=../../wit/v0.1 ;;
    *) wit=../../wit ;;
  esac
  inputs=$(find "$adapter" lib "$wit" build.sh package-lock.json -type f -print0 | sort -z |
    xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  seen=node_modules/.tally-build/$adapter.inputs
  if [ -f "$wasm" ] && [ "$(cat "$seen" 2>/dev/null)" = "$inputs" ]; then
    continue
  fi
  # --sync: the host runs components without component-model async.
  node_modules/.bin/componentize-qjs --wit "$wit" --world billing-adapter --sync \
    --js "$adapter/adapter.js" -o "$wasm" >/dev/null
  echo "$inputs" >"$seen"
done
