#!/usr/bin/env bash
# Builds the C adapters into target/adapters/{location-costs,chargeback}-c.wasm:
# bindings from `tally adapter bindings --lang c`, a core module from Debian's
# clang 16 and wasi-libc (wasm32-wasi, a reactor), and the component from
# `tally adapter componentize` (the preview-1 adapter of the host's wasmtime).
#
# Installs the toolchain when it is missing: Debian's clang-16, lld-16,
# wasi-libc and libclang-rt-16-dev-wasm32 (bookworm: clang 16.0.6, wasi-libc
# of 2022-05-10), and libc++-16-dev-wasm32 and libc++abi-16-dev-wasm32 for the
# guide's C++ recipe that tests/c_adapters.rs checks, with apt-get as root or
# through sudo. The major version is pinned by the package names; Debian's
# stable point releases only fix bugs.
#
# $TALLY is the tally binary to use (adapters/build.sh builds it); without it,
# target/debug/tally, built when missing. A component is rebuilt only when
# its inputs changed (sources, this script, the contract, the bindings and
# componentize code, the toolchain's versions).
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 libc++-16-dev-wasm32 libc++abi-16-dev-wasm32)
if ! command -v clang-16 >/dev/null || ! command -v wasm-ld-16 >/dev/null ||
  [ ! -f /usr/include/wasm32-wasi/stdio.h ] || [ ! -f /usr/include/wasm32-wasi/c++/v1/map ] ||
  [ ! -f /usr/lib/llvm-16/lib/clang/16/lib/wasi/libclang_rt.builtins-wasm32.a ]; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    echo "adapters/c/build.sh: needs ${packages[*]} (Debian), and root or sudo to install them" >&2
    exit 1
  fi
  echo "installing ${packages[*]}" >&2
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${packages[@]}" >/dev/null
fi

TALLY=${TALLY:-$PWD/target/debug/tally}
if [ ! -x "$TALLY" ]; then
  cargo build --locked -p tally --bin tally
fi

out=target/adapters
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$out"
"$TALLY" adapter bindings --lang c --out "$scratch/bindings" >/dev/null

toolchain=$(dpkg-query -W "${packages[@]}")
for adapter in location-costs chargeback; do
  wasm="$out/$adapter-c.wasm" stamp="$out/.$adapter-c.inputs"
  inputs=$({
    echo "$toolchain"
    cat adapters/c/build.sh wit/billing-adapter.wit Cargo.lock \
      host/src/cli/author/bindings.rs host/src/cli/author/componentize.rs
    find adapters/c/common "adapters/c/$adapter" -type f \( -name '*.c' -o -name '*.h' \) \
      -print0 | sort -z | xargs -0 cat
  } | sha256sum | cut -d' ' -f1)
  if [ -f "$wasm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    continue
  fi
  clang-16 --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
    -Wno-unused-parameter -I "$scratch/bindings" -I adapters/c/common \
    -o "$scratch/$adapter.core.wasm" \
    "adapters/c/$adapter"/*.c adapters/c/common/*.c \
    "$scratch/bindings/billing_adapter.c" "$scratch/bindings/billing_adapter_component_type.o"
  # componentize writes the component whole, or not at all.
  "$TALLY" adapter componentize "$scratch/$adapter.core.wasm" -o "$wasm" >/dev/null
  echo "$inputs" >"$stamp"
done
