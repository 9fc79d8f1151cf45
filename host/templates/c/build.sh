#!/usr/bin/env bash
# Builds {{name}}.wasm, a WebAssembly component, from C:
#   1. `tally adapter bindings --lang c` writes the contract's bindings to gen/;
#   2. clang 16 compiles a core module for wasm32-wasi (a reactor: no main);
#   3. `tally adapter componentize` turns it into a component.
# Needs tally (on PATH, or TALLY=/path/to/tally) and, on Debian or Ubuntu:
#   sudo apt-get install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32
set -euo pipefail
cd "$(dirname "$0")"
tally=${TALLY:-tally}
if ! command -v "$tally" >/dev/null; then
  echo "build.sh: needs tally on PATH (or TALLY=/path/to/tally)" >&2
  exit 1
fi
if ! command -v clang-16 >/dev/null || ! command -v wasm-ld-16 >/dev/null ||
  [ ! -f /usr/include/wasm32-wasi/stdio.h ] ||
  [ ! -f /usr/lib/llvm-16/lib/clang/16/lib/wasi/libclang_rt.builtins-wasm32.a ]; then
  echo "build.sh: needs clang 16 with wasi-libc; on Debian or Ubuntu:" >&2
  echo "  sudo apt-get install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32" >&2
  exit 1
fi
"$tally" adapter bindings --lang c --out gen >/dev/null
clang-16 --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Wno-unused-parameter \
  -I gen -o {{name}}.core.wasm adapter.c config.c gen/billing_adapter.c gen/billing_adapter_component_type.o
"$tally" adapter componentize {{name}}.core.wasm -o {{name}}.wasm >/dev/null
rm {{name}}.core.wasm
echo "built $(pwd)/{{name}}.wasm"
