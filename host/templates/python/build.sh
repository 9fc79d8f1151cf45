#!/usr/bin/env bash
# Builds {{name}}.wasm, a WebAssembly component, with componentize-py (pinned
# in requirements.txt, installed into .venv the first time; needs python3
# with venv).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
# componentize-py adds a site-packages to the guest's path (from $VIRTUAL_ENV):
# an empty one keeps the build machine's packages out of the component, and
# building from a copy keeps __pycache__ out of the project.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/lib/site-packages" "$scratch/src"
cp ./*.py "$scratch/src/"
VIRTUAL_ENV="$scratch" .venv/bin/componentize-py --quiet -d wit -w billing-adapter \
  componentize app -p "$scratch/src" -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
