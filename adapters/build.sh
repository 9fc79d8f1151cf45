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
# The hostile adapter again with build features, in the same target dir (only
# the hostile crate rebuilds), each copied before the next build replaces it:
# its describe() huge (describe takes no config, so it is a build of its own),
# and built against tally:billing@0.1.0 (served beside 0.2).
release=target/wasm32-wasip2/release
for variant in describe-bomb:hostile-describe contract-0-1:hostile-0.1; do
  cargo build --release --locked --target wasm32-wasip2 --manifest-path adapters/Cargo.toml \
    --target-dir target -p hostile --features "${variant%%:*}"
  cp "$release/hostile.wasm" "target/adapters/${variant#*:}.wasm"
done
adapters/python/build.sh
adapters/js/build.sh
# C and Go adapters: bindings and componentizing come from tally itself.
cargo build --locked -p tally --bin tally
export TALLY="$PWD/target/debug/tally"
adapters/c/build.sh
adapters/go/build.sh
ls -l target/adapters
