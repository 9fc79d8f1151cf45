#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (the Azure SDK for Python, pinned, into .venv), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> Python test client (azure-mgmt-commerce 6.0.1) in .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export TALLY_TEST_PYTHON="$PWD/.venv/bin/python"

echo "==> Example adapters, built from source for wasm32-wasip2"
adapters/build.sh

echo "==> cargo test"
cargo test --workspace --locked
