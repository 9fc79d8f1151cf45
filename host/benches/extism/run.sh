#!/usr/bin/env bash
# tally's chargeback component against the same transform as an Extism
# plugin (docs/performance.md, "Against Extism"). Builds the component, the
# plugin and the runner (release; the runner brings Extism's own wasmtime,
# which is why it stays out of the workspaces), then runs the benchmark.
# Arguments go to the benchmark (`--quick` for a smaller run).
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
here="$root/host/benches/extism"
cd "$root"
for target in wasm32-wasip2 wasm32-unknown-unknown; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
cargo build --release --locked --target wasm32-wasip2 --manifest-path adapters/Cargo.toml \
  --target-dir target -p chargeback-csv
mkdir -p target/adapters
cp target/wasm32-wasip2/release/chargeback_csv.wasm target/adapters/chargeback-csv.wasm
cargo build --release --locked --target wasm32-unknown-unknown \
  --manifest-path "$here/plugin/Cargo.toml" --target-dir target
cargo run --release --locked --manifest-path "$here/Cargo.toml" --target-dir target -- "$@"
