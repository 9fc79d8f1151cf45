#!/usr/bin/env bash
# Builds the Python adapters into target/adapters/*-py.wasm with componentize-py
# (pinned in requirements.txt, installed into .venv-adapters when missing or
# another version). Needs python3 with venv; pip reaches PyPI the first time.
# A component whose inputs did not change is left as it is.
#
# Components are plain WASI p2 ones (no --stub-wasi): the host links WASI with
# nothing granted, and stdout/stderr (a Python traceback) then reach the run's
# log, where stubs would trap with no message. Builds are not byte-reproducible
# (componentize-py snapshots a running interpreter): pin the sha256 of the
# component you install, not of a rebuild.
#
# chargeback is built on the current contract (wit/, tally:billing@0.2.0),
# showback on the frozen 0.1.0 (wit/v0.1), which the host still serves.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=.venv-adapters
want=$(sed -n 's/^componentize-py==\([^ ]*\).*/\1/p' adapters/python/requirements.txt)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $want" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r adapters/python/requirements.txt
fi

# Sources are copied to a scratch directory: the build writes __pycache__
# next to them. componentize-py also adds a site-packages to the guest's path
# (from $VIRTUAL_ENV, else pipenv's, else the host python3's): it gets an empty
# one, so that only the adapter's own modules are in the component.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/lib/site-packages" target/adapters
for name in chargeback showback common; do
  mkdir "$scratch/$name"
  cp adapters/python/$name/*.py "$scratch/$name/"
done
for name in chargeback showback; do
  out="target/adapters/$name-py.wasm" stamp="target/adapters/.$name-py.inputs"
  case $name in
    showback) wit=wit/v0.1 ;;
    *) wit=wit ;;
  esac
  # A component is rebuilt only when its inputs changed: a rebuild has another
  # sha256, which a pinned manifest refuses and the host compiles again.
  inputs=$(cat adapters/python/build.sh adapters/python/requirements.txt "$wit"/*.wit "$scratch/$name"/*.py "$scratch/common"/*.py | sha256sum)
  if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    continue
  fi
  VIRTUAL_ENV="$scratch" "$venv/bin/componentize-py" --quiet -d "$wit" -w billing-adapter \
    componentize app -p "$scratch/$name" -p "$scratch/common" -o "$out.partial"
  mv "$out.partial" "$out"  # whole, or not at all
  echo "$inputs" >"$stamp"
done
