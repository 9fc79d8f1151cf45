#!/usr/bin/env bash
# Builds the example adapters from source into target/adapters/*.wasm
# (adds the wasm32-wasip2 target when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --locked --target wasm32-wasip2 --manifest-path adapters/Cargo.toml --target-dir target
mkdir -p target/adapters
for name in billing_webhook chargeback_csv focus hostile next_major statement; do
  cp "target/wasm32-wasip2/release/$name.wasm" "target/adapters/${name//_/-}.wasm"
done
# The hostile adapter whose describe() is huge (a build feature: describe takes
# no config), in a target dir of its own so that it never replaces hostile.wasm.
cargo build --release --locked --target wasm32-wasip2 --manifest-path adapters/Cargo.toml \
  --target-dir target/hostile-describe -p hostile --features describe-bomb
cp target/hostile-describe/wasm32-wasip2/release/hostile.wasm target/adapters/hostile-describe.wasm
# The hostile adapter built against tally:billing@0.1.0 (served beside 0.2).
cargo build --release --locked --target wasm32-wasip2 --manifest-path adapters/Cargo.toml \
  --target-dir target/hostile-0.1 -p hostile --features contract-0-1
cp target/hostile-0.1/wasm32-wasip2/release/hostile.wasm target/adapters/hostile-0.1.wasm
adapters/python/build.sh
adapters/js/build.sh
# C and Go adapters: bindings and componentizing come from tally itself.
cargo build --locked -p tally --bin tally
export TALLY="$PWD/target/debug/tally"
adapters/c/build.sh
adapters/go/build.sh
ls -l target/adapters
